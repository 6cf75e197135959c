"""One source for config keys: `vaelab keys` reads them from the dataclasses, every key has a
docstring, and the key tables of docs/configuration.md hold every public key with the default the
code has."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from clihelp import cli, user_error

from vaelab.config import MODEL_PARAMS, load_config
from vaelab.data import DATASETS
from vaelab.keys import config_keys, every_data_key, every_model_key, field_docs, toml_value
from vaelab.models.conv import CNNParams
from vaelab.models.introvae import IntroVAEParams
from vaelab.models.mlp import DenseParams, FC1Params

PAGE = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
_START = PAGE.index("## Configuration keys")
_NEXT = re.compile(r"^## ", flags=re.M).search(PAGE, _START + 1)  # the Datasets heading
SECTION = PAGE[_START : _NEXT.start() if _NEXT else len(PAGE)]


def table_rows(header: str) -> list[list[str]]:
    """The cells of each row of the table under `header` in the Configuration keys section."""
    start = SECTION.index(header)
    rows = []
    for line in SECTION[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


KEY_ROWS = {row[0].strip("`"): row for row in table_rows("| key | default | meaning |")}
MODEL_ROWS = {row[0].strip("`"): row for row in table_rows("| model | its keys and their defaults |")}


def section_keys():
    """Every key the sections declare themselves (not a dataset's or a model's own)."""
    dataset_own, model_own = every_data_key(), every_model_key()
    return [k for k in config_keys() if k.name not in dataset_own and k.name not in model_own]


def test_every_section_key_is_in_the_keys_table_with_its_default():
    for key in section_keys():
        assert key.name in KEY_ROWS, f"{key.name} is missing from the Configuration keys table of docs/configuration.md"
        assert KEY_ROWS[key.name][1] == f"`{toml_value(key.default)}`", key.name


def test_every_models_key_is_in_the_keys_table_and_each_models_row_has_its_defaults():
    for key, owners in every_model_key().items():
        assert KEY_ROWS[key][1] == "the model's", key
    assert list(MODEL_ROWS) == list(MODEL_PARAMS)
    for name, params in MODEL_PARAMS.items():
        _, keys, loss = MODEL_ROWS[name]
        assert keys == ", ".join(f"`{f.name} = {toml_value(f.default)}`" for f in fields(params)), name
        assert loss == ", ".join(params.loss_keys), name


def test_every_table_row_names_a_real_key():
    known = {k.name for k in section_keys()} | set(every_model_key()) | {"data.<param>"}
    assert set(KEY_ROWS) <= known, set(KEY_ROWS) - known


def test_every_key_of_every_section_model_and_dataset_has_a_docstring():
    for key in config_keys():
        assert key.doc, key.name
    for name, params in MODEL_PARAMS.items():
        assert all(field_docs(params).get(f.name) for f in fields(params)), name
    for name, spec in DATASETS.items():
        assert all(field_docs(spec.params).get(f.name) for f in fields(spec.params)), name


def test_a_field_redefined_without_a_docstring_keeps_its_bases():
    assert field_docs(FC1Params)["hidden"] == field_docs(DenseParams)["hidden"]
    assert field_docs(IntroVAEParams)["kernel"] == field_docs(CNNParams)["kernel"] == "kernel size of every convolution"


def test_keys_of_a_config_are_its_models_and_datasets_with_their_defaults_and_values():
    cfg = load_config("chain-asym", overrides=["model.kernel=5", "data.name=squares"])
    keys = {k.name: k for k in config_keys(cfg, "model")}
    assert list(keys) == ["model.name", "model.latent_dim", "model.likelihood", *(f"model.{f.name}" for f in fields(MODEL_PARAMS["asym"]))]
    assert (keys["model.kernel"].default, keys["model.kernel"].value) == (3, 5)
    assert keys["model.decoder_hidden"].default == (28, 144)  # asym's own default, not the dense base's ()
    data = {k.name for k in config_keys(cfg, "data")}
    assert {"data.mu", "data.noise_var"} <= data and "data.p_x" not in data  # squares', not points'


def test_vaelab_keys_prints_each_key_with_default_type_and_meaning():
    r = cli("keys", "model", "--set", "model.name=vqvae")
    assert r.rc == 0, r.err
    assert "model.codebook_size = 64  (int)\n    the number K of codebook vectors" in r.out
    assert "model.hidden" not in r.out  # not a vqvae key
    r = cli("keys", "loss", "--set", "model.name=vqvae", "--set", "loss.recon_weight=2")
    assert "loss.recon_weight = 1.0  (float)  [this config: 2.0]" in r.out
    assert "loss.beta = 1.0  (float)  [not used by model vqvae" in r.out
    assert "loss.recon_weight = 1.0  (float)  [this config: 2.0]  [not used" not in r.out
    r = cli("keys")
    assert {line.split(" = ")[0] for line in r.out.splitlines() if not line.startswith((" ", "("))} == {k.name for k in config_keys()}


@pytest.mark.parametrize("argv, needle", [(["keys", "lossy"], "unknown config section 'lossy'"), (["keys", "--set", "model.margin=5"], "model.margin")])
def test_vaelab_keys_refuses_a_bad_section_or_config_in_one_line(argv, needle):
    user_error(cli(*argv), needle)


def test_every_verb_that_takes_set_points_to_vaelab_keys():
    for verb in ("train", "chain", "sweep", "anomaly", "augment", "keys"):
        r = cli(verb, "--help")
        assert "vaelab keys" in " ".join(r.out.split()), verb


# ---------------------------------------------------------------------------------------------
# The metric tables: docs/evaluation.md and docs/chain.md hold every metric, column and
# description of the registries, and config's list of sweep.metrics names the same metrics.

DOCS = Path(__file__).parent.parent / "docs"


def doc_table(page: str, header: str) -> list[list[str]]:
    text = (DOCS / page).read_text()
    lines = text[text.index(header) :].splitlines()[2:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[: next(i for i, line in enumerate(lines) if not line.startswith("|"))]]


def test_the_metrics_table_is_the_registry():
    from vaelab.evaluate import METRICS

    want = [
        [f"`{name}`", ", ".join(m.needs) or "—", f"`{col}`", "yes" if col in m.sweep_columns else "—", desc.replace("|", "\\|")]
        for name, m in METRICS.items()
        for col, desc in m.columns.items()
    ]
    assert doc_table("evaluation.md", "| metric | needs | column |") == want


def test_evaluates_help_names_the_registrys_default_metrics():
    from vaelab.evaluate import METRICS

    text = " ".join(cli("evaluate", "--help").out.split())
    defaults = [m for m, s in METRICS.items() if s.evaluate_default]
    assert f"default: {', '.join(defaults[:-1])} and {defaults[-1]}, those that apply" in text


def test_sweep_metrics_accepts_exactly_the_registrys_metrics():
    import typing

    from vaelab.config import SweepMetric
    from vaelab.evaluate import METRICS

    assert list(typing.get_args(SweepMetric)) == list(METRICS)


def test_the_chain_table_is_the_chain_csv_registry():
    from vaelab.experiments.chain_table import METRICS, PANELS

    assert doc_table("chain.md", "| column | meaning |") == [[f"`{k}`", v.replace("|", "\\|")] for k, v in METRICS.items()]
    assert set(PANELS) <= set(METRICS)

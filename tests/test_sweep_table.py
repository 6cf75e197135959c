"""sweep.csv (vaelab.experiments.sweep_table): its header from the metric registry, rows read back
as they were written, and the sweep report's reading of the same file."""

from __future__ import annotations

import math

from vaelab import evaluate
from vaelab.config import load_config
from vaelab.experiments.sweep import sweep_axes
from vaelab.experiments.sweep_report import read_sweep
from vaelab.experiments.sweep_table import columns, diverged_step, read_table, write_table
from vaelab.runfolder import write_toml

PRESET = "bias-robustness"


def test_columns_are_cell_seed_keys_metrics_baselines_and_training_terms():
    cfg = load_config(PRESET, overrides=['sweep.metrics=["neg_elbo","recon_mse"]'])
    keys = [a.key for a in sweep_axes(cfg, ["model.name=fc1,fc2"])]
    assert columns(keys, cfg.sweep.metrics) == [
        "cell", "seed", "loss.beta", "data.mu", "model.name",
        "neg_elbo", "recon_mse", "neg_elbo_untrained", "recon_mse_untrained",
        "train_loss", "train_recon", "train_kl", "train_seconds", "diverged_at",
    ]  # fmt: skip
    assert columns(["loss.beta", "data.mu"], load_config(PRESET).sweep.metrics) == [
        "cell", "seed", "loss.beta", "data.mu",
        "pmi", "pmi_r2", "decoder_mse", "mcc", "mcc_spearman", "factor_r2", "factor_r2_nonlinear",
        "pmi_untrained", "pmi_r2_untrained", "decoder_mse_untrained", "mcc_untrained", "mcc_spearman_untrained", "factor_r2_untrained", "factor_r2_nonlinear_untrained",
        "train_loss", "train_recon", "train_kl", "train_seconds", "diverged_at",
    ]  # fmt: skip
    assert {m for m, s in evaluate.METRICS.items() if "factors" in s.needs} == {"pmi", "decoder_mse", "mcc", "factor_r2", "irs"}
    assert {m for m, s in evaluate.METRICS.items() if {"features", "labels"} & set(s.needs)} == {"fid", "prdc", "class"}


def test_a_sweep_writes_a_metrics_sweep_columns_and_evaluate_every_column():
    cfg = load_config("fontdigits-cnn", overrides=["sweep.metrics=[class,nll_iw]", "sweep.grid=[]"])
    cols = columns([], cfg.sweep.metrics)
    assert [c for c in cols if c.startswith(("class", "nll"))] == ["class_tv", "class_entropy", "nll_iw", "class_tv_untrained", "class_entropy_untrained", "nll_iw_untrained"]
    assert set(evaluate.METRICS["class"].columns) == {"class_tv", "class_entropy", "class_entropy_ref", "class_entropy_max"}


def test_read_table_keeps_string_axes_as_strings(tmp_path):
    (tmp_path / "sweep.csv").write_text(
        "cell,seed,model.name,loss.beta,train_loss\n"
        '"cell-name=fc1,beta=1",0,fc1,1,2.5\n'
        '"cell-name=fc2,beta=1",1,fc2,1,\n'
    )
    rows = read_table(tmp_path / "sweep.csv", ["model.name", "loss.beta"])
    assert rows[0] == {"cell": "cell-name=fc1,beta=1", "seed": 0, "model.name": "fc1", "loss.beta": 1.0, "train_loss": 2.5}
    assert rows[1]["model.name"] == "fc2" and rows[1]["seed"] == 1 and math.isnan(rows[1]["train_loss"])
    assert read_table(tmp_path / "missing.csv", []) == []


def test_the_report_reads_numbers_as_floats_other_values_as_written_and_the_figures(tmp_path):
    write_toml(tmp_path / "config.toml", {"sweep": {"grid": ["loss.beta=1,4", "train.debias=true,false", "model.hidden=[8],[16, 4]"]}})
    keys = ["loss.beta", "train.debias", "model.hidden"]
    header = columns(keys, ("recon_mse",))
    rows = [
        {"cell": "a", "seed": 0, "loss.beta": 1, "train.debias": True, "model.hidden": [8], "recon_mse": 0.5, "train_seconds": 3.0},
        {"cell": "b", "seed": 0, "loss.beta": 4, "train.debias": False, "model.hidden": [16, 4], "diverged_at": 7},
    ]
    write_table(tmp_path / "sweep.csv", rows, header)
    back = read_table(tmp_path / "sweep.csv", keys)
    assert [(r["loss.beta"], r["train.debias"], r["model.hidden"]) for r in back] == [(1, True, [8]), (4, False, [16, 4])]
    assert [diverged_step(r) for r in back] == [None, 7]
    got_keys, figures, shown = read_sweep(tmp_path)
    assert got_keys == keys
    assert figures == ["recon_mse", "train_loss", "train_recon", "train_kl"]
    assert [(r["loss.beta"], r["train.debias"], r["model.hidden"]) for r in shown] == [(1.0, "true", "[8]"), (4.0, "false", "[16, 4]")]

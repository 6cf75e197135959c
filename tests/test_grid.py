"""A sweep's grid over model families and zipped keys (vaelab.experiments.grid): the points a grid
spans against hand-listed ones, the table's key columns, and the entries it refuses. The plain
product grids are tested in test_sweep.py."""

from __future__ import annotations

import csv

import pytest
import torch
from clihelp import cli, one_thread, user_error  # noqa: F401  (one_thread: the module-wide one-thread fixture)

from vaelab.config import load_config
from vaelab.errors import UserError
from vaelab.experiments.grid import grid_points, grid_size, key_columns, parse_axis, parse_grid
from vaelab.experiments.sweep import sweep_axes, sweep_cells
from vaelab.models import build_model

FAMILIES = [
    "model.latent_dim=4,6",  # shared: every family is swept over it
    "betavae: loss.beta=1,4",
    "tcvae: loss.tc_weight=2",
    "dip1: loss.dip=i",
    "dip1: loss.dip_offdiag+loss.dip_diag=[1,10],[5,50]",
]


def test_families_make_the_union_of_their_products_with_the_shared_axes():
    axes = parse_grid(FAMILIES)
    expected = [
        ("betavae", {"model.latent_dim": 4, "loss.beta": 1}),
        ("betavae", {"model.latent_dim": 4, "loss.beta": 4}),
        ("betavae", {"model.latent_dim": 6, "loss.beta": 1}),
        ("betavae", {"model.latent_dim": 6, "loss.beta": 4}),
        ("tcvae", {"model.latent_dim": 4, "loss.tc_weight": 2}),
        ("tcvae", {"model.latent_dim": 6, "loss.tc_weight": 2}),
        ("dip1", {"model.latent_dim": 4, "loss.dip": "i", "loss.dip_offdiag": 1, "loss.dip_diag": 10}),
        ("dip1", {"model.latent_dim": 4, "loss.dip": "i", "loss.dip_offdiag": 5, "loss.dip_diag": 50}),
        ("dip1", {"model.latent_dim": 6, "loss.dip": "i", "loss.dip_offdiag": 1, "loss.dip_diag": 10}),
        ("dip1", {"model.latent_dim": 6, "loss.dip": "i", "loss.dip_offdiag": 5, "loss.dip_diag": 50}),
    ]
    assert grid_points(axes) == expected
    assert grid_size(axes) == len(expected) == 10  # 2·2 + 2·1 + 2·1·2, counted without listing
    assert key_columns(axes) == ["family", "model.latent_dim", "loss.beta", "loss.tc_weight", "loss.dip", "loss.dip_offdiag", "loss.dip_diag"]


def test_a_grid_without_families_is_the_plain_product():
    axes = parse_grid(["loss.beta=1,2", "data.mu=0:1:0.5"])
    assert grid_size(axes) == 6 and len(grid_points(axes)) == 6
    assert {f for f, _ in grid_points(axes)} == {""}
    assert key_columns(axes) == ["loss.beta", "data.mu"]  # no family column: the table is as before


def test_family_cells_are_named_by_family_first_and_validated_each():
    cfg = load_config("bias-robustness", overrides={"sweep.grid": []})
    cells = sweep_cells(cfg, parse_grid(["a: loss.beta=1,4", "b: loss.tc_weight=2", "b: train.lr=0.01"]))
    assert [c.name for c in cells] == ["cell-a,beta=1", "cell-a,beta=4", "cell-b,tc_weight=2,lr=0.01"]
    assert [c.values["family"] for c in cells] == ["a", "a", "b"]
    assert cells[2].config.loss.tc_weight == 2 and cells[2].config.train.lr == 0.01 and cells[2].config.loss.beta == cfg.loss.beta


def test_an_axis_entry_round_trips_through_sweep_grid():
    for entry in FAMILIES:
        axis = parse_axis(entry)
        assert parse_axis(axis.entry) == axis


def test_a_later_entry_replaces_only_its_own_familys_axis():
    axes = parse_grid(["a: loss.beta=1,2", "b: loss.beta=3", "a: loss.beta=5"])
    assert [(a.family, a.values) for a in axes] == [("a", (5,)), ("b", (3,))]


@pytest.mark.parametrize(
    "entries,needle",
    [
        (["bad name: loss.beta=1"], "a family is a name"),
        ([": loss.beta=1"], "a family is a name"),
        (["loss.dip_offdiag+=1"], "joined by +"),
        (["loss.beta+loss.beta=[1,2]"], "joined by +"),
        (["loss.dip_offdiag+loss.dip_diag=[1,10],[2]"], "a list of 2 values"),
        (["loss.dip_offdiag+loss.dip_diag=1,2"], "a list of 2 values"),
        (["loss.dip_offdiag+loss.dip_diag=1:3:1"], "not a range"),
        (["a: sweep.seeds=1,2"], "sweep.*"),
        (["loss.beta=1,2", "a: loss.beta=3"], "loss.beta is swept twice in family a"),
        (["a: loss.dip_diag=1", "a: loss.dip_offdiag+loss.dip_diag=[1,10]"], "swept twice"),
    ],
)
def test_bad_family_and_zipped_entries_are_one_line_user_errors(entries, needle):
    with pytest.raises(UserError) as e:
        parse_grid(entries)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_family_sweep_runs_tables_reports_and_resumes(tmp_path):
    """Two families on the bias study's squares, 8 steps a cell: sweep.csv has the family column
    and leaves the other family's key empty, the report draws each family against its own key and
    the metrics' rank correlations, and --resume finds every cell done."""
    out = tmp_path / "fam"
    sets = ["sweep.grid=[]", "train.steps=8", "data.n=128", "sweep.test_n=120", "model.hidden=[16,8]", "sweep.metrics=[pmi,mcc]"]
    grid = ["betavae: loss.beta=0.5,4", "tcvae: loss.tc_weight=2,6", "train.lr=0.003"]
    args = ["sweep", "--preset", "bias-robustness", *(a for s in sets for a in ("--set", s)), *(a for g in grid for a in ("--grid", g)), "--out", out, "--quiet"]
    r = cli(*args)
    assert r.rc == 0, r.err
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:6] == ["cell", "seed", "family", "loss.beta", "loss.tc_weight", "train.lr"]
    assert [(r["cell"], r["family"], r["loss.beta"], r["loss.tc_weight"]) for r in rows] == [
        ("cell-betavae,beta=0.5,lr=0.003", "betavae", "0.5", ""),
        ("cell-betavae,beta=4,lr=0.003", "betavae", "4", ""),
        ("cell-tcvae,tc_weight=2,lr=0.003", "tcvae", "", "2"),
        ("cell-tcvae,tc_weight=6,lr=0.003", "tcvae", "", "6"),
    ]
    assert all(r["mcc"] != "" and 0 <= float(r["mcc"]) <= 1 for r in rows)
    for png in ("family-betavae.png", "family-tcvae.png", "rank-correlations.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    html = (out / "report.html").read_text()
    assert "Each family against its hyperparameter" in html and "Do the metrics agree?" in html
    before = (out / "sweep.csv").read_bytes()
    r = cli(*args, "--resume")
    assert r.rc == 0, r.err
    assert (out / "sweep.csv").read_bytes() == before  # nothing retrained


def test_a_bad_family_entry_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    r = cli("sweep", "--preset", "bias-robustness", "--grid", "two words: loss.beta=1", "--out", tmp_path / "s")
    user_error(r, "a family is a name")
    assert not (tmp_path / "s").exists()


def test_the_unsupervised_study_preset_is_locatello_et_als_grid_on_one_network():
    """Six families × six values × 2 seeds; each family's values as the paper's, every model the
    same encoder and decoder (the factorvae family adds its discriminator only)."""
    cfg = load_config("unsupervised-study")
    cells = sweep_cells(cfg, sweep_axes(cfg))
    assert len(cells) == 72 and {c.seed for c in cells} == {0, 1}
    first = [c.config for c in cells if c.seed == 0]
    by = {f: [c for c, cell in zip(first, [c for c in cells if c.seed == 0]) if cell.values["family"] == f] for f in ("betavae", "annealed", "tcvae", "dip1", "dip2", "factorvae")}
    assert [c.loss.beta for c in by["betavae"]] == [1, 2, 4, 6, 8, 16]
    assert [c.loss.capacity_max for c in by["annealed"]] == [5, 10, 25, 50, 75, 100]
    assert {(c.loss.beta, c.loss.capacity_steps) for c in by["annealed"]} == {(1000, round(cfg.train.steps / 3))}
    assert [c.loss.tc_weight + 1 for c in by["tcvae"]] == [1, 2, 4, 6, 8, 10]  # the paper's b
    assert [(c.loss.dip, c.loss.dip_offdiag, c.loss.dip_diag) for c in by["dip1"]] == [("i", v, 10 * v) for v in (1, 2, 5, 10, 20, 50)]
    assert [(c.loss.dip, c.loss.dip_offdiag, c.loss.dip_diag) for c in by["dip2"]] == [("ii", v, v) for v in (1, 2, 5, 10, 20, 50)]
    assert [(c.model.name, c.model.params.tc_weight) for c in by["factorvae"]] == [("factorvae", v) for v in (10, 20, 30, 40, 50, 100)]
    assert (cfg.model.latent_dim, cfg.model.likelihood, cfg.train.lr, cfg.train.batch_size) == (10, "bernoulli", 1e-4, 64)
    with torch.device("meta"):
        shapes = {tuple((k, tuple(v.shape)) for k, v in build_model(c, (1, 64, 64)).state_dict().items() if k.startswith(("encoder.", "decoder."))) for c in first}
    assert len(shapes) == 1  # one network for every family

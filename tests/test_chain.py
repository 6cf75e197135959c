"""Chain-study tests: each generation's training set by mode (hand-built data whose origin can be
counted), whole chains on a tiny budget, determinism, resume after SIGKILL, the report, compare,
every bad input, and the study's presets.

Chains run in-process through `vaelab.cli.main` with one torch thread; the kill-and-resume cases run
as real processes (OMP_NUM_THREADS=1, the same thread count as the in-process reference), several at
once to keep the wall time down. Chains that several tests read are run once per module and never
modified: tests that change a chain folder work on a copy.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import Result, cli, user_error
import torch

from vaelab.checkpoint import load_run
from vaelab.config import load_config
from vaelab.data import Dataset
from vaelab.evaluate import neg_elbo
from vaelab.experiments.chain import MODEL_COLUMNS, generate, original_data, read_table, training_set
from vaelab.metrics import mean_intensity, occupancy_distance, variability
from vaelab.models import build_model
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
N = 200  # images per dataset in the tiny chains
TINY = [f"data.n={N}", "train.steps=10", "chain.holdout=50", "chain.metric_samples=50", "sample.n=8"]
METRIC_COLUMNS = [
    "variability", "mean_intensity", "distribution_diff_train", "distribution_diff_orig",
    "precision_train", "recall_train", "density_train", "coverage_train",
    "precision_orig", "recall_orig", "density_orig", "coverage_orig",
    "x_tv", "y_tv", "x_mean", "y_mean", "neg_elbo",
    "active_units", "posterior_kl", "aggregate_kl", "aggregate_mmd", "mutual_info",
    "nll_iw", "nll_iw_q50", "nll_iw_q90", "nll_iw_q99", "tail_share", "memorised",
]  # fmt: skip
CHAIN_PRESETS = [
    "chain-fc1", "chain-fc2", "chain-conv", "chain-asym", "chain-conv-beta0.3", "chain-conv-varloss",
    "chain-conv-beta0.7-varloss-denoise", "chain-conv-denoise0.7", "chain-conv-delta0.4-denoise",
    "chain-conv-delta0.7-denoise", "chain-conv-delta0.7-denoise-long", "chain-conv-uniform", "chain-conv-bimodal",
    "chain-conv-aggregate", "chain-conv-aggregate-denoise",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Helpers.




def sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


def chain(out: Path, *pairs: str, preset: str = "chain-fc2") -> Path:
    r = cli("chain", "--preset", preset, *sets(*TINY, *pairs), "--out", out, "--quiet")
    assert r.rc == 0, r.err
    return out


def csv_lines(d: Path) -> list[str]:
    return (d / "chain.csv").read_text().splitlines()


def rows_by(d: Path) -> dict[tuple[int, int], dict]:
    return {(r["seed"], r["generation"]): r for r in read_table(d / "chain.csv")}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def temporary_files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob(".*.tmp"))


# ---------------------------------------------------------------------------------------------
# training_set: T_g from hand-built datasets D_0 = 0…, D_1 = 100…, D_2 = 200… (one value per image,
# unique within the set), so every image's origin and identity can be read off its value.


def hand_sets(n: int, generations: int = 3, shape=(1, 1, 1)) -> list[torch.Tensor]:
    return [(100.0 * g + torch.arange(n, dtype=torch.float32)).view(n, 1, 1, 1).expand(n, *shape).clone() for g in range(generations)]


def ts(cfg, r: int, g: int, tensors: list[torch.Tensor]) -> torch.Tensor:
    """training_set over datasets of these images (no labels): its images."""
    return training_set(cfg, r, g, [Dataset(t) for t in tensors]).images


def values(t: torch.Tensor) -> list[float]:
    return t.flatten(1)[:, 0].tolist()


def mode_cfg(mode: str, **extra):
    return load_config("chain-fc2", overrides={"data.n": 10, "chain.mode": mode, **extra})


@pytest.mark.parametrize(
    "mode,extra",
    [("replace", {}), ("mix", {"chain.real_fraction": 0.3}), ("accumulate", {}), ("accumulate-subsample", {}), ("accumulate-subsample", {"chain.budget": 4})],
)
def test_training_set_of_generation_0_is_the_original_data(mode, extra):
    d0 = hand_sets(10, 1)[0]
    assert torch.equal(ts(mode_cfg(mode, **extra), 0, 0, [d0]), d0)


def test_training_set_of_generation_0_is_the_original_data_for_fresh():
    cfg = load_config("chain-fc2", overrides={"data.n": 10, "chain.mode": "fresh", "chain.real_fraction": 0.5})
    d0 = original_data(cfg, 0)[0].images
    assert torch.equal(ts(cfg, 0, 0, [d0]), d0)


def test_training_set_replace_is_the_latest_dataset():
    d = hand_sets(10)
    cfg = mode_cfg("replace")
    assert torch.equal(ts(cfg, 0, 1, d[:2]), d[1])
    assert torch.equal(ts(cfg, 0, 2, [d[0], d[2]]), d[2])


@pytest.mark.parametrize("f,n", [(0.3, 10), (0.5, 10), (0.25, 10), (0.75, 20), (0.05, 10), (1.0, 10), (0.999, 7)])
def test_training_set_mix_keeps_the_stated_fraction_of_real_images(f, n):
    d = hand_sets(n)
    cfg = mode_cfg("mix", **{"data.n": n, "chain.real_fraction": f})
    n_real = round(f * n)
    for g, datasets in ((1, [d[0], d[1]]), (2, [d[0], d[2]])):
        t = ts(cfg, 0, g, datasets)
        assert t.shape == (n, 1, 1, 1)
        v = values(t)
        real = [x for x in v if x < 100]
        synthetic = [x for x in v if 100 * g <= x < 100 * g + 100]
        assert len(real) == n_real and len(synthetic) == n - n_real and len(real) + len(synthetic) == n
        assert len(set(real)) == len(real) and len(set(synthetic)) == len(synthetic)  # drawn without replacement
        assert torch.equal(ts(cfg, 0, g, datasets), t)  # seeded


def test_training_set_mix_draws_a_random_subset_of_the_originals():
    d = hand_sets(100)
    cfg = mode_cfg("mix", **{"data.n": 100, "chain.real_fraction": 0.3})
    picks = [sorted(x for x in values(ts(cfg, r, g, [d[0], d[1]])) if x < 100) for r, g in ((0, 1), (0, 2), (1, 1))]
    assert picks[0] != list(map(float, range(30)))  # not simply the first 30
    assert picks[0] != picks[1] and picks[0] != picks[2]  # a new draw per generation and per repeat


@pytest.mark.parametrize("g", [1, 2])
def test_training_set_accumulate_is_every_dataset_so_far(g):
    d = hand_sets(10)
    t = ts(mode_cfg("accumulate"), 0, g, d[: g + 1])
    assert t.shape[0] == (g + 1) * 10
    assert sorted(values(t)) == sorted(values(torch.cat(d[: g + 1])))


@pytest.mark.parametrize("budget,expected", [(0, 10), (4, 4), (25, 25), (1000, 30)])
def test_training_set_accumulate_subsample_draws_the_budget_from_the_pool(budget, expected):
    d = hand_sets(10)
    cfg = mode_cfg("accumulate-subsample", **{"chain.budget": budget})
    t = ts(cfg, 0, 2, d)
    v = values(t)
    assert len(v) == expected  # the budget (default: the original size), or the whole pool when smaller
    assert len(set(v)) == len(v)  # without replacement
    assert set(v) <= set(values(torch.cat(d)))
    if expected == 25:
        assert {x // 100 for x in v} == {0, 1, 2}  # from the whole pool, not one set


def test_training_set_fresh_mixes_new_real_draws_with_the_latest_dataset():
    n, f = 20, 0.3
    cfg = load_config("chain-fc2", overrides={"data.name": "squares", "data.n": n, "chain.mode": "fresh", "chain.real_fraction": f, "chain.holdout": 30})
    d0, heldout = original_data(cfg, 0)
    assert d0.images.shape == (n, 1, 21, 21)
    latest = torch.full((n, 1, 21, 21), 2.0) + torch.arange(n).view(n, 1, 1, 1)  # recognisable synthetic images
    old = {tuple(x.flatten().tolist()) for x in torch.cat([d0.images, heldout.images])}
    reals = []
    for g in (1, 2):
        t = ts(cfg, 0, g, [d0.images, latest])
        assert t.shape == (n, 1, 21, 21)
        synthetic = [x for x in t if x.min() >= 2.0 and bool((x == x.flatten()[0]).all())]
        real = [x for x in t if not (x.min() >= 2.0 and bool((x == x.flatten()[0]).all()))]
        assert len(real) == round(f * n) and len(synthetic) == n - round(f * n)
        assert len({x.flatten()[0].item() for x in synthetic}) == len(synthetic)
        assert not ({tuple(x.flatten().tolist()) for x in real} & old)  # new draws: not in D_0, not held out
        reals.append({tuple(x.flatten().tolist()) for x in real})
    assert not (reals[0] & reals[1])  # and new ones each generation


# ---------------------------------------------------------------------------------------------
# generate: 8-bit storage when chain.quantize is on.


def test_generate_quantizes_to_multiples_of_1_over_255_only_when_asked():
    from vaelab.sample import sample

    cfg = load_config("chain-fc2", overrides={"sample.seed": 3})
    torch.manual_seed(0)
    model = build_model(cfg, (1, 24, 24)).eval()
    q = generate(cfg, model, 40, 0, 1).images
    raw = generate(cfg.override({"chain.quantize": False}), model, 40, 0, 1).images
    assert torch.equal(q, (raw * 255).round() / 255)
    assert not torch.equal(q, raw)
    assert torch.allclose(q * 255, (q * 255).round(), atol=1e-4)
    assert any(torch.equal(raw, sample(model, 40, seed=s)) for s in range(20))  # a plain seeded prior draw
    assert not torch.equal(generate(cfg, model, 40, 0, 2).images, q)  # another generation, another draw


# ---------------------------------------------------------------------------------------------
# Whole chains, shared by several tests.

# The kill-and-resume chain: mix with fine-tuning, so resume has to rebuild both the data and the
# weights a later VAE starts from. checkpoint_every=5 puts a checkpoint inside each VAE's training.
# On the CPU: a resumed or repeated chain must match the reference byte for byte, which a GPU does
# not promise. chain.init stays last (a test drops it to change the config).
K = [*TINY, "train.checkpoint_every=5", "train.device=cpu", "chain.generations=2", "chain.mode=mix", "chain.real_fraction=0.5", "chain.init=finetune"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chain")


@pytest.fixture(scope="module")
def ref(work) -> Path:
    return chain(work / "ref", *K[len(TINY) :])


@pytest.fixture(scope="module")
def replace2(work) -> Path:
    """replace, two repeats, every dataset saved; on the CPU, where regenerating a dataset and its
    metrics from the saved VAE reproduces them exactly."""
    return chain(work / "replace2", "chain.generations=2", "chain.seeds=2", "chain.save_data=true", "train.device=cpu")


@pytest.fixture(scope="module")
def modes(work) -> dict[str, Path]:
    return {
        # on the CPU: its saved data is compared bitwise with a regeneration
        "accumulate": chain(work / "accumulate", "chain.mode=accumulate", "chain.generations=2", "chain.quantize=false", "chain.save_data=true", "train.device=cpu"),
        "accumulate-subsample": chain(work / "subsample", "chain.mode=accumulate-subsample", "chain.budget=150", "chain.generations=2"),
        "fresh": chain(work / "fresh", "chain.mode=fresh", "chain.real_fraction=0.25", "chain.generations=2", "model.name=conv", "model.channels=[4]", "model.hidden=[16]"),
    }


def test_chain_csv_has_one_row_per_seed_and_generation_with_every_column(replace2):
    lines = csv_lines(replace2)
    header = lines[0].split(",")
    assert header[:4] == ["seed", "generation", "n_train", "variability"]
    assert header[3:] == METRIC_COLUMNS
    keys = [tuple(map(int, line.split(",")[:2])) for line in lines[1:]]
    assert keys == [(s, g) for s in (0, 1) for g in (0, 1, 2)]
    rows = rows_by(replace2)
    for (s, g), row in rows.items():
        assert row["n_train"] == (0 if g == 0 else N)
        for m in METRIC_COLUMNS:
            assert math.isnan(row[m]) == (g == 0 and m in (*MODEL_COLUMNS, "memorised")), (s, g, m)  # the model's, and memorisation, from generation 1
        if g:
            detail = json.loads((replace2 / f"seed-{s}/gen-{g:03d}/metrics.json").read_text())
            assert row["posterior_kl"] == pytest.approx(sum(detail["kl_per_dim"]))
            assert len(detail["kl_per_dim"]) == 8 and row["active_units"] in range(9)  # chain-fc2: 8 latents
            assert row["nll_iw_q50"] <= row["nll_iw_q90"] <= row["nll_iw_q99"] and 0 <= row["memorised"] <= 1
            for factor in ("x", "y"):  # the tail share per block position of the 50 held-out originals
                pairs = detail[f"tail_by_{factor}"]
                assert [v for v, _ in pairs] == sorted({v for v, _ in pairs}) and all(0 <= share <= 1 for _, share in pairs)
            if g == 1:  # VAE 0's own tail: one original of the 50, at one position
                assert sum(share > 0 for _, share in detail["tail_by_x"]) == 1
    for s in (0, 1):
        assert rows[(s, 1)]["tail_share"] == pytest.approx(0.02)  # VAE 0's own 99 % quantile, on 50 held-out originals: the one above it
    assert rows[(0, 0)]["variability"] != rows[(1, 0)]["variability"]  # each repeat has its own D_0
    for s in (0, 1):
        assert sorted(p.name for p in (replace2 / f"seed-{s}").iterdir()) == ["chain.csv", "gen-000", "gen-001", "gen-002"]
        own = (replace2 / f"seed-{s}/chain.csv").read_text().splitlines()  # the seed's resume point: its lines of chain.csv
        assert own == [lines[0], *(line for line in lines[1:] if line.startswith(f"{s},"))]
        assert (replace2 / f"seed-{s}/gen-001/vae/model.safetensors").is_file()
        assert not (replace2 / f"seed-{s}/gen-002/vae").exists()  # the last dataset has no VAE


def test_generation_0_is_the_original_data_measured_against_itself(replace2):
    cfg = load_config("chain-fc2", overrides=[*TINY, "chain.generations=2", "chain.seeds=2", "chain.save_data=true", "train.device=cpu"])
    assert cfg == load_config(config_file=replace2 / "config.toml")
    for s in (0, 1):
        d0, _ = original_data(cfg, s)
        saved = np.load(replace2 / f"seed-{s}/gen-000/data.npz")["images"]
        assert np.array_equal(saved, d0.images.numpy())
        row = rows_by(replace2)[(s, 0)]
        assert row["variability"] == variability(d0.images, 10_000, seed=0)
        flat = [x.tolist() for x in d0.images.flatten(1).double()]
        brute = sum(math.dist(flat[i], flat[j]) for i, j in itertools.combinations(range(N), 2)) / (N * (N - 1) / 2)
        assert row["variability"] == pytest.approx(brute, abs=0.05)
        assert row["mean_intensity"] == pytest.approx(d0.images.double().mean().item(), abs=1e-12)
        assert row["distribution_diff_train"] == 0.0 and row["distribution_diff_orig"] == 0.0
        for m in ("precision", "recall", "coverage"):
            assert row[f"{m}_train"] == 1.0 and row[f"{m}_orig"] == 1.0
        assert row["density_train"] == row["density_orig"] >= 1.2
        # the block-position marginals against the true binomials, from the data's own factors
        x, y = d0.factors[:, 0].long(), d0.factors[:, 1].long()
        pmf = lambda p: np.array([math.comb(23, k) * p**k * (1 - p) ** (23 - k) for k in range(24)])  # noqa: E731
        hx = np.bincount(x.numpy(), minlength=24) / N
        assert row["x_tv"] == pytest.approx(0.5 * np.abs(hx - pmf(0.3)).sum(), abs=1e-9)
        assert row["x_mean"] == pytest.approx(x.double().mean().item(), abs=1e-9)
        assert row["y_mean"] == pytest.approx(y.double().mean().item(), abs=1e-9)


def test_saved_data_is_the_generated_data_quantized_and_the_metrics_are_its_own(replace2):
    cfg = load_config(config_file=replace2 / "config.toml")
    rows = rows_by(replace2)
    for s in (0, 1):
        d0, heldout = original_data(cfg, s)
        data = [np.load(replace2 / f"seed-{s}/gen-{g:03d}/data.npz")["images"] for g in range(3)]
        for g in (1, 2):
            x = data[g]
            assert x.shape == (N, 1, 24, 24) and x.dtype == np.float32
            assert np.allclose(x * 255, np.round(x * 255), atol=1e-4)  # 8-bit values
            _, model = load_run(replace2 / f"seed-{s}/gen-{g - 1:03d}/vae")
            assert np.array_equal(x, generate(cfg, model, N, s, g - 1).images.numpy())
            t = torch.from_numpy(x)
            row = rows[(s, g)]
            assert row["variability"] == pytest.approx(variability(t, 10_000, seed=0), abs=1e-12)
            assert row["mean_intensity"] == pytest.approx(mean_intensity(t), abs=1e-12)
            assert row["distribution_diff_orig"] == pytest.approx(occupancy_distance(t, d0.images), abs=1e-12)
            # replace: VAE g−1 trained on D_{g−1}
            assert row["distribution_diff_train"] == pytest.approx(occupancy_distance(t, torch.from_numpy(data[g - 1])), abs=1e-12)
            # the generating VAE's −ELBO on the held-out originals
            assert row["neg_elbo"] == pytest.approx(neg_elbo(model, heldout.images, seed=0)["neg_elbo"], rel=1e-9)
        assert not np.array_equal(data[1], data[2])


def test_unquantized_data_is_stored_as_generated(modes):
    d = modes["accumulate"]
    cfg = load_config(config_file=d / "config.toml")
    x = np.load(d / "seed-0/gen-001/data.npz")["images"]
    _, model = load_run(d / "seed-0/gen-000/vae")
    assert np.array_equal(x, generate(cfg, model, N, 0, 0).images.numpy())
    assert not np.allclose(x * 255, np.round(x * 255), atol=1e-4)


@pytest.mark.parametrize(
    "mode,expected",
    [("accumulate", [0, N, 2 * N]), ("accumulate-subsample", [0, N, 150]), ("fresh", [0, N, N])],
)
def test_n_train_is_the_training_set_size_of_each_generation(modes, mode, expected):
    rows = read_table(modes[mode] / "chain.csv")
    assert [r["generation"] for r in rows] == list(range(len(expected)))
    assert [r["n_train"] for r in rows] == expected
    assert all(r["seed"] == 0 for r in rows)


def test_mix_chain_rows(ref):
    rows = read_table(ref / "chain.csv")
    assert [(r["seed"], r["generation"], r["n_train"]) for r in rows] == [(0, 0, 0), (0, 1, N), (0, 2, N)]


def test_accumulate_measures_each_dataset_against_the_pool_it_came_from(modes):
    d = modes["accumulate"]
    data = [torch.from_numpy(np.load(d / f"seed-0/gen-{g:03d}/data.npz")["images"]) for g in range(3)]
    rows = rows_by(d)
    for g in (1, 2):
        pool = torch.cat(data[:g])  # T_{g−1} = D_0 ∪ … ∪ D_{g−1}
        assert rows[(0, g)]["distribution_diff_train"] == pytest.approx(occupancy_distance(data[g], pool), abs=1e-12)


def test_the_seeds_of_a_chain_train_each_generation_as_one_vectorized_group(tmp_path, monkeypatch):
    """chain.seeds = 3: each generation's three VAEs are one `train_group` call, each member with its
    own seed's training set and train.seed; with chain.init = finetune, VAE 1 of seed r starts from
    seed r's VAE 0 as it was saved."""
    import vaelab.experiments.chain as chain_module

    calls = []
    real = chain_module.train_group

    def spy(configs, datas, outs, **kw):
        calls.append(([c.train.seed for c in configs], [d.images.clone() for d in datas], [o.relative_to(tmp_path).as_posix() for o in outs], kw["init"]))
        return real(configs, datas, outs, **kw)

    monkeypatch.setattr(chain_module, "train_group", spy)
    out = chain(tmp_path / "c", "chain.generations=2", "chain.seeds=3", "chain.init=finetune", "chain.save_data=true", "train.device=cpu")
    assert [c[2] for c in calls] == [[f"c/seed-{r}/gen-{g:03d}/vae" for r in range(3)] for g in (0, 1)]
    cfg = load_config(config_file=out / "config.toml")
    for g, (seeds, images, _, inits) in enumerate(calls):
        assert seeds == [cfg.train.seed + 10_007 * r + g for r in range(3)]  # each repeat its own seed
        for r in range(3):
            saved = np.load(out / f"seed-{r}/gen-{g:03d}/data.npz")["images"]
            assert np.array_equal(images[r].numpy(), saved)  # each member its own seed's data
        if g == 0:
            assert inits == [None, None, None]
        else:
            for r in range(3):
                vae0 = load_file(out / f"seed-{r}/gen-000/vae/model.safetensors")
                assert vae0.keys() == inits[r].keys() and all(torch.equal(vae0[k], inits[r][k].cpu()) for k in vae0)
    assert len(read_table(out / "chain.csv")) == 3 * 3


def test_a_file_the_writer_cannot_write_stops_the_chain_in_one_line_keeping_the_rows_before_it(tmp_path, monkeypatch):
    """A chain's files are written on a background thread: a write that fails (a full disk) still
    stops the chain with one line and exit 2, and the rows written before it stay."""
    import errno

    import vaelab.experiments.chain as chain_module

    real = chain_module.save_grid

    def full_disk(path, *args, **kwargs):
        if "gen-001" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(chain_module, "save_grid", full_disk)
    out = tmp_path / "c"
    user_error(cli("chain", "--preset", "chain-fc2", *sets(*TINY, "chain.generations=2", "chain.seeds=2"), "--out", out, "--quiet"), "No space left")
    assert [(r["seed"], r["generation"]) for r in read_table(out / "chain.csv")] == [(0, 0), (1, 0)]
    assert not (out / "seed-0/gen-001/metrics.json").exists()  # nothing of the generation whose files failed


def test_a_chain_killed_between_two_seeds_rows_resumes_as_it_would_have_run(replace2, tmp_path):
    """Killed after seed 0's last row was written and before seed 1's: on resume seed 1's VAE 1
    trains in the same two-member group as before (seed 0's member into no folder), so chain.csv
    ends as the uninterrupted chain's, on the CPU byte for byte, and seed 0's VAE is not rewritten."""
    d = shutil.copytree(replace2, tmp_path / "c")
    for table in (d / "chain.csv", d / "seed-1/chain.csv"):
        lines = table.read_text().splitlines(keepends=True)
        table.write_text("".join(line for line in lines if not line.startswith("1,2,")))
    shutil.rmtree(d / "seed-1/gen-002")
    shutil.rmtree(d / "seed-1/gen-001/vae")
    kept = (d / "seed-0/gen-001/vae/model.safetensors").stat().st_mtime_ns
    r = cli("chain", "--out", d, "--resume", "--quiet")
    assert r.rc == 0, r.err
    assert csv_lines(d) == csv_lines(replace2)
    assert (d / "seed-1/gen-001/vae/model.safetensors").read_bytes() == (replace2 / "seed-1/gen-001/vae/model.safetensors").read_bytes()
    assert (d / "seed-0/gen-001/vae/model.safetensors").stat().st_mtime_ns == kept


def test_the_same_config_twice_gives_the_same_chain_csv(ref, work):
    again = chain(work / "again", *K[len(TINY) :])
    assert (again / "chain.csv").read_text() == (ref / "chain.csv").read_text()


def test_finetune_differs_from_scratch_only_from_the_second_vae_on(ref, work):
    scratch = chain(work / "scratch", *K[len(TINY) :], "chain.init=scratch")
    a, b = rows_by(ref), rows_by(scratch)
    assert a.keys() == b.keys()
    for g in (0, 1):  # D_0 and VAE 0's samples: VAE 0 starts from scratch either way
        assert all(same(a[(0, g)][k], b[(0, g)][k]) for k in METRIC_COLUMNS), g
    assert a[(0, 2)]["variability"] != b[(0, 2)]["variability"]
    assert a[(0, 2)]["neg_elbo"] != b[(0, 2)]["neg_elbo"]


# ---------------------------------------------------------------------------------------------
# Kill and resume. Two real processes are killed (SIGKILL), started together: one kills itself in
# the middle of VAE 0's training, the other is killed from outside once VAE 1 has a checkpoint. Two
# more states a kill leaves are built from finished folders: a temporary file of an atomic write that
# never got renamed into place. Every chain is then resumed and must end with the uninterrupted
# chain's chain.csv, byte for byte, and the same weights.

# `python -c DIE_AT SUFFIX K ARGS…`: runs `vaelab ARGS`, but SIGKILLs itself just before the K-th
# rename of a file whose path ends in SUFFIX into place.
DIE_AT = r"""
import os, signal, sys
suffix, nth = sys.argv[1], int(sys.argv[2])
real_replace = os.replace
hits = []
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(suffix):
        hits.append(dst)
        if len(hits) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
from vaelab.cli import main
sys.exit(main(sys.argv[3:]))
"""

CHAIN_ARGS = ["chain", "--preset", "chain-fc2", *sets(*K), "--quiet"]
CASES = ["vae0-training", "external", "vae0-config-tmp", "last-row-tmp"]


def _complete_rows(d: Path) -> int:
    try:
        return len(read_table(d / "chain.csv"))
    except Exception:
        return -1


@pytest.fixture(scope="module")
def killed(work) -> dict[str, tuple[Path, int, int, str]]:
    """{case: (folder, exit code, rows of chain.csv, stderr)} of the real processes; "bad-config" is
    a user error in a real process, run alongside to share the start-up time."""
    def popen(*cmd):
        return subprocess.Popen([sys.executable, *map(str, cmd)], cwd=work, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = {
        # mid-way through VAE 0's training: its first checkpoint (step 5 of 10) is being written
        "vae0-training": (work / "kill-vae0", popen("-c", DIE_AT, "seed-0/gen-000/vae/model.safetensors", 1, *CHAIN_ARGS, "--out", work / "kill-vae0")),
        "bad-config": (work / "bad-config", popen("-m", "vaelab", "chain", "--set", "chain.real_fraction=1.5", "--out", work / "bad-config")),
        "external": (work / "kill-external", popen("-m", "vaelab", *CHAIN_ARGS, "--out", work / "kill-external")),
    }
    ext, p = procs["external"]
    deadline = time.monotonic() + 240
    try:
        target = ext / "seed-0/gen-001/vae/model.safetensors"  # VAE 1's first checkpoint
        while not target.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.003)
        p.send_signal(signal.SIGKILL)
    finally:
        out = {}
        for case, (d, q) in procs.items():
            stdout, err = q.communicate(timeout=240)
            out[case] = (d, q.returncode, _complete_rows(d), err, stdout)
    return out


@pytest.fixture(scope="module")
def resumed(killed, ref, work) -> dict[str, tuple[Path, Result, dict]]:
    """{case: (folder, result of the resume, mtimes of the weights before it)}. The external kill
    is resumed with the same command plus --resume, the others with `--out DIR --resume` alone."""
    folders = {case: killed[case][0] for case in ("vae0-training", "external")}
    # killed while the first file of VAE 0's run folder was being written: only its temporary file
    d = folders["vae0-config-tmp"] = shutil.copytree(killed["vae0-training"][0], work / "kill-vae0-config")
    shutil.rmtree(d / "seed-0/gen-000/vae")
    (d / "seed-0/gen-000/vae").mkdir()
    (d / "seed-0/gen-000/vae/.config.toml.k1ll3d.tmp").write_text("[data]\nname = ")
    # killed while the last row was being written: gen-002's pictures are there, chain.csv is not
    d = folders["last-row-tmp"] = shutil.copytree(ref, work / "kill-last-row")
    for name in ("report.html", "variability.png", "metrics.png"):
        (d / name).unlink()
    text = (d / "chain.csv").read_text()
    (d / "chain.csv").write_text("".join(text.splitlines(keepends=True)[:3]))
    (d / ".chain.csv.k1ll3d.tmp").write_text(text[: len(text) // 2])
    out = {}
    for case, d in folders.items():
        before = {p.relative_to(d).as_posix(): p.stat().st_mtime_ns for p in d.rglob("model.safetensors")}
        if case == "external":
            r = cli(*CHAIN_ARGS, "--out", d, "--resume")
        else:
            r = cli("chain", "--out", d, "--resume", "--quiet")
        out[case] = (d, r, before)
    return out


@pytest.mark.parametrize("case,rows", [("vae0-training", (1,)), ("external", (2, 3))])
def test_a_killed_chain_stopped_where_it_was_killed(killed, case, rows):
    d, rc, n, err, _ = killed[case]
    assert rc == -signal.SIGKILL, f"not killed (exit {rc}): {err}"
    assert not (d / "report.html").exists()
    assert n in rows  # external: killed while VAE 1 was training (or at the latest right after)
    if case == "vae0-training":
        assert (d / "seed-0/gen-000/vae/config.toml").is_file() and not (d / "seed-0/gen-000/vae/state.safetensors").exists()


def test_a_real_process_reports_a_bad_chain_config_as_one_line(killed):
    d, rc, _, err, out = killed["bad-config"]
    user_error(Result(rc, out, err), "chain.real_fraction")
    assert not d.exists()


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("case", CASES)
def test_resume_after_sigkill_gives_the_uninterrupted_chain_csv(resumed, ref, case):
    d, r, _ = resumed[case]
    assert r.rc == 0, r.err
    assert "2 generations" in r.out
    assert (d / "chain.csv").read_text() == (ref / "chain.csv").read_text()
    assert (d / "report.html").is_file() and (d / "metrics.png").is_file()
    for g in range(2):
        name = f"seed-0/gen-{g:03d}/vae/model.safetensors"
        assert same_weights(d / name, ref / name), name


def test_resume_reloads_finished_vaes_instead_of_retraining_them(resumed):
    # killed while VAE 1 trained: VAE 0's dataset (generation 1) was recorded, so VAE 0 is reloaded
    d, r, before = resumed["external"]
    assert r.rc == 0, r.err
    name = "seed-0/gen-000/vae/model.safetensors"
    assert (d / name).stat().st_mtime_ns == before[name], f"{name} was rewritten"


@pytest.mark.parametrize("case", CASES)
def test_resume_leaves_no_temporary_files_of_the_killed_process(resumed, case):
    d, r, _ = resumed[case]
    assert r.rc == 0, r.err
    assert temporary_files(d) == []


def test_resume_of_a_finished_chain_changes_nothing(ref, tmp_path):
    d = shutil.copytree(ref, tmp_path / "done")
    mtimes = {p: p.stat().st_mtime_ns for p in d.rglob("model.safetensors")}
    r = cli("chain", "--out", d, "--resume", "--quiet")
    assert r.rc == 0, r.err
    assert (d / "chain.csv").read_text() == (ref / "chain.csv").read_text()
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())


def test_resume_with_another_config_is_refused(ref):
    before = (ref / "chain.csv").read_text()
    line = user_error(cli("chain", "--preset", "chain-fc2", *sets(*K, "chain.generations=1"), "--out", ref, "--resume"), "chain.generations")
    assert "--resume" in line
    user_error(cli("chain", "--preset", "chain-fc2", *sets(*K[:-1]), "--out", ref, "--resume"), "chain.init")
    assert (ref / "chain.csv").read_text() == before


def test_resume_with_more_generations_extends_the_chain(ref, tmp_path):
    d = shutil.copytree(ref, tmp_path / "longer")
    mtimes = {p: p.stat().st_mtime_ns for p in d.rglob("model.safetensors")}
    r = cli("chain", "--preset", "chain-fc2", *sets(*K, "chain.generations=3"), "--out", d, "--resume", "--quiet")
    assert r.rc == 0, r.err
    before, after = (ref / "chain.csv").read_text().splitlines(), (d / "chain.csv").read_text().splitlines()
    assert after[: len(before)] == before and len(after) == len(before) + 1  # generations 0–2 kept, 3 added
    assert after[-1].startswith("0,3,")
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())  # VAEs 0 and 1 reloaded, not retrained
    assert (d / "seed-0/gen-002/vae/model.safetensors").is_file()
    assert "generations = 3" in (d / "config.toml").read_text()


def test_an_aggregate_prior_chain_fits_each_vaes_mixture_draws_from_it_and_resumes_as_it_ran(tmp_path):
    """sample.prior = aggregate: every VAE (two seeds trained as one vectorized group) fits and
    keeps its mixture, its data is drawn from it, and a chain extended after stopping reloads the
    mixtures and draws what the uninterrupted chain drew."""
    agg = ["sample.prior=aggregate", "sample.prior_components=3", "chain.seeds=2", "train.device=cpu", "chain.quantize=false"]
    whole = chain(tmp_path / "whole", *agg, "chain.generations=2", "chain.save_data=true")
    part = chain(tmp_path / "part", *agg, "chain.generations=1", "chain.save_data=true")
    r = cli("chain", "--preset", "chain-fc2", *sets(*TINY, *agg, "chain.generations=2", "chain.save_data=true"), "--out", part, "--resume", "--quiet")
    assert r.rc == 0, r.err
    assert csv_lines(part) == csv_lines(whole)
    assert all((whole / f"seed-{s}/gen-{g:03d}/vae/prior.safetensors").is_file() for s in (0, 1) for g in (0, 1))
    cfg, vae0 = load_run(whole / "seed-0/gen-000/vae")  # on the CPU, where the chain trained it
    saved = torch.from_numpy(np.load(whole / "seed-0/gen-001/data.npz")["images"])
    assert torch.equal(generate(cfg, vae0, len(saved), 0, 0).images, saved)  # D_1: VAE 0's mixture, as the chain drew it
    assert not torch.equal(generate(cfg.override({"sample.prior": "standard", "sample.prior_components": 10}), vae0, len(saved), 0, 0).images, saved)


def test_resume_of_a_folder_that_is_not_a_chain_is_refused(tmp_path):
    user_error(cli("chain", "--out", tmp_path / "nothing", "--resume"), "nothing")


def test_an_existing_chain_needs_resume_or_force(ref):
    user_error(cli("chain", "--preset", "chain-fc2", *sets(*K), "--out", ref), "--resume", "--force")


# ---------------------------------------------------------------------------------------------
# The report and compare.


def assert_self_contained(html: str) -> list[bytes]:
    """Every image is an embedded PNG and nothing refers to another file or a URL; returns the PNGs."""
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    refs = [v for t in tags for v in re.findall(r"""\s(?:src|href|srcset|poster|data|action)\s*=\s*["']?([^"'\s>]*)""", t, flags=re.I)]
    assert refs and all(r.startswith("data:image/png;base64,") or r.startswith("#") for r in refs), [r[:40] for r in refs]
    assert not re.search(r"""url\(\s*["']?(?!data:)""", html) and "@import" not in html
    assert not re.search(r"<(link|script)\b", html, flags=re.I)
    pngs = [base64.b64decode(p) for p in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    return pngs


def test_report_holds_every_plot_embedded(replace2):
    html = (replace2 / "report.html").read_text()
    pngs = assert_self_contained(html)
    var, metrics = (replace2 / "variability.png").read_bytes(), (replace2 / "metrics.png").read_bytes()
    assert var.startswith(b"\x89PNG") and metrics.startswith(b"\x89PNG")
    assert var in pngs and metrics in pngs
    for g in range(3):  # a samples and an occupancy picture of every generation (seed 0)
        assert (replace2 / f"seed-0/gen-{g:03d}/samples.png").read_bytes() in pngs
        assert (replace2 / f"seed-0/gen-{g:03d}/occupancy.png").read_bytes() in pngs
    assert html.count("<figcaption>generation 2</figcaption>") == 2
    assert "Where the blocks are" in html  # the marginals figure of points data
    assert "Which latents the KL term keeps" in html  # the KL per latent dim of VAEs 0 and 1
    assert "Which originals fall into the tail first" in html  # the tail share per block position
    assert len(pngs) == 2 + 2 * 3 + 3
    assert len(set(pngs)) == len(pngs)


def test_report_gallery_of_a_long_chain_keeps_the_first_and_last_generations(tmp_path):
    from vaelab.images import png_bytes
    from vaelab.experiments.chain_report import gallery

    for g in range(40):
        (tmp_path / f"seed-0/gen-{g:03d}").mkdir(parents=True)
        (tmp_path / f"seed-0/gen-{g:03d}/samples.png").write_bytes(png_bytes(np.full((2, 2), g * 6, dtype=np.uint8)))
    html = gallery(tmp_path, "samples.png", 100)
    shown = [int(x) for x in re.findall(r"<figcaption>generation (\d+)</figcaption>", html)]
    assert shown[0] == 0 and shown[-1] == 39 and len(shown) == 26 and shown == sorted(set(shown))


def test_compare_writes_a_report_and_every_row_of_every_chain(ref, replace2, work):
    out = work / "compare"
    r = cli("chain", "compare", ref, replace2, ref, "--out", out)
    assert r.rc == 0, r.err
    assert "report.html" in r.out
    assert_self_contained((out / "report.html").read_text())
    assert (out / "variability.png").is_file() and (out / "metrics.png").is_file()
    lines = (out / "compare.csv").read_text().splitlines()
    a, b = csv_lines(ref), csv_lines(replace2)
    assert lines[0] == "chain," + a[0]
    assert lines[1:] == [f"ref,{x}" for x in a[1:]] + [f"replace2,{x}" for x in b[1:]] + [f"ref',{x}" for x in a[1:]]


@pytest.mark.parametrize("kind", ["empty", "missing", "training-run", "file"])
def test_compare_of_a_folder_that_is_not_a_chain_is_refused(ref, tmp_path, kind):
    bad = tmp_path / "bad"
    if kind == "empty":
        bad.mkdir()
    elif kind == "training-run":
        r = cli("train", "--set", "data.n=32", "--set", "train.steps=1", "--set", "sample.n=4", "--out", bad, "--quiet")
        assert r.rc == 0, r.err
    elif kind == "file":
        bad.write_text("x")
    user_error(cli("chain", "compare", ref, bad, "--out", tmp_path / "cmp"), "bad")
    assert not (tmp_path / "cmp").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line, nothing written.


@pytest.mark.parametrize(
    "pairs,needles",
    [
        (["chain.generations=0"], ["chain.generations"]),
        (["chain.generations=-3"], ["chain.generations"]),
        (["chain.real_fraction=1.5"], ["chain.real_fraction"]),
        (["chain.real_fraction=-0.1"], ["chain.real_fraction"]),
        (["chain.mode=mix"], ["chain.real_fraction", "mix"]),
        (["chain.mode=fresh", "chain.real_fraction=0"], ["chain.real_fraction", "fresh"]),
        (["chain.mode=shuffle"], ["chain.mode"]),
        (["chain.init=warm"], ["chain.init"]),
        (["sample.denoise=1.0"], ["sample.denoise"]),
        (["sample.denoise=-0.1"], ["sample.denoise"]),
        (["sample.delta=-1"], ["sample.delta"]),
        (["chain.seeds=0"], ["chain.seeds"]),
        (["chain.budget=-1"], ["chain.budget"]),
        (["chain.holdout=0"], ["chain.holdout"]),
        (["chain.metric_samples=5"], ["chain.metric_samples"]),
        (["chain.iw_samples=-1"], ["chain.iw_samples"]),
        (["data.n=100000", "chain.metric_samples=100000"], ["chain.metric_samples = 100,000", "GiB"]),  # 160 GB of distances: more than any device here
        (["chain.bogus=1"], ["chain.bogus"]),
        (["data.name=digits", "chain.mode=fresh", "chain.real_fraction=0.5"], ["fresh", "digits", "points"]),
    ],
)
def test_bad_chain_config_is_one_line_and_writes_nothing(tmp_path, pairs, needles):
    out = tmp_path / "c"
    user_error(cli("chain", "--preset", "chain-fc2", *sets(*pairs), "--out", out), *needles)
    assert not out.exists()


@pytest.mark.parametrize(
    "pairs,needles",
    [
        (["data.name=digits", "data.n=1790", "chain.holdout=50"], ["digits", "1797"]),
        (["model.name=conv", "model.kernel=30"], ["kernel"]),
    ],
)
def test_a_chain_the_data_or_model_rejects_leaves_no_folder_that_blocks_the_retry(tmp_path, pairs, needles):
    out = tmp_path / "c"
    user_error(cli("chain", *sets(*TINY, *pairs), "--out", out), *needles)
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize(
    "args,needles",
    [
        (["chain", "--preset", "chain-fc2"], ["--out"]),
        (["chain"], ["--out"]),
        (["chain", "foo", "--out", "x"], ["foo", "compare"]),
        (["chain", "compare", "--out", "x"], ["compare"]),
        (["chain", "compare", "a", "--set", "chain.generations=2", "--out", "x"], ["compare"]),
        (["chain", "compare", "a", "b", "--vectorize", "off", "--out", "x"], ["compare"]),
        (["chain", "--vectorize", "sometimes", "--out", "x"], ["--vectorize", "auto", "off"]),
        (["chain", "--preset", "nope", "--out", "x"], ["nope", "chain-conv"]),
        (["chain", "--set", "chain.generations", "--out", "x"], ["key=value"]),
    ],
)
def test_chain_usage_mistakes_are_one_line(tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    user_error(cli(*args), *needles)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# The study's presets.


def test_presets_lists_every_chain_preset_on_one_line_each():
    r = cli("presets")
    assert r.rc == 0 and r.err == ""
    lines = r.out.splitlines()
    for name in CHAIN_PRESETS:
        mine = [line for line in lines if line.split()[0] == name]
        assert len(mine) == 1, (name, mine)
        assert len(mine[0].split(None, 1)) == 2 and len(mine[0].split(None, 1)[1]) > 10, mine  # with a description


EXPECTED = {  # preset: (model, β, variability_weight, δ, denoise, generations, variant, prior)
    "chain-fc1": ("fc1", 1.0, 0.0, 0.0, 0.0, 20, "binomial", "standard"),
    "chain-fc2": ("fc2", 1.0, 0.0, 0.0, 0.0, 20, "binomial", "standard"),
    "chain-conv": ("conv", 1.0, 0.0, 0.0, 0.0, 20, "binomial", "standard"),
    "chain-asym": ("asym", 1.0, 0.0, 0.0, 0.0, 20, "binomial", "standard"),
    "chain-conv-beta0.3": ("conv", 0.3, 0.0, 0.0, 0.0, 20, "binomial", "standard"),
    "chain-conv-varloss": ("conv", 1.0, 10 / (2 * 32), 0.0, 0.0, 20, "binomial", "standard"),
    "chain-conv-beta0.7-varloss-denoise": ("conv", 0.7, 10 / (2 * 32), 0.0, 0.05, 20, "binomial", "standard"),
    "chain-conv-denoise0.7": ("conv", 1.0, 0.0, 0.0, 0.7, 20, "binomial", "standard"),
    "chain-conv-delta0.4-denoise": ("conv", 1.0, 0.0, 0.4, 0.05, 20, "binomial", "standard"),
    "chain-conv-delta0.7-denoise": ("conv", 1.0, 0.0, 0.7, 0.05, 20, "binomial", "standard"),
    "chain-conv-delta0.7-denoise-long": ("conv", 1.0, 0.0, 0.7, 0.05, 50, "binomial", "standard"),
    "chain-conv-uniform": ("conv", 1.0, 0.0, 0.0, 0.0, 20, "uniform", "standard"),
    "chain-conv-bimodal": ("conv", 1.0, 0.0, 0.0, 0.0, 20, "bimodal", "standard"),
    "chain-conv-aggregate": ("conv", 1.0, 0.0, 0.0, 0.0, 20, "binomial", "aggregate"),
    "chain-conv-aggregate-denoise": ("conv", 1.0, 0.0, 0.0, 0.05, 20, "binomial", "aggregate"),
}


@pytest.mark.parametrize("name", CHAIN_PRESETS)
def test_chain_preset_has_the_studys_settings(name):
    assert set(EXPECTED) == set(CHAIN_PRESETS)
    model, beta, vw, delta, denoise, generations, variant, prior = EXPECTED[name]
    c = load_config(name)
    assert (c.data.name, c.data.n, c.data.params.size, c.data.params.block, c.data.params.variant) == ("points", 20_000, 24, 3, variant)
    assert (c.data.params.p_x, c.data.params.p_y) == (0.3, 0.8)
    assert (c.model.name, c.model.latent_dim, c.model.likelihood) == (model, 8, "gaussian")
    if model in ("conv", "asym"):
        assert c.model.params.channels == (32,) and c.model.params.kernel == 3
    assert (c.train.batch_size, c.train.epochs, c.train.steps, c.train.lr) == (32, 5, 0, 1e-3)
    assert (c.loss.recon_weight, c.loss.beta, c.loss.variability_weight, c.loss.kl_schedule) == (1.0, beta, vw, "constant")
    assert vw in (0.0, 0.15625)
    assert (c.sample.delta, c.sample.denoise, c.sample.prior) == (delta, denoise, prior)
    assert c.sample.prior_components == 10
    ch = c.chain
    assert (ch.generations, ch.mode, ch.init, ch.seeds, ch.samples, ch.quantize) == (generations, "replace", "scratch", 1, 0, True)


def test_a_dollar_in_a_chains_folder_name_is_drawn_as_written(tmp_path):
    """matplotlib reads `$…$` as math (and `$^$` is bad math): a folder name must reach the plots as plain text."""
    a = chain(tmp_path / "x$^$y", "chain.generations=1")
    assert "x$^$y" in (a / "report.html").read_text()
    r = cli("chain", "compare", a, a, "--out", tmp_path / "cmp$_$")
    assert r.rc == 0, r.err


def test_the_independent_minimal_chain_draws_vaelab_s_points_and_runs_a_generation():
    # tests/independent/minimal_chain.py repeats the chain study without vaelab (docs/chain.md's
    # second opinion on the δ = 0.7 chain); its D_0 must be vaelab's `points` in distribution:
    # the same variability (about 3.85) and brightness (blocks clipped at the borders) within
    # sampling error, and its generation must leave the 8-bit, thresholded images the study keeps
    import importlib.util

    spec = importlib.util.spec_from_file_location("minimal_chain", Path(__file__).parent / "independent" / "minimal_chain.py")
    minimal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(minimal)
    theirs = minimal.points(4000, np.random.default_rng(0))
    ours = load_config("chain-conv", overrides={"data.n": 4000})
    from vaelab.data import load_data

    ours = load_data(ours.data).images.numpy()
    assert theirs.shape == ours.shape and set(np.unique(theirs)) == set(np.unique(ours)) == {0.0, 1.0}
    assert abs(minimal.variability(theirs, np.random.default_rng(1)) - variability(torch.from_numpy(ours))) < 0.05
    assert abs(theirs.reshape(4000, -1).sum(1).mean() - ours.reshape(4000, -1).sum(1).mean()) < 0.15  # about 8.8 lit pixels
    model = minimal.train(theirs[:300], epochs=1, seed=0)
    images = minimal.generate(model, 200, delta=0.7, thr=0.05, seed=1)
    assert images.shape == (200, 1, 24, 24) and np.allclose(images * 255, np.round(images * 255), atol=1e-4)
    assert images[images > 0].min() >= 0.05 * images.max() - 1 / 255

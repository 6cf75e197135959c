"""CLI tests: every verb on a tiny budget, every user mistake as one line and exit code 2, and
resume after a real SIGKILL.

Most commands run in-process through `vaelab.cli.main` (fast); a handful run as real processes
(`python -m vaelab`, and the installed `vaelab` script) so that exit codes, stderr and the absence
of tracebacks are checked on the real thing. Runs that several tests read are trained once per
module; tests that damage a run folder work on a copy.

Training here uses one thread (torch.set_num_threads(1) in-process, OMP_NUM_THREADS=1 for the
subprocesses): on a 2-core machine shared with other work, two spinning OpenMP threads make these
tiny models several times slower, and both halves of the resume comparison must use the same
thread count anyway.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import Result, assert_user_error, cli, user_error
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from vaelab.data import listing


TINY = ["--set", "data.n=256", "--set", "train.steps=20", "--set", "sample.n=8"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
PRESETS = {"chain-fc1", "chain-fc2", "chain-conv", "chain-asym", "demo"}
DATASETS = {"points", "squares", "squares-test", "digits", "mnist", "fashion-mnist", "array", "images", "fontdigits", "sprites"}
SECTIONS = {
    "data": {"name", "n", "seed", "path"},
    "model": {"name", "latent_dim", "hidden", "decoder_hidden", "batch_norm", "likelihood"},
    "loss": {"recon_weight", "beta", "variability_weight", "kl_schedule", "warmup_steps"},
    "train": {"epochs", "steps", "batch_size", "lr", "seed", "device", "checkpoint_every"},
    "sample": {"n", "delta", "denoise", "seed"},
    "chain": {"generations", "mode", "real_fraction", "init", "seeds"},
    "sweep": {"grid", "seeds", "metrics", "pmi_fit", "test_n"},
}
RUN_FILES = {"config.toml", "metrics.jsonl", "model.safetensors", "state.safetensors", "samples.png", "reconstructions.png", "report.html"}


# ---------------------------------------------------------------------------------------------
# Helpers.




def run_cli(*args, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m vaelab ARGS` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )




def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) by relative path → sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def step_of(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["step"])


def weight_shapes(run: Path) -> set[tuple[int, ...]]:
    return {tuple(t.shape) for k, t in load_file(str(run / "model.safetensors")).items() if k.endswith("weight")}


def assert_self_contained(html: str) -> None:
    """Every image is embedded; nothing refers to a URL or to another file."""
    assert "data:image/png;base64," in html
    assert 'src="http' not in html and "src='http" not in html
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    refs = [v for t in tags for v in re.findall(r"""\s(?:src|href|srcset|poster|data|action)\s*=\s*["']?([^"'\s>]*)""", t, flags=re.I)]
    assert refs, "no embedded images found"
    assert all(r.startswith("data:") or r.startswith("#") for r in refs), [r[:60] for r in refs if not r.startswith("data:")]
    assert not re.search(r"""url\(\s*["']?(?!data:)""", html), "a CSS url() that is not a data URI"
    assert not re.search(r"<(link|script)\b[^>]*\b(href|src)=", html, flags=re.I), "an external stylesheet or script"
    assert not re.search(r"@import", html)
    for payload in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html):
        assert base64.b64decode(payload).startswith(b"\x89PNG\r\n\x1a\n")


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------
# Runs shared by several tests (never modified by a test: damage happens on copies).


@pytest.fixture(scope="module")
def fc2_run(tmp_path_factory) -> tuple[Path, Result]:
    """The chain study's fc2 preset with overrides on a tiny budget."""
    d = tmp_path_factory.mktemp("cli") / "fc2"
    r = cli("train", "--preset", "chain-fc2", *TINY, "--set", "loss.beta=0.5", "--out", d, "--quiet")
    assert r.rc == 0, r.err
    return d, r


@pytest.fixture(scope="module")
def run_dir(fc2_run) -> Path:
    return fc2_run[0]


@pytest.fixture(scope="module")
def fc1_run(tmp_path_factory) -> Path:
    """Another architecture (fc1), also stopped at step 20, for foreign-checkpoint tests."""
    d = tmp_path_factory.mktemp("cli") / "fc1"
    r = cli("train", "--set", "model.name=fc1", "--set", "data.n=64", "--set", "train.steps=20", "--set", "sample.n=4", "--out", d, "--quiet")
    assert r.rc == 0, r.err
    return d


# ---------------------------------------------------------------------------------------------
# train


def test_train_preset_with_overrides_writes_a_complete_run_folder(fc2_run):
    d, r = fc2_run
    assert re.search(r"\btrained 20 steps\b", r.out), r.out
    assert r.err == ""
    files = {p.name for p in d.iterdir()}
    assert RUN_FILES <= files, RUN_FILES - files

    # config.toml is fully resolved: every section, every key, defaults filled in.
    cfg = tomllib.loads((d / "config.toml").read_text())
    assert set(cfg) == set(SECTIONS)
    for section, keys in SECTIONS.items():
        assert keys <= set(cfg[section]), (section, keys - set(cfg[section]))
    assert {"size", "block", "p_x", "p_y", "variant"} <= set(cfg["data"])  # the points dataset's own parameters
    assert (cfg["data"]["name"], cfg["data"]["n"]) == ("points", 256)
    assert (cfg["data"]["size"], cfg["data"]["block"]) == (24, 3)
    assert (cfg["model"]["name"], cfg["model"]["latent_dim"]) == ("fc2", 8)
    assert cfg["model"]["hidden"] == [144, 28] and cfg["model"]["decoder_hidden"] == []  # 576-144-28-8, the decoder the mirror
    assert set(cfg["model"]) == SECTIONS["model"]  # fc2's own keys only: no channels, kernel, codebook_size, …
    assert cfg["model"]["batch_norm"] is False and cfg["model"]["likelihood"] == "gaussian"
    assert cfg["loss"] == {
        "recon_weight": 1.0, "beta": 0.5, "variability_weight": 0.0, "kl_schedule": "constant", "warmup_steps": 0,
        "tc_weight": 0.0, "tc_estimator": "mws", "capacity_max": 0.0, "capacity_steps": 0, "dip": "off", "dip_offdiag": 10.0, "dip_diag": 100.0,
    }  # fmt: skip
    assert (cfg["train"]["steps"], cfg["train"]["batch_size"], cfg["train"]["lr"]) == (20, 32, 1e-3)
    assert (cfg["train"]["seed"], cfg["train"]["device"]) == (0, "auto")
    assert cfg["sample"] == {"n": 8, "delta": 0.0, "denoise": 0.0, "seed": 0, "prior": "standard", "prior_components": 10}

    # metrics.jsonl: one row per step, in order, with the named terms; total = recon + β·KL.
    rows = rows_of(d / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(20))
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("loss", "recon", "kl"))
        assert row["kl"] >= 0 and row["recon"] > 0
        assert row["loss"] == pytest.approx(row["recon"] + 0.5 * row["kl"], rel=1e-5)
    assert np.mean([row["loss"] for row in rows[-5:]]) < np.mean([row["loss"] for row in rows[:5]])  # it learns

    # the weights are the fc2 architecture: 576 → 144 → 28 → 2·8, decoder 8 → 28 → 144 → 576
    assert weight_shapes(d) == {(144, 576), (28, 144), (16, 28), (28, 8), (144, 28), (576, 144)}
    assert step_of(d / "model.safetensors") == 20 and step_of(d / "state.safetensors") == 20

    for png in ("samples.png", "reconstructions.png"):
        with Image.open(d / png) as im:
            assert im.format == "PNG"
    assert_self_contained((d / "report.html").read_text())
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


def test_train_from_a_config_file_layered_between_preset_and_set(tmp_path):
    (tmp_path / "mine.toml").write_text(
        '[data]\nn = 128\n\n[model]\nname = "fc1"\nlatent_dim = 4\n\n[loss]\nbeta = 2.0\n\n[train]\nsteps = 10\nbatch_size = 16\n'
    )
    d = tmp_path / "run"
    r = cli("train", "--preset", "chain-fc2", "--config", tmp_path / "mine.toml", "--set", "train.steps=12", "--set", "sample.n=4", "--out", d, "--quiet")
    assert r.rc == 0, r.err
    cfg = tomllib.loads((d / "config.toml").read_text())
    for section, keys in SECTIONS.items():
        assert keys <= set(cfg[section])
    assert cfg["data"]["name"] == "points" and cfg["data"]["n"] == 128  # file over preset
    assert cfg["model"]["name"] == "fc1" and cfg["model"]["latent_dim"] == 4 and cfg["model"]["hidden"] == [115]  # fc1's width
    assert cfg["loss"]["beta"] == 2.0 and cfg["loss"]["recon_weight"] == 1.0
    assert cfg["train"]["steps"] == 12  # --set over the file
    assert cfg["train"]["batch_size"] == 16 and cfg["train"]["lr"] == 1e-3  # file, preset
    assert cfg["sample"]["n"] == 4
    rows = rows_of(d / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(12))
    assert all(row["loss"] == pytest.approx(row["recon"] + 2.0 * row["kl"], rel=1e-5) for row in rows)
    assert weight_shapes(d) == {(115, 576), (8, 115), (115, 4), (576, 115)}  # 576 → 115 → 2·4; 4 → 115 → 576
    assert RUN_FILES <= {p.name for p in d.iterdir()}


def test_train_with_set_only_uses_the_documented_defaults(tmp_path):
    d = tmp_path / "run"
    r = cli("train", "--set", "data.n=64", "--set", "train.steps=5", "--set", "sample.n=4", "--set", "model.latent_dim=3", "--set", "model.hidden=16,8", "--out", d, "--quiet")
    assert r.rc == 0, r.err
    cfg = tomllib.loads((d / "config.toml").read_text())
    for section, keys in SECTIONS.items():
        assert keys <= set(cfg[section])
    assert (cfg["data"]["name"], cfg["model"]["name"]) == ("points", "fc2")
    assert cfg["model"]["hidden"] == [16, 8] and cfg["model"]["decoder_hidden"] == []  # unset: the decoder mirrors hidden (weight_shapes below)
    assert cfg["loss"]["beta"] == 1.0 and cfg["train"]["batch_size"] == 32 and cfg["sample"]["delta"] == 0.0
    assert [row["step"] for row in rows_of(d / "metrics.jsonl")] == list(range(5))
    assert weight_shapes(d) == {(16, 576), (8, 16), (6, 8), (8, 3), (16, 8), (576, 16)}
    assert RUN_FILES <= {p.name for p in d.iterdir()}


def test_force_replaces_a_previous_run_folder(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "run")
    r = cli("train", "--preset", "chain-fc2", "--set", "data.n=64", "--set", "train.steps=3", "--set", "sample.n=4", "--out", d, "--force", "--quiet")
    assert r.rc == 0, r.err
    assert tomllib.loads((d / "config.toml").read_text())["train"]["steps"] == 3
    assert [row["step"] for row in rows_of(d / "metrics.jsonl")] == [0, 1, 2]
    assert step_of(d / "model.safetensors") == 3


# ---------------------------------------------------------------------------------------------
# sample, reconstruct, report


def test_sample_npz(tmp_path, run_dir):
    r = cli("sample", run_dir, "--n", 10, "--out", tmp_path / "x.npz")
    assert r.rc == 0, r.err
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        assert z.files == ["images"]
        x = z["images"]
    assert x.shape == (10, 1, 24, 24) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and np.isfinite(x).all()
    assert x.std() > 0  # not a constant array

    # without --n, the run's sample.n (8) is used
    r = cli("sample", run_dir, "--out", tmp_path / "y.npz")
    assert r.rc == 0, r.err
    with np.load(tmp_path / "y.npz") as z:
        assert z["images"].shape == (8, 1, 24, 24)


def test_sample_png(tmp_path, run_dir):
    r = cli("sample", run_dir, "--n", 10, "--out", tmp_path / "x.png")
    assert r.rc == 0, r.err
    with Image.open(tmp_path / "x.png") as im:
        assert im.format == "PNG"
        assert im.width * im.height >= 10 * 24 * 24  # room for ten 24x24 tiles


def _sample(run_dir: Path, out: Path, *sets: str, n: int = 64) -> np.ndarray:
    args = [a for s in sets for a in ("--set", s)]
    r = cli("sample", run_dir, "--n", n, *args, "--out", out)
    assert r.rc == 0, r.err
    with np.load(out) as z:
        return z["images"]


def test_sample_denoise_zeroes_every_pixel_below_the_threshold(tmp_path, run_dir):
    raw = _sample(run_dir, tmp_path / "raw.npz", "sample.seed=3")
    den = _sample(run_dir, tmp_path / "den.npz", "sample.seed=3", "sample.denoise=0.5")
    threshold = 0.5 * raw.max()  # of the whole generated set
    below, kept = raw < threshold, raw >= threshold
    assert below.any() and kept.any(), "the test needs pixels on both sides of the threshold"
    assert (den[below] == 0).all()
    np.testing.assert_array_equal(den[kept], raw[kept])


def test_sample_seed_makes_it_reproducible(tmp_path, run_dir):
    a = _sample(run_dir, tmp_path / "a.npz", "sample.seed=7", n=16)
    b = _sample(run_dir, tmp_path / "b.npz", "sample.seed=7", n=16)
    c = _sample(run_dir, tmp_path / "c.npz", "sample.seed=8", n=16)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_delta_reaches_the_sampler(tmp_path, run_dir):
    """Same seed, δ = 0 vs δ = 3 (latents four times as far out): other images, still in [0, 1]."""
    a = _sample(run_dir, tmp_path / "a.npz", "sample.seed=1", n=16)
    b = _sample(run_dir, tmp_path / "b.npz", "sample.seed=1", "sample.delta=3", n=16)
    assert not np.array_equal(a, b) and b.min() >= 0 and b.max() <= 1


def test_reconstruct_npz_of_the_runs_own_data(tmp_path, run_dir):
    r = cli("reconstruct", run_dir, "--out", tmp_path / "r.npz")
    assert r.rc == 0, r.err
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["images", "inputs"]
        images, inputs = z["images"], z["inputs"]
    assert images.shape == inputs.shape == (16, 1, 24, 24)  # --n defaults to 16
    assert images.dtype == inputs.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    # the inputs are `points` images: one 3x3 block of ones (2x2 or 2x3 at the borders)
    assert set(np.unique(inputs)) <= {0.0, 1.0}
    assert set(inputs.sum(axis=(1, 2, 3)).tolist()) <= {4.0, 6.0, 9.0}
    # the posterior mean is deterministic
    assert cli("reconstruct", run_dir, "--out", tmp_path / "again.npz").rc == 0
    with np.load(tmp_path / "again.npz") as z:
        np.testing.assert_array_equal(z["images"], images)

    r = cli("reconstruct", run_dir, "--n", 5, "--out", tmp_path / "five.npz")
    assert r.rc == 0, r.err
    with np.load(tmp_path / "five.npz") as z:
        assert z["images"].shape == z["inputs"].shape == (5, 1, 24, 24)
        np.testing.assert_array_equal(z["inputs"], inputs[:5])


def test_reconstruct_png(tmp_path, run_dir):
    r = cli("reconstruct", run_dir, "--n", 8, "--out", tmp_path / "r.png")
    assert r.rc == 0, r.err
    with Image.open(tmp_path / "r.png") as im:
        assert im.format == "PNG" and im.width * im.height >= 16 * 24 * 24  # 8 inputs + 8 outputs


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_reconstruct_from_an_input_file(tmp_path, run_dir, suffix):
    imgs = np.zeros((6, 24, 24), dtype=np.uint8)
    for i in range(6):
        imgs[i, 2 * i : 2 * i + 3, 20 - 3 * i : 23 - 3 * i] = 255
    path = tmp_path / f"mine{suffix}"
    if suffix == ".npz":
        np.savez(path, images=imgs)
    else:
        np.save(path, imgs)
    r = cli("reconstruct", run_dir, "--input", path, "--out", tmp_path / "r.npz")
    assert r.rc == 0, r.err
    with np.load(tmp_path / "r.npz") as z:
        images, inputs = z["images"], z["inputs"]
    assert inputs.shape == images.shape == (6, 1, 24, 24)
    np.testing.assert_array_equal(inputs[:, 0], imgs.astype(np.float32) / 255)
    assert images.min() >= 0 and images.max() <= 1


def test_report_rebuilds_report_html_from_the_files(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "run")
    (d / "report.html").unlink()
    (d / "loss.png").unlink(missing_ok=True)
    r = cli("report", d)
    assert r.rc == 0, r.err
    assert "report.html" in r.out
    html = (d / "report.html").read_text()
    assert_self_contained(html)
    # built from the folder's own files: its sample and reconstruction grids are embedded as they are
    for png in ("samples.png", "reconstructions.png"):
        assert base64.b64encode((d / png).read_bytes()).decode() in html
    assert "fc2" in html and "points" in html


# ---------------------------------------------------------------------------------------------
# presets, datasets, help


def test_presets_lists_the_shipped_presets():
    r = cli("presets")
    assert r.rc == 0 and r.err == ""
    lines = [line for line in r.out.splitlines() if line.strip()]
    names = {line.split()[0] for line in lines}
    assert PRESETS <= names, PRESETS - names
    assert all(len(line.split()) > 1 for line in lines)  # each with its description


def test_datasets_lists_every_dataset_with_its_parameters():
    r = cli("datasets")
    assert r.rc == 0 and r.err == ""
    names = {line.split()[0] for line in r.out.splitlines() if line.strip() and not line[0].isspace()}
    assert DATASETS <= names, DATASETS - names
    assert "data.p_x=0.3" in r.out and "data.noise_var=" in r.out
    assert r.out == listing(), "src/vaelab/data/datasets.txt is stale: python -c 'from vaelab.data import listing; open(\"src/vaelab/data/datasets.txt\", \"w\").write(listing())'"


@pytest.mark.parametrize("verb", ["train", "sample", "reconstruct", "report", "presets", "datasets", "demo"])
def test_each_verb_has_help_with_an_example(verb):
    r = cli(verb, "--help")
    assert r.rc == 0, r.err
    assert "example" in r.out.lower() and f"vaelab {verb}" in r.out


def test_top_level_help_in_the_installed_script(tmp_path):
    script = Path(sys.executable).with_name("vaelab")
    if not script.is_file():
        pytest.skip("the `vaelab` console script is not installed next to this Python")
    p = subprocess.run([str(script), "--help"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "example" in p.stdout.lower() and p.stderr == ""
    for verb in ("train", "sample", "reconstruct", "report", "presets", "datasets", "demo"):
        assert verb in p.stdout


def test_no_verb_is_a_one_line_error_naming_the_verbs():
    r = cli()
    assert r.rc == 2 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1
    assert "train" in r.err and "sample" in r.err and "--help" in r.err


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2, one line, no traceback.

BAD_CONFIG = [
    (["--preset", "nope"], ["'nope'", *sorted(PRESETS)]),
    (["--set", "data.name=nope"], ["'nope'", *sorted(DATASETS)]),
    (["--set", "model.name=nope"], ["'nope'", "fc1", "fc2", "conv", "asym"]),
    (["--set", "loss.nope=1"], ["loss.nope", "loss.beta", "loss.recon_weight", "loss.variability_weight"]),
    (["--set", "nope.key=1"], ["nope", "data", "model", "loss", "train", "sample"]),
    (["--set", "data.p_z=0.5"], ["data.p_z", "data.p_x"]),
    (["--set", "train.epochs=abc"], ["train.epochs", "abc"]),
    (["--set", "model.batch_norm=maybe"], ["model.batch_norm", "maybe"]),
    (["--set", "loss.beta=-1"], ["loss.beta"]),
    (["--set", "model.latent_dim=0"], ["model.latent_dim"]),
    (["--set", "model.latent_dim=4096"], ["model.latent_dim"]),
    (["--set", "train.lr=0"], ["train.lr"]),
    (["--set", "train.batch_size=1", "--set", "loss.variability_weight=1"], ["train.batch_size"]),
    (["--set", "train.batch_size=1", "--set", "model.batch_norm=true"], ["batch"]),
    (["--set", "sample.delta=-2"], ["sample.delta"]),
    (["--set", "sample.denoise=1"], ["sample.denoise"]),
    (["--set", "loss.beta"], ["loss.beta"]),  # no `=`
    (["--set", "train.device=gpu"], ["train.device"]),
    (["--config", "missing.toml"], ["missing.toml"]),
]


@pytest.mark.parametrize("args,needles", BAD_CONFIG, ids=[" ".join(a) for a, _ in BAD_CONFIG])
def test_bad_config_is_one_line_and_exit_2(tmp_path, args, needles):
    out = tmp_path / "run"
    args = [str(tmp_path / a) if a.endswith(".toml") else a for a in args]
    r = cli("train", *TINY, *args, "--out", out, "--quiet")
    user_error(r, *needles)
    assert not out.exists(), "a rejected config left a run folder behind"


def test_bad_config_file_is_one_line_and_exit_2(tmp_path):
    for text, needle in (("[train\nlr = ", "bad.toml"), ("[train]\nlr = 'fast'\n", "train.lr"), ("train = 3\n", "train")):
        (tmp_path / "bad.toml").write_text(text)
        user_error(cli("train", "--config", tmp_path / "bad.toml", "--out", tmp_path / "run"), needle)
    assert not (tmp_path / "run").exists()


def test_a_config_the_model_rejects_leaves_no_folder_that_blocks_the_retry(tmp_path):
    """The kernel is too large for 24x24 images: an error naming model.kernel. Fixing the config
    and running the same command again must work, without --force."""
    out = tmp_path / "run"
    conv = ["--set", "model.name=conv", "--set", "data.n=64", "--set", "train.steps=2", "--set", "sample.n=4"]
    user_error(cli("train", *conv, "--set", "model.kernel=30", "--out", out, "--quiet"), "model.kernel")
    r = cli("train", *conv, "--set", "model.kernel=3", "--out", out, "--quiet")
    assert r.rc == 0, r.err


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_GOOD = np.random.default_rng(0).random((64, 24, 24)).astype(np.float32)
_NAN = _GOOD.copy()
_NAN[3, 4, 5] = np.nan
_INF = _GOOD.copy()
_INF[0, 0, 0] = np.inf
BAD_DATA = {
    "missing": None,
    "empty.npy": b"",
    "truncated.npy": _npy_bytes(_GOOD)[: len(_npy_bytes(_GOOD)) // 2],
    "truncated.npz": _npz_bytes(images=_GOOD)[: len(_npz_bytes(images=_GOOD)) // 2],
    "garbage.npz": b"PK\x03\x04" + b"\x00not a zip file" * 20,
    "flat.npy": _npy_bytes(_GOOD.reshape(64, 576)),
    "vector.npy": _npy_bytes(_GOOD.reshape(-1)),
    "five-dims.npy": _npy_bytes(_GOOD.reshape(4, 16, 1, 24, 24)),
    "int64.npy": _npy_bytes(np.arange(64 * 24 * 24, dtype=np.int64).reshape(64, 24, 24)),
    "complex.npy": _npy_bytes(_GOOD.astype(np.complex64)),
    "strings.npy": _npy_bytes(np.array([["a", "b"], ["c", "d"]])),
    "nan.npy": _npy_bytes(_NAN),
    "inf.npz": _npz_bytes(images=_INF),
    "other-key.npz": _npz_bytes(pictures=_GOOD),
}


@pytest.mark.parametrize("name", list(BAD_DATA))
def test_bad_data_file_is_one_line_and_exit_2(tmp_path, name):
    path = tmp_path / ("nothing-here.npz" if name == "missing" else name)
    if BAD_DATA[name] is not None:
        path.write_bytes(BAD_DATA[name])
    out = tmp_path / "run"
    r = cli("train", "--set", "data.name=array", "--set", f"data.path={path}", "--set", "train.steps=5", "--out", out, "--quiet")
    user_error(r, path.name)
    assert not out.exists()


@pytest.mark.parametrize("name", ["truncated.npz", "nan.npy", "strings.npy"])
def test_bad_input_file_for_reconstruct(tmp_path, run_dir, name):
    path = tmp_path / name
    path.write_bytes(BAD_DATA[name])
    user_error(cli("reconstruct", run_dir, "--input", path, "--out", tmp_path / "r.npz"), name)
    assert not (tmp_path / "r.npz").exists()


@pytest.mark.parametrize("shape", [(5, 10, 10), (5, 3, 24, 24)], ids=["10x10", "3-channels"])
def test_reconstruct_input_of_another_image_shape_is_a_user_error(tmp_path, run_dir, shape):
    path = tmp_path / "other.npy"
    np.save(path, np.random.default_rng(0).random(shape).astype(np.float32))
    user_error(cli("reconstruct", run_dir, "--input", path, "--out", tmp_path / "r.npz"), "24")  # names the trained size
    assert not (tmp_path / "r.npz").exists()


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x93 this is not a checkpoint \x00\xff" * 50)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign(path: Path) -> None:  # a valid safetensors file that vaelab did not write
    save_file({"encoder.1.weight": torch.zeros(144, 576), "encoder.1.bias": torch.zeros(144), "step": torch.tensor(20)}, str(path))


def _missing(path: Path) -> None:
    path.unlink()


DAMAGES = [
    (verb, damage)
    for verb in ("sample", "reconstruct", "resume")
    for damage in (_garbage, _truncated, _foreign, _missing)
    if not (verb == "resume" and damage is _missing)  # no state.safetensors: a resumed run starts over
]


@pytest.mark.parametrize("verb,damage", DAMAGES, ids=[f"{v}-{d.__name__.strip('_')}" for v, d in DAMAGES])
def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path, run_dir, verb, damage):
    """sample and reconstruct read model.safetensors; --resume reads state.safetensors."""
    d = copy_run(run_dir, tmp_path / "run")
    name = "state.safetensors" if verb == "resume" else "model.safetensors"
    damage(d / name)
    before = snapshot(d)
    if verb == "resume":
        r = cli("train", "--resume", d, "--quiet")
    else:
        r = cli(verb, d, "--out", tmp_path / "x.npz")
        assert not (tmp_path / "x.npz").exists()
    user_error(r, name)
    assert snapshot(d) == before


@pytest.mark.parametrize("verb", ["sample", "reconstruct", "resume"])
def test_checkpoint_of_another_architecture_is_one_line_and_exit_2(tmp_path, run_dir, fc1_run, verb):
    d = copy_run(run_dir, tmp_path / "run")
    shutil.copy(fc1_run / "model.safetensors", d / "model.safetensors")
    shutil.copy(fc1_run / "state.safetensors", d / "state.safetensors")
    if verb == "resume":
        r = cli("train", "--resume", d, "--quiet")
    else:
        r = cli(verb, d, "--out", tmp_path / "x.npz")
    user_error(r, "model.safetensors" if verb != "resume" else ".safetensors")


def _extend(d: Path, steps: int) -> None:
    """Raise train.steps in a finished run's config.toml (so that --resume has work to do)."""
    text = (d / "config.toml").read_text()
    new, count = re.subn(r"(?m)^steps = \d+$", f"steps = {steps}", text)
    assert count == 1
    (d / "config.toml").write_text(new)


def test_optimizer_state_of_another_architecture_is_one_line_and_exit_2(tmp_path, run_dir, fc1_run):
    """The fc1 run's state.safetensors records step 20, like this run's own: only its tensors differ."""
    control = copy_run(run_dir, tmp_path / "control")
    _extend(control, 25)
    r = cli("train", "--resume", control, "--quiet")
    assert r.rc == 0, r.err  # the folder itself resumes fine
    assert [row["step"] for row in rows_of(control / "metrics.jsonl")] == list(range(25))

    d = copy_run(run_dir, tmp_path / "run")
    _extend(d, 25)
    shutil.copy(fc1_run / "state.safetensors", d / "state.safetensors")
    user_error(cli("train", "--resume", d, "--quiet"), "state.safetensors")


@pytest.mark.parametrize("verb", ["sample", "reconstruct", "report", "resume"])
@pytest.mark.parametrize("kind", ["empty", "other-files", "missing", "a-file"])
def test_not_a_run_folder_is_one_line_and_exit_2(tmp_path, verb, kind):
    d = tmp_path / "folder"
    if kind == "empty":
        d.mkdir()
    elif kind == "other-files":
        d.mkdir()
        (d / "notes.txt").write_text("mine")
        (d / "model.safetensors").write_bytes(b"not mine either")
    elif kind == "a-file":
        d.write_text("a file, not a folder")
    before = snapshot(d) if d.is_dir() else None
    if verb == "resume":
        r = cli("train", "--resume", d)
    elif verb == "report":
        r = cli("report", d)
    else:
        r = cli(verb, d, "--out", tmp_path / "x.npz")
    user_error(r, str(d))
    if before is not None:
        assert snapshot(d) == before
    assert not (tmp_path / "x.npz").exists()


def _user_folder(d: Path, *names: str) -> Path:
    d.mkdir()
    for name in names:
        (d / name).write_text(f"the user's own {name}\n")
    (d / "sub").mkdir()
    (d / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return d


@pytest.mark.parametrize("force", [False, True], ids=["no-force", "force"])
def test_out_that_is_a_users_folder_is_refused_and_left_alone(tmp_path, force):
    d = _user_folder(tmp_path / "mine", "notes.txt")
    before = snapshot(d)
    r = cli("train", *TINY, "--out", d, "--quiet", *(["--force"] if force else []))
    user_error(r, str(d))
    assert snapshot(d) == before


@pytest.mark.parametrize("names", [("report.html", "index.html"), ("config.toml", "app.py")], ids=["report.html", "config.toml"])
def test_force_on_a_users_folder_with_a_file_named_like_vaelabs_is_refused(tmp_path, names):
    """Only a vaelab run folder may be cleared by --force: a user's own report.html or
    config.toml (here `[server] port = 8080`) does not make a folder vaelab's."""
    d = _user_folder(tmp_path / "project", *names)
    if "config.toml" in names:
        (d / "config.toml").write_text("[server]\nport = 8080\n")
    before = snapshot(d)
    r = cli("train", *TINY, "--out", d, "--quiet", "--force")
    user_error(r, str(d))
    assert snapshot(d) == before


def test_out_that_is_an_existing_run_needs_resume_or_force(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "run")
    before = snapshot(d)
    line = user_error(cli("train", *TINY, "--out", d, "--quiet"), str(d))
    assert "--resume" in line and "--force" in line
    assert snapshot(d) == before


def test_resume_refuses_set_and_another_out(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "run")
    before = snapshot(d)
    user_error(cli("train", "--resume", d, "--set", "loss.beta=2"), "--set")
    user_error(cli("train", "--resume", d, "--preset", "chain-fc2"), "--preset")
    user_error(cli("train", "--resume", d, "--out", tmp_path / "elsewhere"), "--out")
    assert snapshot(d) == before and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("verb", ["sample", "reconstruct"])
@pytest.mark.parametrize("name", ["x.jpg", "x.npy", "x"])
def test_output_of_an_unsupported_kind_is_refused(tmp_path, run_dir, verb, name):
    user_error(cli(verb, run_dir, "--out", tmp_path / name), ".png", ".npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--set", "loss.beta=2"], ["loss.beta"]),
        (["--set", "sample.denoise=1.5"], ["sample.denoise"]),
        (["--set", "sample.delta=-1"], ["sample.delta"]),
        (["--set", "sample.seed=abc"], ["sample.seed"]),
        (["--set", "sample.nope=1"], ["sample.nope"]),
        (["--n", "0"], ["--n"]),
        (["--n", "ten"], ["--n"]),
        (["--set", "sample.prior=aggregate"], ["sample.prior = aggregate", "no fitted mixture"]),  # trained with the standard prior
        (["--set", "sample.prior_components=3"], ["sample.prior_components", "fitted when it is trained"]),
    ],
)
def test_bad_sample_arguments(tmp_path, run_dir, args, needles):
    user_error(cli("sample", run_dir, *args, "--out", tmp_path / "x.npz"), *needles)
    assert not (tmp_path / "x.npz").exists()


def test_usage_mistakes_are_one_line():
    user_error(cli("bogus"), "bogus")
    user_error(cli("train", "--bogus"), "--bogus")
    user_error(cli("train", *TINY), "--out")
    user_error(cli("sample"), "dir")


def test_diverging_training_names_the_step(tmp_path):
    out = tmp_path / "run"
    line = user_error(cli("train", *TINY, "--set", "train.lr=1e6", "--out", out, "--quiet"), "diverged")
    m = re.search(r"\bstep (\d+)\b", line)
    assert m, line
    step = int(m.group(1))
    rows = rows_of(out / "metrics.jsonl")  # the good steps before it were logged, and only those
    assert [row["step"] for row in rows] == list(range(step))
    assert all(math.isfinite(row["loss"]) for row in rows)


# ---------------------------------------------------------------------------------------------
# The same mistakes in a real process: exit status 2, one stderr line, no traceback.


@pytest.fixture(scope="module")
def real_errors(tmp_path_factory, run_dir):
    work = tmp_path_factory.mktemp("real")
    corrupt = copy_run(run_dir, work / "corrupt")
    _garbage(corrupt / "model.safetensors")
    (work / "truncated.npz").write_bytes(BAD_DATA["truncated.npz"])
    cases = {
        "unknown-preset": ["train", "--preset", "nope", "--out", "o1"],
        "corrupt-checkpoint": ["sample", corrupt, "--out", "x.npz"],
        "truncated-data": ["train", "--set", "data.name=array", "--set", "data.path=truncated.npz", "--out", "o3"],
        "diverges": ["train", *TINY, "--set", "train.lr=1e6", "--out", "o4", "--quiet"],
    }
    procs = {
        k: subprocess.Popen([sys.executable, "-m", "vaelab", *map(str, a)], cwd=work, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k, a in cases.items()
    }
    results = {}
    for k, p in procs.items():
        out, err = p.communicate(timeout=240)
        results[k] = (p.returncode, out, err)
    return results


@pytest.mark.parametrize(
    "case,needles",
    [
        ("unknown-preset", ["nope", "chain-fc2"]),
        ("corrupt-checkpoint", ["model.safetensors"]),
        ("truncated-data", ["truncated.npz"]),
        ("diverges", ["step"]),
    ],
)
def test_real_process_reports_user_errors_as_one_line(real_errors, case, needles):
    rc, out, err = real_errors[case]
    assert_user_error(rc, out, err, *needles)


# ---------------------------------------------------------------------------------------------
# Resume after SIGKILL.

# On the CPU: the resumed run must end bitwise equal to the uninterrupted one, which a GPU does not promise.
RESUME = [
    "--preset", "chain-fc2", "--set", "data.n=2000", "--set", "train.steps=400", "--set", "train.checkpoint_every=50",
    "--set", "sample.n=8", "--set", "train.device=cpu", "--quiet",
]

# Runs `vaelab ARGS`, but the process kills itself (SIGKILL) just before the 4th rename of a
# .safetensors file into place: with two files per checkpoint that is between the two files of the
# second checkpoint (step 100).
DIE_BETWEEN_CHECKPOINT_FILES = r"""
import os, signal, sys
real_replace = os.replace
renamed = []
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(".safetensors"):
        renamed.append(str(dst))
        if len(renamed) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
from vaelab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("resume") / "uninterrupted"
    r = cli("train", *RESUME, "--out", d)
    assert r.rc == 0, r.err
    return d


def assert_same_run(expected: Path, got: Path) -> None:
    """Bitwise-equal weights and optimizer/RNG state; the same metrics row for row (not `time`)."""
    for name in ("model.safetensors", "state.safetensors"):
        a, b = load_file(str(expected / name)), load_file(str(got / name))
        assert a.keys() == b.keys(), name
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{name}: {differ[:5]} differ"
    a, b = rows_of(expected / "metrics.jsonl"), rows_of(got / "metrics.jsonl")
    assert len(a) == len(b) == 400
    assert without_time(a) == without_time(b)


def _complete_checkpoint(d: Path) -> bool:
    model, state = d / "model.safetensors", d / "state.safetensors"
    if not (model.exists() and state.exists()):
        return False
    try:
        return step_of(model) == step_of(state)
    except Exception:  # replaced between the check and the read: look again
        return False


def test_resume_after_sigkill_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path, uninterrupted):
    d = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "vaelab", "train", *RESUME, "--out", str(d)], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    try:
        # Once both files of the first checkpoint (step 50) are in place, kill at once: well
        # before the next checkpoint (step 100), so the kill lands between two checkpoints.
        while not _complete_checkpoint(d) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        p.send_signal(signal.SIGKILL)
    finally:
        _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, f"the run was not killed mid-way (exit {p.returncode}): {err}"
    k = step_of(d / "state.safetensors")
    assert 0 < k < 400 and step_of(d / "model.safetensors") == k
    assert not (d / "report.html").exists() and not (d / "samples.png").exists()
    killed_rows = rows_of(d / "metrics.jsonl")
    assert len(killed_rows) >= k

    r = run_cli("train", "--resume", d, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "400 steps" in r.stdout
    assert_same_run(uninterrupted, d)
    # the rows before the checkpoint were kept as logged, not recomputed
    assert [row["time"] for row in rows_of(d / "metrics.jsonl")[:k]] == [row["time"] for row in killed_rows[:k]]
    assert RUN_FILES <= {p.name for p in d.iterdir()}
    assert_self_contained((d / "report.html").read_text())


def test_resume_after_a_kill_between_the_two_files_of_a_checkpoint(tmp_path, uninterrupted):
    """A kill can land while a checkpoint is being written; the run must still resume (from the
    last complete checkpoint) and end as if never interrupted."""
    d = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, "-c", DIE_BETWEEN_CHECKPOINT_FILES, "train", *RESUME, "--out", str(d)],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=180,
    )
    assert p.returncode == -signal.SIGKILL, f"exit {p.returncode}: {p.stderr}"
    assert not (d / "report.html").exists()
    r = run_cli("train", "--resume", d, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_run(uninterrupted, d)


HELP_WITHOUT_TORCH = """
import contextlib, io, sys
from vaelab.cli import COMMANDS, main
for argv in (["--help"], *([verb, "--help"] for verb in COMMANDS)):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code == 0, (argv, e.code)
    assert "usage: vaelab" in out.getvalue(), argv
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["presets"]) == 0
assert "chain-conv " in out.getvalue() and "unsupervised-study " in out.getvalue()
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["datasets"]) == 0
assert "sprites " in out.getvalue() and "data.p_x=0.3" in out.getvalue()
print(sorted(m for m in ("torch", "numpy", "sklearn", "matplotlib") if m in sys.modules))
"""


def test_help_presets_and_datasets_answer_without_importing_pytorch():
    """`vaelab --help`, every verb's --help, `vaelab presets` and `vaelab datasets` load no PyTorch (nor NumPy,
    scikit-learn, matplotlib): they answer at once, on a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_a_script_importing_only_the_config_builds_every_models_config():
    """The models register their keys when vaelab.config is first imported, whatever a script
    imports first (the package no longer imports them eagerly)."""
    code = "from vaelab.config import load_config; print(load_config('chain-fc1').model.name, load_config('unsupervised-study', overrides={'model.name': 'factorvae'}).model.name)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["fc1", "factorvae"]

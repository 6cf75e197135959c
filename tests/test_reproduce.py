"""Studies reproduce their saved tables: short runs of a chain and of sweeps over every model, on
the CPU, against the chain.csv and sweep.csv files that the code before a refactor wrote
(tests/data/reproduce/). A change to the house must not change a study's figures.

The tables were written on this project's 2-core machines (x86-64, AVX2 kernels); they are
compared bit for bit where the CPU runs the same kernels, else to 1e-5 relative (another vector
width sums in another order). To write them again after an intended change of the figures:

    VAELAB_WRITE_REPRODUCE=1 .venv/bin/python -m pytest tests/test_reproduce.py
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)

from vaelab.config import load_config
from vaelab.experiments.chain import run_chain
from vaelab.experiments.sweep import run_sweep

SAVED = Path(__file__).parent / "data" / "reproduce"
CPU = "train.device=cpu"
CAPABILITY = "AVX2"
"""the CPU kernels (`torch.backends.cpu.get_cpu_capability()`) of the machine that wrote SAVED"""
WRITE = bool(os.environ.get("VAELAB_WRITE_REPRODUCE"))

STUDIES = {
    # a chain of conv VAEs, two seeds trained as one vectorized group, with the variability loss
    "chain": lambda out: run_chain(
        load_config(
            "chain-conv",
            overrides=[CPU, "data.n=96", "train.steps=6", "chain.generations=2", "chain.seeds=2", "chain.holdout=40", "chain.metric_samples=40", "sample.n=4", "loss.variability_weight=0.5"],
        ),
        out,
        quiet=True,
    ),
    # β × variability weight on squares, with a linear KL warm-up; latent recovery and the bounds
    "sweep-points": lambda out: run_sweep(
        load_config(
            "bias-robustness",
            overrides=[CPU, "train.steps=8", "data.n=128", "sweep.test_n=100", "model.hidden=[16,8]", "loss.kl_schedule=linear", "loss.warmup_steps=5", "sweep.seeds=2", "sweep.metrics=[pmi,decoder_mse,neg_elbo]", "sweep.grid=[]"],
        ),
        out,
        grid=["loss.beta=0.5,4", "loss.variability_weight=0,1"],
        quiet=True,
        yes=True,
    ),
    # every other model on fontdigits: the autoencoder, the CNN, the conditional VAE. The preset's
    # loss.beta = 0.5 is refused for the autoencoder, which has no KL term (it ignored it before)
    "sweep-models": lambda out: [
        run_sweep(
            load_config("fontdigits-cnn", overrides=[CPU, "train.steps=4", "data.n=64", "sweep.test_n=40", "sweep.metrics=[neg_elbo,recon_mse]", "train.input_noise=0.1", *beta]),
            out / name,
            grid=[f"model.name={name}"],
            quiet=True,
            yes=True,
        )
        for name, beta in (("ae", ["loss.beta=1"]), ("cnn", []), ("cvae", []))
    ],
    # the preset's loss.beta = 0.5 is refused for the VQ-VAE, which has no KL term (it ignored it before)
    "sweep-vqvae": lambda out: run_sweep(
        load_config("fontdigits-cnn", overrides=[CPU, "model.name=vqvae", "loss.beta=1", "model.prior_steps=3", "train.steps=4", "data.n=64", "sweep.test_n=40", "sweep.metrics=[neg_elbo,recon_mse]"]),
        out,
        grid=["model.codebook_ema=false,true"],
        quiet=True,
        yes=True,
    ),
    "sweep-introvae": lambda out: run_sweep(
        load_config("fontdigits-cnn", overrides=[CPU, "model.name=introvae", "model.adversarial_warmup=2", "train.steps=4", "data.n=64", "sweep.test_n=40", "sweep.metrics=[neg_elbo,recon_mse]"]),
        out,
        grid=["loss.beta=0.5,1"],
        quiet=True,
        yes=True,
    ),
}
TIME_COLUMNS = {"train_seconds", "seconds"}
"""columns that time the run: never the same twice"""


def table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def close(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_a_short_study_reproduces_its_saved_table(study, tmp_path):
    out = tmp_path / study
    STUDIES[study](out)
    name = "chain.csv" if study == "chain" else "sweep.csv"
    tables = [out / name] if (out / name).exists() else sorted(out.glob(f"*/{name}"))  # one, or one per part of a study run in parts
    saved = SAVED / f"{study}.csv"
    if WRITE:
        assert len(tables) == 1, "a table is saved from a study run in one part"
        SAVED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tables[0], saved)
    got, want = [row for t in tables for row in table(t)], table(saved)
    assert [list(r) for r in got] == [list(r) for r in want]  # the same columns in the same order, row by row
    if torch.backends.cpu.get_cpu_capability() == CAPABILITY:
        assert got == want
    else:
        assert all(close(row[k], ref[k]) for row, ref in zip(got, want) for k in ref), (got, want)

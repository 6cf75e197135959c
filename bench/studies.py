"""Whole studies at their presets' settings, timed: the GPU targets of issue 16.

What it measures
    `--part chain` (the default): `vaelab chain --preset chain-conv` as the study ran it (20
    generations of the conv VAE, 20,000 `points` images, batch 32, 5 epochs, every per-generation
    metric, run folders and report included), once with chain.seeds = 1 and once with
    chain.seeds = 5 (the five repeats train each generation as one vectorized group), one after
    the other in this process, each into a fresh temporary folder. It prints both wall times; the
    line before the last is `row: vaelab=...; reference=...` (five seeds; one seed), the last is
    `ratio: X.XX` = 2 × (one seed's time) ÷ (five seeds' time): at least 1 when five seeds take
    under twice one seed's time. Targets on an H200: one seed under 60 s; ratio >= 1.

    `--part sweep`: `vaelab sweep --preset bias-robustness` in full (77 cells of 10,000 steps
    each, trained in as few vectorized groups as the device's memory holds, then measured with the
    study's own metrics, pmi and decoder_mse), timed once. The preset also measures mcc and
    factor_r2, whose small perceptron is fitted by scikit-learn on the CPU (about 2 s a model,
    5 minutes for the 154 models and baselines whatever the device); the target was set for the
    training and the study's metrics, so this part leaves them out. The last line is
    `ratio: X.XX` = 120 s ÷ its wall time: at least 1 when it finishes in under two minutes (the
    target on an H200).

    Both run on `--device` (cpu, the default, cuda, cuda:N or auto): at full size they are GPU
    benchmarks (on a 2-core CPU a part takes hours); `--quick` shrinks every size to a smoke run.

How to run (from the repository root)
    .venv/bin/python bench/studies.py --device cuda                 # the chain part
    .venv/bin/python bench/studies.py --part sweep --device cuda    # the bias-robustness sweep
    .venv/bin/python bench/studies.py --quick                       # smoke checks on the CPU
    .venv/bin/python bench/studies.py --quick --part sweep
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vaelab.config import load_config
from vaelab.device import describe
from vaelab.experiments.chain import run_chain
from vaelab.experiments.sweep import run_sweep

from _device import add_device, resolved, synchronize

QUICK = {
    "chain": {"data.n": 64, "train.epochs": 1, "chain.generations": 1, "chain.holdout": 16, "chain.metric_samples": 16, "model.name": "fc1", "model.hidden": [16]},
    "sweep": {"data.n": 64, "train.steps": 4, "sweep.test_n": 64},
}
"""each part's overrides with --quick"""
STUDY_METRICS = {"sweep.metrics": ["pmi", "decoder_mse"]}
"""the sweep part's metrics: the study's own"""
QUICK_GRID = ["loss.beta=0.5,1", "data.mu=0,2"]
"""the swept grid with --quick (the preset's is 7 × 11)"""


def timed(fn, device) -> float:
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def chain_part(overrides: dict, device, work: Path) -> None:
    cfg = load_config("chain-conv", overrides=overrides)
    print(f"chain-conv: {cfg.chain.generations} generations, {cfg.data.n} images, batch {cfg.train.batch_size}, {cfg.train.epochs} epochs")
    one = timed(lambda: run_chain(cfg, work / "seeds-1", quiet=True), device)
    print(f"chain.seeds=1: {one:.1f} s (target < 60 s on an H200)", flush=True)
    five = timed(lambda: run_chain(cfg.override({"chain.seeds": 5}), work / "seeds-5", quiet=True), device)
    print(f"chain.seeds=5: {five:.1f} s ({five / one:.2f}x one seed; target < 2x)")
    print(f"row: vaelab={five:.1f} s (chain.seeds=5); reference={one:.1f} s (chain.seeds=1)")
    print(f"ratio: {2 * one / five:.2f}")


def sweep_part(overrides: dict, grid: list[str], device, work: Path) -> None:
    cfg = load_config("bias-robustness", overrides={**STUDY_METRICS, **overrides})
    print(f"bias-robustness: grid {list(grid or cfg.sweep.grid)}, {cfg.train.steps} steps per cell, {cfg.data.n} images")
    seconds = timed(lambda: run_sweep(cfg, work / "sweep", grid=grid, quiet=True, yes=True), device)
    print(f"row: vaelab={seconds:.1f} s (the whole sweep); reference=120 s (the target)")
    print(f"ratio: {120 / seconds:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description="whole studies at their presets' settings, timed (the GPU targets)")
    ap.add_argument("--part", choices=("chain", "sweep"), default="chain", help="chain: chain-conv with 1 and 5 seeds (default); sweep: bias-robustness in full")
    add_device(ap, "the studies")
    ap.add_argument("--quick", action="store_true", help="smoke check: tiny data, a small dense model, few steps, 1 generation / a 2 x 2 grid")
    args = ap.parse_args()
    device = resolved(ap, args.device)
    if device.type == "cuda":
        print(f"machine: {describe(device)}")  # for bench/all.py's table
    overrides = {**(QUICK[args.part] if args.quick else {}), "train.device": args.device}
    with tempfile.TemporaryDirectory(prefix="vaelab-studies-") as work:
        if args.part == "chain":
            chain_part(overrides, device, Path(work))
        else:
            sweep_part(overrides, QUICK_GRID if args.quick else [], device, Path(work))


if __name__ == "__main__":
    main()

"""Whole-process time: a small `vaelab train` run against a hand-written script doing the same work.

What it measures
    Two fresh processes each round, timed from start to exit (interpreter start-up, imports,
    set-up, training, writing the results):

    * vaelab: `vaelab train --set data.name=array --set data.path=IMAGES.npy --set model.name=fc1
      ... --out RUN --quiet` -- the command a user types, from the same virtual environment as
      this script;
    * hand-written: `python bench/_hand_train.py --data IMAGES.npy --out DIR ...`, a standalone
      script that imports torch, numpy and safetensors but not vaelab.

    The work: the fc1 VAE (576-115-8, vaelab's default fc1 widths) on 5,000 `points` images
    (24x24), batch 32, 3 epochs (471 steps), Adam lr 1e-3, seed 0. This script draws the images
    once (`vaelab.data.load_data`) and writes them to a temporary .npy that both processes read,
    so neither pays for generating data. Both use vaelab's shuffles, seeds and loss, and both
    write the trained weights as safetensors (the hand-written script with vaelab's key names):
    the first round prints the largest difference between the two weight files (vaelab uses
    Adam's fused kernel, the script plain Adam, so they agree to rounding only).

    What `vaelab train` does beyond that, all included in its time: parsing and validating the
    config (config.toml written), checking the images (finite, float32), logging every step to
    metrics.jsonl, writing state.safetensors (weights, Adam's state and the RNG: a resumable
    checkpoint) besides model.safetensors, and finishing the run folder: samples.png (64 draws),
    reconstructions.png, loss.png (matplotlib) and report.html.

    After a warm-up round of each (file caches), the two alternate (vaelab, then hand-written) for
    `--rounds` rounds with the same environment (`--threads N` sets OMP_NUM_THREADS=N for both).
    Each round prints both processes' seconds and their seconds inside the training loop (each
    prints it: vaelab's "trained N steps in X s", read to the millisecond from the `time` of the
    last step in its metrics.jsonl; the script's own). The line before the last is
    `row: vaelab=...; reference=...` (for bench/all.py's table), the last is `ratio: X.XX` =
    median hand-written seconds / median vaelab seconds. Target (issue 7): vaelab's process at
    most 1.2x the hand-written one, i.e. ratio >= 1/1.2 = 0.83.

    The timings are wall-clock; on a busy machine use more rounds (the load average is printed).

How to run (from the repository root)
    .venv/bin/python bench/process_time.py              # 5 rounds
    .venv/bin/python bench/process_time.py --threads 1 --rounds 9
    .venv/bin/python bench/process_time.py --quick      # smoke check: 1 round (no warm-up), 1 epoch
                                                        # on 500 images
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from vaelab.config import load_config
from vaelab.data import load_data

ROOT = Path(__file__).resolve().parent.parent
HAND = ROOT / "bench" / "_hand_train.py"
N, BATCH, LATENT, LR, SEED, EPOCHS = 5000, 32, 8, 1e-3, 0, 3
QUICK_N, QUICK_EPOCHS = 500, 1
LOOP = re.compile(r"trained (\d+) steps in ([0-9.]+) s")


def vaelab_command(data_file: Path, out: Path, epochs: int) -> list[str]:
    exe = Path(sys.executable).parent / "vaelab"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "vaelab"]
    sets = {
        "data.name": "array",
        "data.path": str(data_file),
        "model.name": "fc1",
        "model.latent_dim": LATENT,
        "train.batch_size": BATCH,
        "train.epochs": epochs,
        "train.lr": LR,
        "train.seed": SEED,
        "train.device": "cpu",
    }
    return [*base, "train", *(a for k, v in sets.items() for a in ("--set", f"{k}={v}")), "--out", str(out), "--quiet"]


def hand_command(data_file: Path, out: Path, epochs: int, hidden: int) -> list[str]:
    return [sys.executable, str(HAND), "--data", str(data_file), "--out", str(out), "--epochs", str(epochs),
            "--batch", str(BATCH), "--lr", str(LR), "--hidden", str(hidden), "--latent", str(LATENT), "--seed", str(SEED)]  # fmt: skip


def timed(cmd: list[str], env: dict) -> tuple[float, int, float]:
    """(process seconds, steps, loop seconds) of one command; exits on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t0
    m = LOOP.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd[:2])} failed (exit {proc.returncode})")
    return seconds, int(m.group(1)), float(m.group(2))


def loop_seconds(metrics: Path, printed: float) -> float:
    """vaelab's loop seconds to the millisecond: the `time` of the last step in metrics.jsonl
    (seconds since the loop began), else the printed one-decimal figure."""
    try:
        return float(json.loads(metrics.read_text().strip().splitlines()[-1])["time"])
    except (OSError, ValueError, IndexError, KeyError):
        return printed


def main() -> None:
    ap = argparse.ArgumentParser(description="whole-process time of `vaelab train` vs a hand-written script doing the same work")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up round (default 5)")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs (default {EPOCHS})")
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for both processes (default: torch's default)")
    ap.add_argument("--quick", action="store_true", help=f"smoke check: 1 round (no warm-up) of {QUICK_EPOCHS} epoch on {QUICK_N} images")
    args = ap.parse_args()
    rounds, epochs, n = (1, QUICK_EPOCHS, QUICK_N) if args.quick else (args.rounds, args.epochs, N)
    warmups = 0 if args.quick else 1
    if rounds < 1 or epochs < 1 or args.threads < 0:
        ap.error("--rounds and --epochs must be >= 1, --threads >= 0")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)

    cfg = load_config(overrides={"data.name": "points", "data.n": n, "model.name": "fc1"})
    hidden = cfg.model.params.hidden[0]  # fc1's width, which the vaelab side takes from the model
    images = load_data(cfg.data).images  # (N, 1, 24, 24) float32
    steps = epochs * -(-n // BATCH)
    print(f"fc1 576-{hidden}-{LATENT} VAE, {n} points images {tuple(images.shape[1:])} from an .npy file, batch {BATCH}, "
          f"{epochs} epoch(s) = {steps} steps, weights written as safetensors")
    print(f"{os.cpu_count()} core(s), OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')} for both; "
          f"{rounds} timed round(s) after {warmups} warm-up round(s), vaelab first in each")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("seconds: 'process' = start to exit, 'loop' = inside the training loop")
    print(f"{'round':>7}  {'vaelab process':>14}  {'loop':>6}  {'hand process':>12}  {'loop':>6}  {'ratio':>5}  {'load':>5}")

    work = Path(tempfile.mkdtemp(prefix="vaelab-bench-process-"))
    results: dict[str, list[tuple[float, float]]] = {"vaelab": [], "hand": []}
    try:
        data_file = work / "images.npy"
        np.save(data_file, images.numpy())
        for r in range(rounds + warmups):
            v_out, h_out = work / f"vaelab-{r}", work / f"hand-{r}"
            vs, v_steps, vl = timed(vaelab_command(data_file, v_out, epochs), env)
            vl = loop_seconds(v_out / "metrics.jsonl", vl)
            hs, h_steps, hl = timed(hand_command(data_file, h_out, epochs, hidden), env)
            load = os.getloadavg()[0]
            if v_steps != steps or h_steps != steps:
                raise SystemExit(f"step counts differ: vaelab {v_steps}, hand-written {h_steps}, expected {steps}")
            if r == 0:
                a, b = load_file(str(v_out / "model.safetensors")), load_file(str(h_out / "model.safetensors"))
                if sorted(a) != sorted(b) or any(a[k].shape != b[k].shape for k in a):
                    raise SystemExit(f"the weight files differ in names or shapes: {sorted(a)} vs {sorted(b)}")
                diff = max((a[k] - b[k]).abs().max().item() for k in a)
                written = sorted(p.name for p in v_out.iterdir())
                n_weights = sum(t.numel() for t in a.values())
            shutil.rmtree(v_out, ignore_errors=True)
            shutil.rmtree(h_out, ignore_errors=True)
            label = "warm-up" if r < warmups else str(r + 1 - warmups)
            print(f"{label:>7}  {vs:14.2f}  {vl:6.2f}  {hs:12.2f}  {hl:6.2f}  {hs / vs:5.2f}  {load:5.2f}", flush=True)
            if r >= warmups:
                results["vaelab"].append((vs, vl))
                results["hand"].append((hs, hl))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    (vs, vl), (hs, hl) = ({k: tuple(statistics.median(x[j] for x in v) for j in range(2)) for k, v in results.items()}[k] for k in ("vaelab", "hand"))
    paired = statistics.median(h[0] / v[0] for v, h in zip(results["vaelab"], results["hand"]))
    print(f"{'median':>7}  {vs:14.2f}  {vl:6.2f}  {hs:12.2f}  {hl:6.2f}")
    print(f"load average after (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"same work: {n_weights:,} weights; largest |vaelab - hand-written| over model.safetensors (first round) = {diff:.3g}")
    print(f"vaelab's run folder: {', '.join(written)}")
    print(f"outside the training loop (median s): vaelab {vs - vl:.2f}, hand-written {hs - hl:.2f}; median of per-round ratios {paired:.2f}")
    print("ratio = median hand-written seconds / median vaelab seconds (target >= 0.83: vaelab within 1.2x):")
    print(f"row: vaelab={vs:.2f} s per process (vaelab train); reference={hs:.2f} s per process (hand-written script)")
    print(f"ratio: {hs / vs:.2f}")


if __name__ == "__main__":
    main()

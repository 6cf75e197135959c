"""Sweep throughput: 16 MLP VAEs differing in β, trained vectorized and one after another (CPU or GPU).

What it measures
    Sixteen copies of the chain study's fc1 VAE (576-115-8) on 5,000 `points` images, batch 32,
    one epoch (157 steps) each, with β = 0.1 … 8 (16 values, log-spaced). Two ways, alternating in
    one process after a warm-up round of each, both on the same device (`--device`: cpu, the
    default, cuda, cuda:N or auto = cuda:0 where there is one, else cpu; `train.device` of every
    config):

    * vectorized: `vaelab.vectorized.train_group` — the 16 models as one stacked model (vmap);
    * sequential: `vaelab.train.train` for each of the 16 configs in turn (what `vaelab sweep
      --vectorize off` does).

    Both build each member from the same seed and data; the final mean loss of each member is
    printed for the two paths (they agree in distribution, not bitwise: see vaelab.vectorized).
    Each round prints samples/s (images processed by all 16 models ÷ seconds of the whole call;
    on a GPU each path's time is taken after `torch.cuda.synchronize`, so queued kernels count).
    The line before the last is `row: vaelab=...; reference=...` (the two medians, for
    bench/all.py's table; on a GPU a `machine:` line names it), the last is `ratio: X.XX`, median
    vectorized samples/s ÷ median sequential samples/s.
    Target: >= 1.5 on 2 CPU cores; >= 10 on a GPU (`--device cuda`).

How to run (from the repository root)
    .venv/bin/python bench/sweep.py                 # 5 rounds
    .venv/bin/python bench/sweep.py --threads 1     # one CPU thread for both paths
    .venv/bin/python bench/sweep.py --device cuda   # on a GPU machine (also cuda:N, auto)
    .venv/bin/python bench/sweep.py --quick         # smoke check: 1 round of 4 VAEs, 10 steps
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.device import describe
from vaelab.train import train
from vaelab.vectorized import train_group

from _device import add_device, resolved, synchronize

MEMBERS, N, BATCH = 16, 5000, 32


def configs(steps: int, device: str, members: int = MEMBERS):
    base = load_config(
        overrides={
            "data.name": "points",
            "data.n": N,
            "model.name": "fc1",
            "train.batch_size": BATCH,
            "train.steps": steps,
            "train.device": device,
        }
    )
    betas = np.geomspace(0.1, 8, members)
    return [base.override({"loss.beta": float(b), "train.seed": i}) for i, b in enumerate(betas)]


def main() -> None:
    ap = argparse.ArgumentParser(description="vectorized vs sequential training of 16 VAEs: samples/s and their ratio")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    ap.add_argument("--steps", type=int, default=157, help="training steps per model (default 157: one epoch)")
    add_device(ap, "both paths")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's default)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 1 round of 4 VAEs, 10 steps")
    args = ap.parse_args()
    device = resolved(ap, args.device)  # once: what vaelab resolves train.device to, for the syncs and the header
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, steps, members = (1, 10, 4) if args.quick else (args.rounds, args.steps, MEMBERS)
    cfgs = configs(steps, args.device, members)
    data = load_data(cfgs[0].data)
    datas = [data] * members
    samples = members * steps * BATCH
    print(f"{members} fc1 VAEs (576-115-8), β from 0.1 to 8, {N} points images, batch {BATCH}, {steps} steps each")
    where = describe(device) if cuda else f"CPU, {torch.get_num_threads()} thread(s) on {os.cpu_count()} core(s)"
    if cuda:
        print(f"machine: {describe(device)}")  # for bench/all.py's table
    print(f"torch {torch.__version__}, {where}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'round':>7}  {'vectorized':>10}  {'sequential':>10}  {'ratio':>5}   samples/s")
    vec, seq = [], []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        group = train_group(cfgs, datas, [None] * members, quiet=True)
        synchronize(device)  # the queued kernels are part of the time
        tv = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = [train(c, data, quiet=True) for c in cfgs]
        synchronize(device)
        ts = time.perf_counter() - t0
        print(f"{'warm-up' if r == 0 else r:>7}  {samples / tv:10.0f}  {samples / ts:10.0f}  {ts / tv:5.2f}")
        if r == 0:
            last = lambda run: statistics.mean(h["loss"] for h in run.history[-20:])  # noqa: E731
            pairs = ", ".join(f"{c.loss.beta:.2g}: {last(g):.1f}/{last(a):.1f}" for c, g, a in zip(cfgs, group, alone))
            print(f"final loss per β (vectorized/sequential): {pairs}")
        else:
            vec.append(samples / tv)
            seq.append(samples / ts)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"median samples/s: vectorized {statistics.median(vec):.0f}, sequential {statistics.median(seq):.0f}")
    print(f"row: vaelab={statistics.median(vec):,.0f} samples/s (vectorized); reference={statistics.median(seq):,.0f} samples/s (sequential)")
    print(f"ratio: {statistics.median(vec) / statistics.median(seq):.2f}")


if __name__ == "__main__":
    main()

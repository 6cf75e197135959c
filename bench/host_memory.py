"""CPU training with freed activations kept for reuse (`vaelab.host_memory`) vs glibc's default.

What it measures
    The `unsupervised-study` family's network as the CPU run in docs/disentanglement.md trains it
    (the conv model with one 5x5 convolution of 8 channels, pooling, dense 64, 10 latents,
    Bernoulli, batch 64, Adam 1e-4) for --steps steps on 2,000 sprites, twice in this process:

    * reference: glibc's default allocator settings, what a Python process starts with;
    * vaelab: after `keep_freed_host_memory()`, which the `vaelab` command calls first.

    glibc cannot be put back to its default (a threshold that adapts to the blocks freed) once
    mallopt has set one, so the two cannot alternate: the reference runs first, each side after a
    20-step warm-up of its own. Each line gives the seconds, the steps/s and the kernel (system)
    CPU seconds the process spent: the kernel zeroing the pages a freed block took back is what the
    setting saves. The line before the last is `row: vaelab=...; reference=...`, the last
    `ratio: X.XX` = reference seconds / vaelab seconds (> 1: keeping the blocks is faster).

How to run (from the repository root)
    .venv/bin/python bench/host_memory.py               # 200 steps each
    .venv/bin/python bench/host_memory.py --quick       # smoke check: 5 steps on 200 sprites
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.host_memory import keep_freed_host_memory
from vaelab.train import train

WARMUP = 20


def timed(cfg, data, steps: int) -> tuple[float, float]:
    """(wall seconds, kernel CPU seconds) of `steps` training steps, after a warm-up run."""
    train(cfg.override({"train.steps": min(WARMUP, steps)}), data, quiet=True)
    sys_before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    t0 = time.perf_counter()
    train(cfg.override({"train.steps": steps}), data, quiet=True)
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_before


def main() -> None:
    ap = argparse.ArgumentParser(description="CPU training: freed blocks kept for reuse vs glibc's default")
    ap.add_argument("--steps", type=int, default=200, help="timed training steps per side (default 200)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 5 steps on 200 sprites")
    args = ap.parse_args()
    steps, n = (5, 200) if args.quick else (args.steps, 2000)
    cfg = load_config("unsupervised-study", overrides={"model.channels": [8], "data.n": n, "train.device": "cpu", "loss.beta": 4.0})
    data = load_data(cfg.data)
    print(f"network: conv, one 5x5 convolution of 8 channels, 10 latents, batch 64; {steps} steps on {n} sprites")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {os.cpu_count()} core(s)")
    ref_s, ref_sys = timed(cfg, data, steps)
    print(f"reference (glibc's default): {ref_s:.1f} s, {steps / ref_s:.1f} steps/s, {ref_sys:.1f} s in the kernel", flush=True)
    kept = keep_freed_host_memory()
    ours_s, ours_sys = timed(cfg, data, steps)
    print(f"vaelab (freed blocks kept: {kept}): {ours_s:.1f} s, {steps / ours_s:.1f} steps/s, {ours_sys:.1f} s in the kernel")
    print(f"row: vaelab={steps / ours_s:.1f} steps/s; reference={steps / ref_s:.1f} steps/s")
    print(f"ratio: {ref_s / ours_s:.2f}")


if __name__ == "__main__":
    main()

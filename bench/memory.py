"""Data larger than memory: one epoch over 1,000,000 28x28 images streamed from disk.

What it measures
    A .npy file of 1,000,000 uint8 28x28 images (784 MB on disk, 3.1 GB as float32) is written
    into a temporary folder: 10,000 seeded `fontdigits` images, each copy shifted by a random
    0–3 pixels so no two blocks are equal. A child process then trains vaelab's fc1 VAE
    (784-256-16, batch 256) for one epoch with `data.name = "array"`, `data.stream = "on"` (the
    images are read through NumPy memmaps, chunk by chunk: `vaelab.data.stream`) and prints its peak
    resident memory (`ru_maxrss`, which counts the torch runtime, the model and the mapped pages)
    and its samples/s. Target: peak RSS under 2 GiB.

    For scale, a second child trains the same model on the file's first 100,000 images held in
    memory (`data.stream = "off"`), one epoch. The last line is `ratio: X.XX` = streamed samples/s ÷
    in-memory samples/s: what streaming costs per image.

    Each child is a fresh process, so its peak RSS is its own. The parent prints the load average:
    on a busy machine both throughputs drop, and the ratio is the steadier figure.

How to run (from the repository root)
    .venv/bin/python bench/memory.py                 # 1,000,000 images
    .venv/bin/python bench/memory.py --n 200000      # a smaller file
    .venv/bin/python bench/memory.py --quick         # smoke check: 20,000 images (copies of 2,000)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import torch
from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.train import train

path, stream, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
cfg = load_config(overrides={
    "data.name": "array", "data.path": path, "data.stream": stream, "data.n": n,
    "model.name": "fc1", "model.hidden": [256], "model.latent_dim": 16,
    "train.epochs": 1, "train.batch_size": 256, "train.device": "cpu", "train.seed": 0,
})
t0 = time.perf_counter()
data = load_data(cfg.data)
run = train(cfg, data, out=None, quiet=True)
whole = time.perf_counter() - t0
print(json.dumps({
    "kind": type(data.images).__name__, "images": len(data), "loop_seconds": run.seconds, "whole_seconds": whole,
    "samples_per_s": len(data) / run.seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "final_loss": run.history[-1]["loss"], "threads": torch.get_num_threads(),
}))
"""


def write_file(path: Path, n: int, distinct: int = 10_000) -> None:
    """n uint8 28x28 images: `distinct` fontdigits shifted by a random 0–3 pixels per copy, written block by block."""
    from vaelab.config import load_config
    from vaelab.data import load_data

    base = load_data(load_config(overrides={"data.name": "fontdigits", "data.n": distinct}).data)
    base = (base.images[:, 0].numpy() * 255).round().astype(np.uint8)  # (distinct, 28, 28)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    rng = np.random.default_rng(0)
    for start in range(0, n, len(base)):
        stop = min(n, start + len(base))
        dy, dx = rng.integers(0, 4, size=2)
        out[start:stop] = np.roll(base, (int(dy), int(dx)), axis=(1, 2))[: stop - start]
    out.flush()
    del out


def child(path: Path, stream: str, n: int, threads: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), stream, str(n), str(threads)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"the {stream} child failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description="one epoch over images streamed from disk: peak RSS and samples/s")
    ap.add_argument("--n", type=int, default=1_000_000, help="images in the file (default 1,000,000)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's default)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 20,000 images, copies of 2,000 distinct ones")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.n
    in_memory = min(n, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        t0 = time.perf_counter()
        write_file(path, n, 2_000 if args.quick else 10_000)  # the smoke check renders fewer fonts' digits
        print(f"wrote {n:,} images of 28x28 uint8 ({path.stat().st_size / 2**20:,.0f} MiB; {n * 784 * 4 / 2**30:.2f} GiB as float32) in {time.perf_counter() - t0:.1f} s")
        print(f"load average before (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} core(s)")
        streamed = child(path, "on", 0, args.threads)
        memory = child(path, "off", in_memory, args.threads)
    print(f"streamed : {streamed['images']:,} images, {streamed['samples_per_s']:,.0f} samples/s (loop {streamed['loop_seconds']:.1f} s, whole {streamed['whole_seconds']:.1f} s), "
          f"peak RSS {streamed['peak_rss_gib']:.2f} GiB, {streamed['threads']} thread(s)")
    print(f"in memory: {memory['images']:,} images, {memory['samples_per_s']:,.0f} samples/s (loop {memory['loop_seconds']:.1f} s), peak RSS {memory['peak_rss_gib']:.2f} GiB")
    print(f"load average after (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    verdict = "meets" if streamed["peak_rss_gib"] < 2 else "misses"
    print(f"peak_rss_gib: {streamed['peak_rss_gib']:.2f} ({verdict} the 2 GiB target); samples_per_s: {streamed['samples_per_s']:.0f}")
    print(f"row: vaelab={streamed['samples_per_s']:,.0f} samples/s streaming {streamed['images']:,} images, peak RSS {streamed['peak_rss_gib']:.2f} GiB; "
          f"reference={memory['samples_per_s']:,.0f} samples/s in memory ({memory['images']:,} images)")
    print(f"ratio: {streamed['samples_per_s'] / memory['samples_per_s']:.2f}")


if __name__ == "__main__":
    main()

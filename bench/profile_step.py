"""What one training step costs the host: kernel launches, copies, syncs and PyTorch ops per step,
with the step captured as a CUDA graph and without (`train.cuda_graph` on and off).

What it measures
    vaelab's `cnn` VAE (`--model cnn`, the default: 28x28 fontdigits, batch 128) or the fc1 MLP
    (`--model mlp`: 24x24 points, batch 128) trained by `vaelab.train.train` under
    `torch.profiler`, twice per setting: for S and for 2·S steps. The difference of the two
    profiles' event counts, divided by S, is what one step costs once the fixed costs (building
    the model, the warm-up and capture, the final read of the log) cancel out. Per step it prints
    the CUDA runtime calls that launch work (cudaLaunchKernel and the like, cudaGraphLaunch), the
    copies (cudaMemcpyAsync), the host waits (cudaStreamSynchronize, cudaDeviceSynchronize,
    cudaEventSynchronize) and the PyTorch ops (aten::*), and the step's wall time.

    On a GPU the two settings are `train.cuda_graph=off` and `on`; the last line is `ratio: X.XX`,
    launches per step without the graph ÷ with it. On the CPU only `off` exists: it prints the ops
    per step and `ratio: n/a`. This is the "profile of one step" issue 16 asks for where a target
    is missed: what the host still does per step.

How to run (from the repository root)
    .venv/bin/python bench/profile_step.py --device cuda
    .venv/bin/python bench/profile_step.py --model mlp --device cuda
    .venv/bin/python bench/profile_step.py --quick        # smoke check (CPU: ops per step only)
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

from vaelab.config import load_config
from vaelab.device import describe
from vaelab.train import train

from _device import add_device, resolved, synchronize

ARCHS = {
    "cnn": {"data.name": "fontdigits", "model.name": "cnn"},
    "mlp": {"data.name": "points", "model.name": "fc1", "model.hidden": [256], "model.latent_dim": 8},
}
KINDS = {
    "launches": ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch"),
    "graph launches": ("cudaGraphLaunch",),
    "copies": ("cudaMemcpyAsync", "cudaMemcpy", "cudaMemsetAsync"),
    "syncs": ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"),
}
"""what each column counts: the profiler's runtime-call names"""


def counts(cfg, device) -> tuple[Counter, float]:
    """(profiler event counts, wall seconds) of one training run of `cfg`."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        train(cfg, quiet=True)
        synchronize(device)
        seconds = time.perf_counter() - start
    return Counter({e.key: e.count for e in prof.key_averages()}), seconds


def per_step(cfg, steps: int, device) -> dict[str, float]:
    """Per-step costs: the difference between runs of 2·steps and of steps, over steps."""
    (a, ta), (b, tb) = counts(cfg.override({"train.steps": steps}), device), counts(cfg.override({"train.steps": 2 * steps}), device)
    diff = {k: b[k] - a[k] for k in b}
    out = {kind: sum(diff.get(name, 0) for name in names) / steps for kind, names in KINDS.items()}
    out["aten ops"] = sum(v for k, v in diff.items() if k.startswith("aten::")) / steps
    out["ms"] = 1000 * (tb - ta) / steps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="kernel launches, copies, syncs and ops per training step, with and without a CUDA graph")
    ap.add_argument("--model", choices=tuple(ARCHS), default="cnn", help="cnn (default) or mlp")
    ap.add_argument("--steps", type=int, default=100, help="S: the runs are S and 2·S steps long (default 100)")
    add_device(ap, "the runs")
    ap.add_argument("--quick", action="store_true", help="smoke check: the mlp, 3 steps, 256 images")
    args = ap.parse_args()
    device = resolved(ap, args.device)
    steps, n = (3, 256) if args.quick else (args.steps, 20_000)
    model = "mlp" if args.quick else args.model  # the smoke check's work is the profiling, not the model
    cfg = load_config(overrides={**ARCHS[model], "data.n": n, "train.batch_size": 128, "train.device": args.device, "train.checkpoint_every": 10**9})
    if device.type == "cuda":
        print(f"machine: {describe(device)}")
    print(f"{model} VAE, batch 128, per step over {steps} steps (runs of {steps} and {2 * steps}), on {describe(device)}")
    settings = ("off", "on") if device.type == "cuda" else ("off",)
    rows = {}
    for graph in settings:
        rows[graph] = per_step(cfg.override({"train.cuda_graph": graph}), steps, device)
        print(f"train.cuda_graph={graph}: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[graph].items()), flush=True)
    if "on" in rows:
        off, on = rows["off"], rows["on"]
        print(f"row: vaelab={on['launches']:.1f} launches, {on['ms']:.2f} ms per step (graph); reference={off['launches']:.1f} launches, {off['ms']:.2f} ms per step (no graph)")
        print(f"ratio: {off['launches'] / max(on['launches'], 1e-9):.2f}")
    else:
        off = rows["off"]
        print(f"row: vaelab={off['aten ops']:.0f} aten ops, {off['ms']:.2f} ms per step; reference=n/a (no CUDA graph on the CPU)")
        print("ratio: n/a")


if __name__ == "__main__":
    main()

"""`--device` for the benchmarks that measure both sides on a device of choice (train_throughput,
sweep, chain): the forms `train.device` takes, resolved once as vaelab resolves it, and the wait a
GPU timing needs before its end time."""

from __future__ import annotations

import argparse

import torch

from vaelab.config import is_device_name
from vaelab.device import resolve_device
from vaelab.errors import UserError


def device_name(name: str) -> str:
    """argparse type of --device: cpu, cuda, cuda:N or auto (whether this machine has it comes later)."""
    if not is_device_name(name):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or auto, got {name!r}")
    return name


def add_device(ap: argparse.ArgumentParser, what: str) -> None:
    ap.add_argument("--device", type=device_name, default="cpu", help=f"where {what} train: cpu (default), cuda, cuda:N or auto")


def resolved(ap: argparse.ArgumentParser, name: str) -> torch.device:
    """--device as a torch.device; a device this machine lacks is a usage error (exit 2)."""
    try:
        return resolve_device(name)
    except UserError as e:
        ap.error(f"--device {name}: {e}")


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on a CUDA device (a no-op on the CPU): before an end time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PEAK_TFLOPS = {
    "H200": {"fp32": 67.0, "bf16": 989.0},
    "H100": {"fp32": 67.0, "bf16": 989.0},
    "A100": {"fp32": 19.5, "bf16": 312.0},
}
"""dense peak TFLOP/s by GPU (NVIDIA's data sheets, SXM parts): fp32 on the CUDA cores (PyTorch's
default fp32 matmul does not use TF32), bf16 on the tensor cores without sparsity"""


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's peak FLOP/s for `precision`, where PEAK_TFLOPS knows the GPU; None otherwise (the CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peaks[precision] * 1e12 for key, peaks in PEAK_TFLOPS.items() if key in name), None)

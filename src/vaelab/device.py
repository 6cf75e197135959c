"""Where a run computes: `train.device` resolved once per run, its precision checked, and the name
a run folder records for the device that trained it.

    device = resolve_device("auto")          # cuda:0 on a machine with a GPU, else cpu
    check_precision("bf16", device)          # a UserError where the device has no bfloat16
    training_device(config.train)            # both: what a run trains on
    describe(device)                         # "cuda:0 (NVIDIA H200)" or "cpu"
    check_fits(nbytes, device, "the model")  # a UserError when nbytes exceed the device's memory
    free_memory(device)                      # bytes it can hand out now (how vectorized groups are sized)
    with inference_layout(model) as batch:   # reading many images: the device's fastest layout and batch

Training resolves `train.device` strictly (asking for a GPU that is not there is an error). The
verbs that only read a trained run (sample, reconstruct, evaluate, latent, a chain's next
generation) use `reading_device`: the run's device where this machine has it, else the CPU, so a
run trained on a GPU is read on a laptop.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from vaelab.errors import UserError


def resolve_device(name: str) -> torch.device:
    """`train.device` (auto, cpu, cuda, cuda:N) → a torch.device that exists here.

    auto is cuda:0 when CUDA is available, else cpu; cuda is the current CUDA device. A CUDA
    device this machine does not have is a UserError naming what it has.
    """
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"train.device={name} but this machine has no CUDA device (PyTorch {torch.__version__}); use train.device=cpu or auto")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if name == "cuda" else int(name.split(":", 1)[1])
    if index >= count:
        raise UserError(f"train.device={name} but this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def training_device(train) -> torch.device:
    """The device a run with these `train` settings trains on, its precision checked there: what
    `train` and a vectorized group call first, and a study calls for each run before it writes anything."""
    device = resolve_device(train.device)
    check_precision(train.precision, device)
    return device


READING_BATCH = {"cpu": 64}
"""images per forward pass when a model reads many (encodes a dataset) on a device type; others
take 2,048. On the CPU a batch of 64 stays in cache: the `cnn` encoder reads sprites 3× faster so
(with `inference_layout`'s channels-last weights) than in batches of 2,048 (bench/disentanglement.py)"""


@contextmanager
def inference_layout(model: torch.nn.Module):
    """Inside: the model's 4-D weights in channels-last order on the CPU (oneDNN's convolutions run
    them 2–3× faster; the same values, the outputs equal to rounding), restored to contiguous on
    exit (checkpoints store contiguous tensors). Yields the batch size to read images in
    (`READING_BATCH`). A GPU's layout is left as it is (not measured there)."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        yield READING_BATCH.get(device.type, 2048)
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield READING_BATCH["cpu"]
    finally:
        model.to(memory_format=torch.contiguous_format)


def reading_device(name: str) -> torch.device:
    """The device to read a trained run on: its `train.device` where this machine has it, else the CPU."""
    try:
        return resolve_device(name)
    except UserError:
        return torch.device("cpu")


def check_precision(precision: str, device: torch.device) -> None:
    """A UserError when `train.precision` asks for bfloat16 on a device without it (a CUDA GPU
    older than Ampere); the CPU runs bfloat16 autocast everywhere."""
    if precision == "bf16" and device.type == "cuda" and not _cuda_bf16(device):
        raise UserError(f"train.precision=bf16 but {describe(device)} has no bfloat16 support (it needs compute capability 8.0 or newer); use train.precision=fp32")


def _cuda_bf16(device: torch.device) -> bool:
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def describe(device: torch.device) -> str:
    """The device as a run folder records it: "cpu", or "cuda:0 (NVIDIA H200)"."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def memory(device: torch.device) -> int:
    """Bytes of memory `device` has: a GPU's own, or the machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def free_memory(device: torch.device) -> int:
    """Bytes `device` can hand out now: a GPU's free memory (as the driver reports it), or the
    machine's available memory (MemAvailable; all of it where /proc/meminfo is missing)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return memory(device)


def check_fits(nbytes: int, device: torch.device, what: str) -> None:
    """Refuse (a UserError) `what`, needing `nbytes`, when it exceeds `device`'s whole memory."""
    have = memory(device)
    if nbytes > have:
        raise UserError(f"{what} needs about {nbytes / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB of {describe(device)}")

"""Checkpoints: weights in model.safetensors, optimizer + RNG + step in state.safetensors.

The architecture is not stored with the weights: it is rebuilt from the run's config.toml.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaelab.config import Config
from vaelab.device import describe, reading_device
from vaelab.errors import UserError
from vaelab.models import build_model
from vaelab.runfolder import load_tensors, read_toml, save_tensors


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, image_shape, extra: dict | None = None) -> None:
    """Write model.safetensors, then state.safetensors (weights too, optimizer, RNG, step).

    Each file is written atomically and the state last, so the state alone commits a checkpoint:
    a kill between the two renames leaves a state that resume can use by itself. The model's header
    records the image shape (C, H, W) it was built for and both headers the device that trained it
    (`vaelab.device.describe`). `extra` tensors (the training loop's own
    state, e.g. the epoch's debiasing weights) go into the state as `extra.<name>`."""
    state = {f"optim.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)) for i, s in optimizer.state_dict()["state"].items() for k, v in s.items()}
    device = next(model.parameters()).device
    state["rng.cpu"] = torch.get_rng_state()
    if device.type == "cuda":  # the reparameterisation noise of a CUDA run comes from its device's generator
        state["rng.cuda"] = torch.cuda.get_rng_state(device)
    state["step"] = torch.tensor(step, dtype=torch.int64)
    state.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    state.update({f"model.{k}": v for k, v in model.state_dict().items()})
    shape = ",".join(str(int(v)) for v in image_shape)
    trained_on = describe(device)
    save_tensors(run_dir / "model.safetensors", model.state_dict(), step=step, image_shape=shape, device=trained_on)
    save_tensors(run_dir / "state.safetensors", state, step=step, device=trained_on)


def _apply(model: torch.nn.Module, tensors: dict[str, torch.Tensor], run_dir: Path, path: Path | None = None) -> None:
    path = path or run_dir / "model.safetensors"
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[:3]}") or (unexpected and f"unexpected {unexpected[:3]}") or f"shape of {wrong[:3]}"
        raise UserError(f"{path} does not match the model in {run_dir / 'config.toml'} ({detail})")
    model.load_state_dict(tensors)


def load_state(run_dir: Path, optimizer: torch.optim.Optimizer, model: torch.nn.Module, seed: int = 0) -> int:
    """Restore the weights, the optimizer and the RNG from state.safetensors; returns its step.

    The weights and the optimizer's moments go to the model's device, whichever device saved
    them. The RNG of the device that continues is restored when the state holds it; a run moved
    from the CPU to a GPU (or between GPUs' generators) seeds the GPU's generator from (seed,
    step) instead, so it continues deterministically but not as the uninterrupted run would."""
    path = run_dir / "state.safetensors"
    tensors, _ = load_tensors(path)
    if "step" not in tensors or "rng.cpu" not in tensors:
        raise UserError(f"{path} is not a vaelab training state")
    _apply(model, {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, run_dir, path)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sd = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    fits = set(state) <= set(range(len(params))) and all(
        v.dim() == 0 or v.shape == params[i].shape for i, s in state.items() for v in s.values()
    )
    if not fits:
        raise UserError(f"{path} does not fit this run's model (optimizer state of another architecture)")
    try:
        optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    except (ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{run_dir / 'state.safetensors'} does not fit this run's optimizer ({e})") from None
    step = int(tensors["step"])
    torch.set_rng_state(tensors["rng.cpu"])
    device = next(model.parameters()).device
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    elif device.type == "cuda":
        torch.cuda.manual_seed(seed * 1_000_003 + step)
    return step


def load_extra(run_dir: Path) -> dict[str, torch.Tensor]:
    """The `extra` tensors of the last checkpoint's state (see save_checkpoint), by name."""
    tensors, _ = load_tensors(run_dir / "state.safetensors")
    return {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}


def read_run_config(run_dir: Path | str) -> Config:
    """The Config stored in a run folder's config.toml."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir} is not a vaelab run folder (no config.toml)")
    return Config.from_dict(read_toml(run_dir / "config.toml"))


def load_run(run_dir: Path | str, device: str | torch.device | None = None):
    """(config, model) of a finished or checkpointed run, the model in eval mode on `device`:
    by default the run's `train.device` where this machine has it, else the CPU
    (`vaelab.device.reading_device`), so a run a GPU trained is read on a CPU-only machine."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    tensors, meta = load_tensors(run_dir / "model.safetensors")
    try:
        shape = tuple(int(v) for v in meta["image_shape"].split(","))
    except (KeyError, ValueError):
        raise UserError(f"{run_dir / 'model.safetensors'} does not record the image shape it was trained on") from None
    model = build_model(cfg, shape)
    _apply(model, tensors, run_dir)
    return cfg, model.to(device if device is not None else reading_device(cfg.train.device)).eval()


def trained_on(run_dir: Path | str) -> str:
    """The device that trained the run's last checkpoint, as its model.safetensors records it
    ("cpu", "cuda:0 (NVIDIA H200)"); "" for a checkpoint written before vaelab recorded it."""
    return load_tensors(Path(run_dir) / "model.safetensors")[1].get("device", "")

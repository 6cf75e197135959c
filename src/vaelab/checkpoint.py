"""Checkpoints: weights in model.safetensors, optimizer + RNG + step in state.safetensors.

The architecture is not stored with the weights: it is rebuilt from the run's config.toml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from vaelab.config import Config
from vaelab.device import describe, reading_device
from vaelab.errors import DIVERGED, UserError
from vaelab.models import build_model
from vaelab.runfolder import load_tensors, one_line, read_toml, require_kind, save_tensors
from vaelab.sample import AggregatePrior


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint taken in memory (CPU copies), to be written by `write`."""

    step: int
    weights: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]
    meta: dict[str, str]

    def write(self, run_dir: Path) -> None:
        """Write model.safetensors, then state.safetensors (weights too, optimizer, RNG, step).

        Each file is written atomically and the state last, so the state alone commits a
        checkpoint: a kill between the two renames leaves a state that resume can use by itself."""
        save_tensors(run_dir / "model.safetensors", self.weights, step=self.step, **self.meta)
        save_tensors(run_dir / "state.safetensors", self.state, step=self.step, device=self.meta["device"])


def take_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, image_shape, extra: dict | None = None, figures: dict[str, float] | None = None) -> Checkpoint:
    """Copy the weights, the optimizer's state and the RNG now, for writing now or later.

    The model's header records the image shape (C, H, W) it was built for and both headers the
    device that trained it (`vaelab.device.describe`). `extra` tensors (the training loop's own
    state, e.g. the epoch's debiasing weights) go into the state as `extra.<name>`; `figures` (what
    a stage after training measured, e.g. a VQ-VAE's prior_nll) into the model's header."""
    state = {f"optim.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)) for i, s in optimizer.state_dict()["state"].items() for k, v in s.items()}
    device = next(model.parameters()).device
    state["rng.cpu"] = torch.get_rng_state()
    if device.type == "cuda":  # the reparameterisation noise of a CUDA run comes from its device's generator
        state["rng.cuda"] = torch.cuda.get_rng_state(device)
    state["step"] = torch.tensor(step, dtype=torch.int64)
    state.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    state.update({f"model.{k}": v for k, v in model.state_dict().items()})
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    meta = {"image_shape": ",".join(str(int(v)) for v in image_shape), "device": describe(device), **{k: repr(float(v)) for k, v in (figures or {}).items()}}
    return Checkpoint(step, weights, {k: v.detach().to("cpu", copy=True) for k, v in state.items()}, meta)


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, image_shape, extra: dict | None = None, figures: dict[str, float] | None = None) -> None:
    """Take a checkpoint (`take_checkpoint`) and write it into `run_dir` at once."""
    take_checkpoint(model, optimizer, step, image_shape, extra, figures).write(run_dir)


def _apply(model: torch.nn.Module, tensors: dict[str, torch.Tensor], run_dir: Path, path: Path | None = None) -> None:
    _check_fits(model.state_dict(), tensors, run_dir, path)
    model.load_state_dict(tensors)


def _check_fits(own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], run_dir: Path, path: Path | None = None) -> None:
    """A UserError unless `tensors` (read from `path`) hold exactly the names and shapes of the
    model's state `own`."""
    path = path or run_dir / "model.safetensors"
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[:3]}") or (unexpected and f"unexpected {unexpected[:3]}") or f"shape of {wrong[:3]}"
        raise UserError(f"{path} does not match the model in {run_dir / 'config.toml'} ({detail})")


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
    state = _optimizer_state(tensors, path)
    fits = set(state) <= set(range(len(params))) and all(
        v.dim() == 0 if name == "step" else v.shape == params[i].shape for i, s in state.items() for name, v in s.items()
    )
    if not fits:
        raise UserError(f"{path} does not fit this run's model (optimizer state of another architecture)")
    if len({frozenset(s) for s in state.values()}) > 1:
        raise UserError(f"{path} is a damaged training state (its parameters' optimizer states hold different entries)")
    try:
        optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    except (ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{run_dir / 'state.safetensors'} does not fit this run's optimizer ({one_line(e)})") from None
    step = _state_step(tensors["step"], path)
    device = next(model.parameters()).device
    try:
        torch.set_rng_state(tensors["rng.cpu"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    except (TypeError, RuntimeError) as e:  # not a generator's state (of bytes)
        raise UserError(f"{path}: its random-number state cannot be restored ({one_line(e)})") from None
    if device.type == "cuda" and "rng.cuda" not in tensors:
        torch.cuda.manual_seed(seed * 1_000_003 + step)
    return step


def _optimizer_state(tensors: dict[str, torch.Tensor], path: Path) -> dict[int, dict[str, torch.Tensor]]:
    """The optimizer's state per parameter index, from a training state's `optim.<index>.<name>` tensors."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, i, name = (key.split(".", 2) + ["", ""])[:3]
        if not i.isdecimal() or not name:
            raise UserError(f"{path} is a damaged training state (a tensor {key!r}, not optim.<parameter index>.<name>)")
        state.setdefault(int(i), {})[name] = value
    return state


def _state_step(t: torch.Tensor, path: Path) -> int:
    """The step a training state records: one integer >= 0."""
    value = t.double().item() if t.numel() == 1 and not t.is_complex() else math.nan
    if not (math.isfinite(value) and value >= 0 and value.is_integer()):
        raise UserError(f"{path} is a damaged training state (its step is not one integer >= 0)")
    return int(value)


def load_extra(run_dir: Path) -> dict[str, torch.Tensor]:
    """The `extra` tensors of the last checkpoint's state (see save_checkpoint), by name."""
    tensors, _ = load_tensors(run_dir / "state.safetensors")
    return {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}


def read_run_config(run_dir: Path | str, kind: str = "run") -> Config:
    """The Config stored in the config.toml of a folder of `kind` (a run, or a chain or sweep)."""
    run_dir = require_kind(run_dir, kind)
    path = run_dir / "config.toml"
    if not path.is_file():
        raise UserError(f"{run_dir} has no config.toml")
    raw = read_toml(path)
    try:
        return Config.from_stored(raw)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def load_run(run_dir: Path | str, device: str | torch.device | None = None):
    """(config, model) of a finished or checkpointed run, the model in eval mode on `device`:
    by default the run's `train.device` where this machine has it, else the CPU
    (`vaelab.device.reading_device`), so a run a GPU trained is read on a CPU-only machine."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if (run_dir / DIVERGED).is_file() and not (run_dir / "model.safetensors").is_file():
        raise UserError(f"{run_dir}: training diverged before its first checkpoint ({DIVERGED}); there is no model to load (retrain with a lower train.lr)")
    tensors, meta = load_tensors(run_dir / "model.safetensors")
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise UserError(f"{run_dir / 'model.safetensors'} holds weights that are NaN or infinite (a diverged run, or a damaged file); vaelab keeps only finite checkpoints")
    shape = _image_shape(meta, run_dir / "model.safetensors")
    with torch.device("meta"):  # the architecture alone, no memory: the weights must fit it before any are allocated
        _check_fits(build_model(cfg, shape).state_dict(), tensors, run_dir)
    model = build_model(cfg, shape)
    _apply(model, tensors, run_dir)
    model.aggregate_prior = AggregatePrior.load(run_dir)  # None unless the run fitted one
    return cfg, model.to(device if device is not None else reading_device(cfg.train.device)).eval()


def _image_shape(meta: dict[str, str], path: Path) -> tuple[int, int, int]:
    """The image shape (C, H, W) a model file's header records: three integers >= 1."""
    try:
        shape = tuple(int(v) for v in meta["image_shape"].split(","))
    except (KeyError, ValueError):  # absent, or not integers
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"{path} does not record the image shape (C, H, W) it was trained on")
    return shape


def trained_on(run_dir: Path | str) -> str:
    """The device that trained the run's last checkpoint, as its model.safetensors records it
    ("cpu", "cuda:0 (NVIDIA H200)"); "" for a checkpoint written before vaelab recorded it."""
    return load_tensors(Path(run_dir) / "model.safetensors")[1].get("device", "")

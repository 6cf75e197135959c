"""Models: a name → spec registry (`MODELS`) and `build_model(config, shape)`.

Every model is a `VAE` (models/vae.py) around an encoder and a decoder; the files here differ in
structure only (dense, convolutional). New files are for new structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from vaelab.errors import UserError
from vaelab.models.conv import build_asym, build_conv
from vaelab.models.mlp import build_ae, build_dense
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: `build(config, (C, H, W)) → VAE` and its default widths."""

    build: Callable[..., VAE]
    description: str
    default_hidden: tuple[int, ...]
    default_decoder_hidden: tuple[int, ...] = ()
    n_hidden: int | None = None
    """exact number of encoder hidden layers the model requires, or None for any"""

    def check(self, m) -> None:
        if self.n_hidden is not None and len(m.hidden) != self.n_hidden:
            raise UserError(f"model.hidden for {m.name} must list {self.n_hidden} width(s), got {list(m.hidden)}")


MODELS: dict[str, ModelSpec] = {
    "fc1": ModelSpec(build_dense, "dense VAE, one hidden layer (chain study: 576-115-8)", (115,), n_hidden=1),
    "fc2": ModelSpec(build_dense, "dense VAE, two hidden layers (chain study: 576-144-28-8)", (144, 28), n_hidden=2),
    "conv": ModelSpec(build_conv, "conv encoder, transposed-conv decoder (chain study: 32 3x3 filters, 115)", (115,)),
    "asym": ModelSpec(build_asym, "conv encoder with the fc2 decoder (chain study)", (115,), (28, 144)),
    "ae": ModelSpec(build_ae, "deterministic autoencoder (dense), the lectures' baseline", (144, 28)),
}


def build_model(cfg, shape: tuple[int, int, int]) -> VAE:
    """The model `cfg.model.name` names, for images of shape (C, H, W)."""
    return MODELS[cfg.model.name].build(cfg, tuple(shape))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "ModelSpec", "VAE", "build_model", "count_parameters"]

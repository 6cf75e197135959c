"""Models: a name → spec registry (`MODELS`) and `build_model(config, shape)`.

Every model is a `VAE` (models/vae.py) around an encoder and a decoder; the files here differ in
structure only (dense, convolutional). New files are for new structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from vaelab.errors import UserError
from vaelab.models.conv import build_asym, build_conv
from vaelab.models.mlp import build_ae, build_dense
from vaelab.models.vae import VAE


GENERIC = {"channels": (32,), "kernel": 3, "pool": False}
"""what a model takes for these keys when neither the config nor the model's spec sets them"""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: `build(config, (C, H, W)) → VAE` and its own defaults.

    `defaults` gives the model's values for `model.hidden`, `model.decoder_hidden` (otherwise the
    mirror of hidden), `model.channels`, `model.kernel` and `model.pool` (otherwise GENERIC), used
    when a config leaves them unset; switching `model.name` drops them for the new model's."""

    build: Callable[..., VAE]
    description: str
    defaults: dict = field(default_factory=dict)
    n_hidden: int | None = None
    """exact number of encoder hidden layers the model requires, or None for any"""

    def default(self, key: str, hidden: tuple[int, ...] = ()):
        if key == "decoder_hidden":
            return tuple(self.defaults.get(key, ())) or tuple(reversed(hidden))
        return self.defaults.get(key, GENERIC.get(key))

    def check(self, m) -> None:
        if self.n_hidden is not None and len(m.hidden) != self.n_hidden:
            raise UserError(f"model.hidden for {m.name} must list {self.n_hidden} width(s), got {list(m.hidden)}")


MODELS: dict[str, ModelSpec] = {
    "fc1": ModelSpec(build_dense, "dense VAE, one hidden layer (chain study: 576-115-8)", {"hidden": (115,)}, n_hidden=1),
    "fc2": ModelSpec(build_dense, "dense VAE, two hidden layers (chain study: 576-144-28-8)", {"hidden": (144, 28)}, n_hidden=2),
    "conv": ModelSpec(build_conv, "conv encoder, transposed-conv decoder (chain study: 32 3x3 filters, 115)", {"hidden": (115,)}),
    "asym": ModelSpec(build_asym, "conv encoder with the fc2 decoder (chain study)", {"hidden": (115,), "decoder_hidden": (28, 144)}),
    "ae": ModelSpec(build_ae, "deterministic autoencoder (dense), the lectures' baseline", {"hidden": (144, 28)}),
    "dense3": ModelSpec(
        build_dense, "dense VAE of 3 layers each way, 784-392-196-z (the MNIST study's dense model: 780k weights at z = 16)", {"hidden": (392, 196)}
    ),
    "cnn": ModelSpec(
        build_conv,
        "small CNN VAE: 5x5 convs of 16 and 32 channels, 2x2 pooling, dense 64 (the MNIST study's CNN; 442k weights on 28x28 at z = 16)",
        {"hidden": (64,), "channels": (16, 32), "kernel": 5, "pool": True},
    ),
}


def build_model(cfg, shape: tuple[int, int, int]) -> VAE:
    """The model `cfg.model.name` names, for images of shape (C, H, W)."""
    return MODELS[cfg.model.name].build(cfg, tuple(shape))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "ModelSpec", "VAE", "build_model", "count_parameters"]

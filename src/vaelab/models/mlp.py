"""Dense VAEs: `fc1` (one hidden layer), `fc2` (two), `dense3` (the MNIST study's), and `ae`, the
deterministic autoencoder.

The chain study's fc1 is 576 → 115 → (μ, log σ²) with decoder 8 → 115 → 576; its fc2 is
576 → 144 → 28 → (μ, log σ²) with decoder 8 → 28 → 144 → 576 (ReLU, sigmoid output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vaelab.errors import require
from vaelab.losses import KL_KEYS, POSTERIOR_KEYS
from vaelab.models._blocks import DenseDecoder, DenseEncoder
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class DenseParams:
    """A dense VAE's own keys, `model.<field>`."""

    hidden: tuple[int, ...] = (144, 28)
    """hidden layer widths of the encoder, from the image inwards"""
    decoder_hidden: tuple[int, ...] = ()
    """hidden widths of the decoder, from z outwards; empty mirrors `hidden`"""
    batch_norm: bool = False
    """batch normalisation after every hidden layer"""

    loss_keys: ClassVar[tuple[str, ...]] = ("recon_weight", "variability_weight", *KL_KEYS, *POSTERIOR_KEYS)
    """the `loss.*` settings the model honours; any other must keep its default"""
    aggregate_prior: ClassVar[bool] = True
    """it can sample from a mixture fitted to its training images' codes (sample.prior = aggregate)"""
    n_hidden: ClassVar[int | None] = None
    """the number of encoder hidden layers the model requires, or None for any"""

    def __post_init__(self):
        require(len(self.hidden) >= 1, "model.hidden", "must list at least one width (an empty list no longer means the model's default: leave the key unset for that)")
        for key in ("hidden", "decoder_hidden"):
            require(all(w >= 1 for w in getattr(self, key)), f"model.{key}", "widths must be >= 1")
        require(self.n_hidden is None or len(self.hidden) == self.n_hidden, "model.hidden", f"must list {self.n_hidden} width(s) for this model, got {list(self.hidden)}")

    @property
    def decoder_widths(self) -> tuple[int, ...]:
        """The decoder's hidden widths from z outwards: `decoder_hidden`, or the mirror of `hidden`."""
        return self.decoder_hidden or tuple(reversed(self.hidden))


@dataclass(frozen=True)
class FC1Params(DenseParams):
    """fc1's keys: one hidden layer (the chain study's 576-115-8)."""

    hidden: tuple[int, ...] = (115,)
    n_hidden: ClassVar[int | None] = 1


@dataclass(frozen=True)
class FC2Params(DenseParams):
    """fc2's keys: two hidden layers (the chain study's 576-144-28-8)."""

    n_hidden: ClassVar[int | None] = 2


@dataclass(frozen=True)
class Dense3Params(DenseParams):
    """dense3's keys: the MNIST study's 784-392-196-z."""

    hidden: tuple[int, ...] = (392, 196)


@dataclass(frozen=True)
class AEParams(DenseParams):
    """ae's keys: an autoencoder has no KL term, so no β and no KL schedule."""

    loss_keys: ClassVar[tuple[str, ...]] = ("recon_weight", "variability_weight")


def build_dense(m, shape: tuple[int, int, int]) -> VAE:
    p = m.params
    encoder = DenseEncoder(shape, p.hidden, 2 * m.latent_dim, p.batch_norm)  # (B, C, H, W) → (B, 2L)
    decoder = DenseDecoder(m.latent_dim, p.decoder_widths, shape, p.batch_norm)  # (B, L) → (B, C, H, W)
    return VAE(encoder, decoder, m.latent_dim, m.likelihood)


def build_ae(m, shape: tuple[int, int, int]) -> VAE:
    p = m.params
    encoder = DenseEncoder(shape, p.hidden, m.latent_dim, p.batch_norm)  # (B, C, H, W) → (B, L)
    decoder = DenseDecoder(m.latent_dim, p.decoder_widths, shape, p.batch_norm)  # (B, L) → (B, C, H, W)
    return VAE(encoder, decoder, m.latent_dim, m.likelihood, deterministic=True)

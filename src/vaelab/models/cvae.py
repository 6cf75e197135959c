"""`cvae`: the conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output Representation
using Deep Conditional Generative Models"), dense.

Both halves see the label as a one-hot vector: the encoder q(z|x, y) reads [flatten(x), onehot(y)],
the decoder p(x|z, y) reads [z, onehot(y)]. The prior stays N(0, I), so sampling a class K is
z ~ N(0, I) decoded with y = K: the latent code carries the style, the label the class.

    x (B, C, H, W), y (B,) → [x (B, C·H·W), onehot(y) (B, K)] → hidden → (μ, log σ²) (B, 2L)
    z (B, L), y (B,)       → [z (B, L), onehot(y) (B, K)]      → hidden → (B, C, H, W) logits
"""

from __future__ import annotations

from typing import ClassVar

import math
from dataclasses import dataclass

import torch

from vaelab.errors import require
from vaelab.models._blocks import DenseDecoder, DenseEncoder
from vaelab.models.mlp import DenseParams
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class CVAEParams(DenseParams):
    """cvae's keys: dense like dense3, and the number of classes."""

    hidden: tuple[int, ...] = (392, 196)
    classes: int = 0
    """the number of label classes; 0 takes the training data's (its largest label + 1)"""

    aggregate_prior: ClassVar[bool] = False
    """its codes are drawn with a class; a mixture fitted to all classes' codes is not offered"""

    def __post_init__(self):
        super().__post_init__()
        require(self.classes >= 0, "model.classes", f"must be >= 0, got {self.classes}")


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """labels (B,) int → (B, K) float; written as a comparison so that vmap can batch it."""
    return (labels.unsqueeze(1) == torch.arange(n_classes, device=labels.device)).float()  # (B, K)


class CVAE(VAE):
    """A VAE whose encoder and decoder both take the label; `labels` is required everywhere."""

    def __init__(self, encoder, decoder, latent_dim: int, n_classes: int, likelihood: str):
        super().__init__(encoder, decoder, latent_dim, likelihood)
        self.n_classes = n_classes

    def _label(self, labels: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        if labels is None:
            raise ValueError("a conditional VAE needs labels")
        return one_hot(labels.to(like.device), self.n_classes).to(like.dtype)

    def posterior_params(self, x, labels=None):
        h = self.encoder(torch.cat([x.flatten(1), self._label(labels, x)], 1))  # (B, 2L)
        mu, logvar = h.chunk(2, dim=1)  # (B, L), (B, L)
        return mu, logvar

    def logits(self, z, labels=None):
        return self.decoder(torch.cat([z, self._label(labels, z)], 1))  # (B, C, H, W)


def build_cvae(m, shape) -> CVAE:
    p = m.params
    encoder = DenseEncoder((math.prod(shape) + p.classes,), p.hidden, 2 * m.latent_dim, p.batch_norm)  # (B, D + K) → (B, 2L)
    decoder = DenseDecoder(m.latent_dim + p.classes, p.decoder_widths, shape, p.batch_norm)  # (B, L + K) → (B, C, H, W)
    return CVAE(encoder, decoder, m.latent_dim, p.classes, m.likelihood)

"""`gaussian-fit`: the exact baseline of the chain study, a full-covariance Gaussian over the
flattened images, fitted by maximum likelihood. No network and no gradient steps: the training
loop runs without effect (its loss is 0), and the fit is the stage after it (`after_training`).

In a chain each generation fits N(m, S) to its training set (S the maximum-likelihood covariance,
divided by M) and draws the next set from it. Refitting M samples shrinks every direction's
variance by (M − 1)/M in expectation, E[σₙ²] = σ₀² ((M − 1)/M)ⁿ: what a chain loses to sampling
error alone. A VAE chain that loses more loses it to the VAE.

    x (B, C, H, W) → code z = L⁻¹ (flatten(x) − m) (B, D), D = C·H·W, S = L Lᵀ
    z (B, D)       → image m + L z (B, C, H, W): a prior draw z ~ N(0, I) is a draw of N(m, S)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from vaelab.errors import UserError
from vaelab.losses import LossWeights
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class GaussianFitParams:
    """gaussian-fit's own keys, `model.<field>`. It takes no `loss.*` setting (it has no loss), and
    its code is the image itself: model.latent_dim and model.likelihood keep their defaults."""

    jitter: float = 1e-6
    """added to the covariance's diagonal, so a set with constant pixels (a singular covariance) can be sampled"""

    loss_keys: ClassVar[tuple[str, ...]] = ()
    """the `loss.*` settings the model honours; any other must keep its default"""
    aggregate_prior: ClassVar[bool] = False
    """it samples its own Gaussian"""

    def __post_init__(self):
        if not (self.jitter >= 0 and math.isfinite(self.jitter)):
            raise UserError(f"model.jitter must be >= 0, got {self.jitter}")


class GaussianFit(VAE):
    """N(m, S) over flattened images, as a model with the VAE's interface (encode, decode, sample)."""

    def __init__(self, shape: tuple[int, int, int], jitter: float):
        super().__init__(nn.Identity(), nn.Identity(), math.prod(shape), "gaussian", deterministic=True)
        self.shape, self.jitter = tuple(shape), jitter
        d = self.latent_dim
        self.register_buffer("mean", torch.zeros(d, dtype=torch.float64))  # (D,)
        self.register_buffer("tril", torch.eye(d, dtype=torch.float64))  # (D, D), S = L Lᵀ
        self.anchor = nn.Parameter(torch.zeros(()))  # the training loop's optimizer needs a parameter; it never moves

    def posterior_params(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        """x (B, C, H, W) → the whitened code L⁻¹ (x − m) (B, D), and no variance (the map is exact)."""
        centred = (x.flatten(1).double() - self.mean).T  # (D, B)
        return torch.linalg.solve_triangular(self.tril, centred, upper=False).T.float(), None

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, D) → m + L z as images (B, C, H, W) (not squashed into [0, 1])."""
        return (self.mean + z.double() @ self.tril.T).float().view(-1, *self.shape)

    def logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise UserError("model gaussian-fit has no decoder likelihood (it is a fitted Gaussian): its ELBO-based metrics do not apply")

    def loss(self, x: torch.Tensor, step: int, loss: LossWeights, inputs: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """0: nothing is learnt by gradient steps (the fit is `after_training`)."""
        return {"loss": self.anchor * 0.0}

    @torch.no_grad()
    def after_training(self, images: torch.Tensor, seed: int) -> dict[str, float]:
        """Fit m and S = (1/M) Σ (x − m)(x − m)ᵀ + jitter·I to the training images; returns the
        log-determinant of S (nats), a measure of the set's spread."""
        x = torch.cat([xb.flatten(1).double() for xb in images.split(4096)]).to(self.mean.device)  # (M, D)
        m = x.mean(0)
        s = (x - m).T @ (x - m) / len(x) + self.jitter * torch.eye(self.latent_dim, dtype=torch.float64, device=x.device)
        tril, info = torch.linalg.cholesky_ex(s)
        if int(info):
            raise UserError(f"gaussian-fit: the covariance of the {len(x)} training images is singular; raise model.jitter (now {self.jitter})")
        self.mean.copy_(m)
        self.tril.copy_(tril)
        return {"log_det": float(2 * tril.diagonal().log().sum())}


def build_gaussian_fit(cfg, shape: tuple[int, int, int]) -> GaussianFit:
    """The Gaussian for images of `shape`; model.latent_dim and model.likelihood, which it would
    ignore, must keep their defaults."""
    defaults = {f.name: f.default for f in fields(cfg)}
    for key in ("latent_dim", "likelihood"):
        if getattr(cfg, key) != defaults[key]:
            raise UserError(f"model.{key} = {getattr(cfg, key)!r}: model gaussian-fit does not use it (its code is the image itself, its likelihood Gaussian); leave it at {defaults[key]!r}")
    return GaussianFit(shape, cfg.params.jitter)

"""The VAE (Kingma & Welling 2014, "Auto-Encoding Variational Bayes") around any encoder/decoder.

The encoder maps x to the parameters of a diagonal Normal q(z|x); z is drawn by the
reparameterisation trick; the decoder maps z to logits whose sigmoid is the likelihood's mean.
With `deterministic=True` it is a plain autoencoder (z = the encoder's output, no KL): the
lectures' baseline. β-VAE and the variability term are loss settings, not classes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Normal

from vaelab.losses import LossWeights, draw_latent, vae_terms


class VAE(nn.Module):
    """encode(x) → Normal, decode(z) → x̂ (the likelihood's mean), loss(x, step, loss) → named terms.

    Arguments:
        encoder: (B, C, H, W) → (B, 2L) [μ, log σ²], or (B, L) when deterministic.
        decoder: (B, L) → (B, C, H, W) logits.
        latent_dim: L.
        likelihood: "gaussian" or "bernoulli".
        deterministic: a plain autoencoder (no sampling, no KL).
    """

    n_classes = 0
    """classes a conditional model (cvae) takes as `labels`; 0: none, and `labels` is ignored"""
    aggregate_prior = None
    """the mixture fitted to the training images' codes after training (vaelab.sample.AggregatePrior),
    when the run has one (sample.prior = aggregate); sampled by `vaelab.sample.sample(prior="aggregate")`"""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, likelihood: str, *, deterministic: bool = False):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.likelihood = latent_dim, likelihood
        self.deterministic = deterministic

    def posterior_params(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, C, H, W) [labels (B,)] → μ (B, L), log σ² (B, L) (None for an autoencoder)."""
        h = self.encoder(x)  # (B, 2L) or (B, L)
        if self.deterministic:
            return h, None
        mu, logvar = h.chunk(2, dim=1)  # (B, L), (B, L)
        return mu, logvar

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Normal:
        """q(z|x) as a diagonal Normal with batch shape (B, L); an autoencoder's has a tiny scale."""
        mu, logvar = self.posterior_params(x, labels)
        scale = torch.full_like(mu, 1e-6) if logvar is None else torch.exp(0.5 * logvar)
        return Normal(mu, scale)

    def prior_sample(self, n: int, generator: torch.Generator, delta: float = 0.0) -> torch.Tensor:
        """n latent codes (n, L) from the prior N(0, (1 + δ)² I), drawn on the CPU with `generator`."""
        return torch.randn(n, self.latent_dim, generator=generator) * (1.0 + delta)

    def after_training(self, images: torch.Tensor, seed: int) -> dict[str, float]:
        """A stage after the training loop (a VQ-VAE fits its code prior here); returns its figures,
        {} when there is none."""
        return {}

    def logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, L) [labels (B,)] → the decoder's logits (B, C, H, W)."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, L) [labels (B,)] → the likelihood's mean x̂ (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.logits(z, labels))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction through the posterior mean: x (B, C, H, W) → x̂ (B, C, H, W)."""
        return self.decode(self.posterior_params(x, labels)[0], labels)

    def loss(self, x: torch.Tensor, step: int, loss: LossWeights, inputs: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Named loss terms for a batch x (B, C, H, W) at training step `step`; `loss` is the total.

        `loss` holds this step's loss settings (`losses.loss_weights`: the KL schedule already
        applied, as the training loop hands them over). `inputs` (B, C, H, W), when given, is what
        the encoder sees (e.g. x plus noise) while the reconstruction is still measured against x.
        `labels` (B,) condition a conditional model."""
        mu, logvar = self.posterior_params(x if inputs is None else inputs, labels)
        z = mu if logvar is None else draw_latent(mu, logvar)  # (B, L)
        logits = self.logits(z, labels)  # (B, C, H, W)
        return vae_terms(x, logits, mu, logvar, likelihood=self.likelihood, loss=loss, z=z)

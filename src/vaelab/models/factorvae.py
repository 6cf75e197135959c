"""`factorvae`: FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising").

A VAE whose loss adds γ·TC, the total correlation of the aggregate posterior, estimated by a
discriminator D trained alongside to tell codes z ~ q(z) from codes whose dims were shuffled
independently across the batch (draws from Π_d q(z_d)). At D's optimum its logit is
log q(z) / Π_d q(z_d), so TC ≈ E_q(z)[logit D(z)] (the density-ratio trick):

    VAE:            the VAE's terms (`vae_terms`) + γ·mean logit D(z)   (D's weights detached)
    discriminator:  BCE(D(z̄), 1) + BCE(D(shuffle(z̄)), 0)               (z̄: the codes detached)

Both are one loss for one Adam, as in `introvae`: each term reaches only the parameters whose
objective it is, and Adam is per parameter. Kim & Mnih drew the shuffled codes from a second batch
and gave D its own Adam (lr 1e-4, betas 0.5 and 0.9); here the same batch's codes are shuffled and
D shares the run's Adam.

The encoder and decoder are the `conv` model's (model.channels, model.kernel, model.pool,
model.hidden, model.decoder_hidden); D is a dense net of `model.discriminator` hidden widths with
LeakyReLU(0.2) to one logit (the paper's: 6 layers of 1000). γ is `model.tc_weight`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from vaelab.errors import require
from vaelab.losses import LossWeights, draw_latent, vae_terms
from vaelab.models.conv import ConvDecoder, ConvEncoder, ConvParams
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class FactorVAEParams(ConvParams):
    """factorvae's keys: the conv model's networks, the discriminator's widths and γ."""

    tc_weight: float = 10.0
    """γ, the weight of the discriminator's total-correlation estimate (disentanglement_lib: 10 … 100)"""
    discriminator: tuple[int, ...] = (1000, 1000, 1000, 1000, 1000, 1000)
    """hidden widths of the discriminator (LeakyReLU 0.2), latents → one logit"""

    def __post_init__(self):
        super().__post_init__()
        require(self.tc_weight >= 0, "model.tc_weight", f"must be >= 0, got {self.tc_weight}")
        require(all(w >= 1 for w in self.discriminator), "model.discriminator", f"widths must be >= 1, got {list(self.discriminator)}")


class Discriminator(nn.Sequential):
    """(B, L) → hidden layers (LeakyReLU 0.2) → (B,) the logit that z is a joint draw of q(z)."""

    def __init__(self, latent_dim: int, widths: tuple[int, ...]):
        layers: list[nn.Module] = []
        for a, b in zip((latent_dim, *widths[:-1]), widths):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(widths[-1] if widths else latent_dim, 1), nn.Flatten(0)]
        super().__init__(*layers)


def shuffle_dims(codes: torch.Tensor) -> torch.Tensor:
    """(B, L) → each latent dim permuted across the batch on its own: draws of Π_d q(z_d)."""
    return codes.gather(0, torch.rand_like(codes).argsort(0))


def discriminator_terms(discriminator: nn.Module, codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """The discriminator's loss on `codes` (B, L), detached, against their shuffled dims, and its
    accuracy: BCE(D(z̄), 1) + BCE(D(shuffle(z̄)), 0), averaged over the 2B codes."""
    codes = codes.detach()
    joint, shuffled = discriminator(codes), discriminator(shuffle_dims(codes))  # (B,) logits each
    bce = F.binary_cross_entropy_with_logits(joint, torch.ones_like(joint)) + F.binary_cross_entropy_with_logits(shuffled, torch.zeros_like(shuffled))
    right = (joint > 0).float().mean() + (shuffled <= 0).float().mean()
    return {"discriminator": bce / 2, "discriminator_accuracy": (right / 2).detach()}


class FactorVAE(VAE):
    def __init__(self, encoder, decoder, discriminator: Discriminator, latent_dim: int, likelihood: str, tc_weight: float):
        super().__init__(encoder, decoder, latent_dim, likelihood)
        self.discriminator, self.tc_weight = discriminator, tc_weight

    def loss(self, x, step: int, loss: LossWeights, inputs=None, labels=None):
        mu, logvar = self.posterior_params(x if inputs is None else inputs)  # (B, L) each
        z = draw_latent(mu, logvar)  # (B, L)
        terms = vae_terms(x, self.logits(z), mu, logvar, likelihood=self.likelihood, loss=loss, z=z)
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        tc = functional_call(self.discriminator, frozen, (z,)).mean()  # E logit D(z): gradients reach the encoder only
        judge = discriminator_terms(self.discriminator, z)
        total = terms["loss"] + self.tc_weight * tc + judge["discriminator"]
        return {**terms, "loss": total, "tc_discriminator": tc, **judge}


def build_factorvae(m, shape) -> FactorVAE:
    p = m.params
    encoder = ConvEncoder(shape, p.channels, p.kernel, p.pool, p.hidden, 2 * m.latent_dim, p.batch_norm)
    decoder = ConvDecoder(m.latent_dim, p.decoder_widths, shape, p.channels, p.kernel, p.pool, p.batch_norm)
    return FactorVAE(encoder, decoder, Discriminator(m.latent_dim, p.discriminator), m.latent_dim, m.likelihood, p.tc_weight)

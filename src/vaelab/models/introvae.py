"""`introvae`: the introspective VAE (Huang, Li, He, Sun & Tan 2018, "IntroVAE: Introspective
Variational Autoencoders for Photographic Image Synthesis").

The encoder doubles as the discriminator, through its KL: it keeps real images' codes near the
prior, L_REG(x) = KL(q(z|x) ‖ N(0, I)), and pushes the codes of generated images — reconstructions
x_r = G(z), z ~ q(z|x), and prior samples x_p = G(z_p), z_p ~ N(0, I) — out to a KL of at least the
margin m; the decoder (the generator) pulls those KLs down. With L_AE the reconstruction term:

    encoder:   L_REG(x) + α·Σ_s [m − L_REG(ng(s))]⁺ + β·L_AE        s ∈ {x_r, x_p}
    generator: α·Σ_s L_REG(s), through a frozen encoder         + β·L_AE

(ng: no gradient; β = `loss.recon_weight`, α = `model.adversarial_weight`, m = `model.margin`;
the paper's α = 0.25, β = 0.5.) For the first `model.adversarial_warmup` steps α = 0: a plain VAE,
so the game starts from a decoder that already draws (from random networks it mode-collapsed on
fontdigits). Both are one loss for one Adam here: every term reaches only the
parameters whose objective it belongs to (the generator's KL terms go through the encoder with its
weights detached, from a decoder pass on a detached z), and Adam is per parameter, so this equals
the paper's two optimizers with one learning rate, updated together rather than one after the other.

The networks are the `cnn` model's (conv encoder to (μ, log σ²), transposed-conv decoder).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.func import functional_call

from vaelab.errors import require
from vaelab.losses import KL_KEYS, LossWeights, draw_latent, gaussian_kl, kl_per_image, reconstruction
from vaelab.models.conv import CNNParams, ConvDecoder, ConvEncoder
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class IntroVAEParams(CNNParams):
    """introvae's keys: the cnn's networks and the introspective game's. Its loss has no variability
    term; `loss.recon_weight` is the paper's β, `loss.beta` weighs the real images' KL."""

    margin: float = 20.0
    """the KL m (nats per image) the encoder pushes generated images' codes out to"""
    adversarial_weight: float = 0.25
    """weight α of the adversarial KL terms (the paper's 0.25)"""
    adversarial_warmup: int = 300
    """training steps at the start with α = 0 (a plain VAE) before the adversarial game begins, as the paper's code can pretrain a VAE"""

    loss_keys: ClassVar[tuple[str, ...]] = ("recon_weight", *KL_KEYS)

    def __post_init__(self):
        super().__post_init__()
        require(self.margin >= 0, "model.margin", f"must be >= 0, got {self.margin}")
        require(self.adversarial_weight >= 0, "model.adversarial_weight", f"must be >= 0, got {self.adversarial_weight}")
        require(self.adversarial_warmup >= 0, "model.adversarial_warmup", f"must be >= 0, got {self.adversarial_warmup}")


def encoder_kl(h: torch.Tensor) -> torch.Tensor:
    """encoder output (B, 2L) [μ, log σ²] → KL(q ‖ N(0, I)) per image (B,)."""
    return kl_per_image(*h.chunk(2, dim=1))


class IntroVAE(VAE):
    def __init__(self, encoder, decoder, latent_dim, likelihood, margin: float, adversarial_weight: float, warmup: int = 0):
        super().__init__(encoder, decoder, latent_dim, likelihood)
        self.margin, self.alpha, self.warmup = margin, adversarial_weight, warmup

    def frozen_kl(self, x: torch.Tensor) -> torch.Tensor:
        """KL per image (B,) through the encoder with its weights detached: gradients reach x only."""
        weights = {k: v.detach() for k, v in self.encoder.named_parameters()}
        return encoder_kl(functional_call(self.encoder, weights, (x,)))

    def loss(self, x, step: int, loss: LossWeights, inputs=None, labels=None):
        mu, logvar = self.posterior_params(x if inputs is None else inputs)  # (B, L) each
        z = draw_latent(mu, logvar)  # (B, L)
        z_p = torch.randn_like(z)  # (B, L) prior draws
        recon = reconstruction(self.likelihood, self.decoder(z), x)
        kl = gaussian_kl(mu, logvar)
        warm = step < self.warmup  # a plain VAE: the generated images' KL is only logged
        with torch.no_grad() if warm else nullcontext():
            # the generator's images, from detached codes: their gradients reach the decoder only
            fakes = torch.sigmoid(self.decoder(torch.cat([z.detach(), z_p])))  # (2B, C, H, W): x_r, x_p
            kl_fake = encoder_kl(self.encoder(fakes.detach()))  # (2B,) the encoder's view, as discriminator
        hinge = F.relu(self.margin - kl_fake).view(2, -1).mean(1).sum()  # Σ_s mean [m − L_REG(s)]⁺
        total = loss.recon_weight * recon + loss.beta * kl
        if not warm:
            pull = self.frozen_kl(fakes).view(2, -1).mean(1).sum()  # Σ_s mean L_REG(s), for the generator
            total = total + self.alpha * (hinge + pull)
        return {"loss": total, "recon": recon, "kl": kl, "kl_fake": kl_fake.mean().detach(), "hinge": hinge.detach()}


def build_introvae(m, shape) -> IntroVAE:
    p = m.params
    encoder = ConvEncoder(shape, p.channels, p.kernel, p.pool, p.hidden, 2 * m.latent_dim, p.batch_norm)
    decoder = ConvDecoder(m.latent_dim, p.decoder_widths, shape, p.channels, p.kernel, p.pool, p.batch_norm)
    return IntroVAE(encoder, decoder, m.latent_dim, m.likelihood, p.margin, p.adversarial_weight, p.adversarial_warmup)

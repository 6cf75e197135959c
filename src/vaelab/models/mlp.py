"""Dense VAEs: `fc1` (one hidden layer), `fc2` (two), and `ae`, the deterministic autoencoder.

The chain study's fc1 is 576 → 115 → (μ, log σ²) with decoder 8 → 115 → 576; its fc2 is
576 → 144 → 28 → (μ, log σ²) with decoder 8 → 28 → 144 → 576 (ReLU, sigmoid output).
"""

from __future__ import annotations

from vaelab.models._blocks import DenseDecoder, DenseEncoder
from vaelab.models.vae import VAE


def build_dense(cfg, shape: tuple[int, int, int]) -> VAE:
    m = cfg.model
    encoder = DenseEncoder(shape, m.hidden, 2 * m.latent_dim, m.batch_norm)  # (B, C, H, W) → (B, 2L)
    decoder = DenseDecoder(m.latent_dim, m.decoder_hidden, shape, m.batch_norm)  # (B, L) → (B, C, H, W)
    return VAE(encoder, decoder, m.latent_dim, m.likelihood, cfg.loss)


def build_ae(cfg, shape: tuple[int, int, int]) -> VAE:
    m = cfg.model
    encoder = DenseEncoder(shape, m.hidden, m.latent_dim, m.batch_norm)  # (B, C, H, W) → (B, L)
    decoder = DenseDecoder(m.latent_dim, m.decoder_hidden, shape, m.batch_norm)  # (B, L) → (B, C, H, W)
    return VAE(encoder, decoder, m.latent_dim, m.likelihood, cfg.loss, deterministic=True)

"""Convolutional VAEs: `conv` (conv encoder, transposed-conv decoder), `cnn` (the MNIST study's)
and `asym` (conv encoder, dense decoder).

The chain study's conv: Conv2d(1→32, 3×3, no padding) → flatten (22·22·32) → 115 → (μ, log σ²);
decoder 8 → 115 → 22·22·32 → ConvTranspose2d(32→1, 3×3). With `pool`, a 2×2 max-pool follows
the convolutions and the decoder upsamples back before its transposed convolutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from vaelab.errors import UserError, require
from vaelab.models._blocks import DenseDecoder, dense_stack
from vaelab.models.mlp import DenseParams
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class ConvParams(DenseParams):
    """A convolutional VAE's own keys, `model.<field>`: the dense part's and the convolutions'."""

    hidden: tuple[int, ...] = (115,)
    """hidden layer widths of the encoder's dense part, after the convolutions"""
    channels: tuple[int, ...] = (32,)
    """output channels of each convolution (no padding, stride 1)"""
    kernel: int = 3
    """kernel size of every convolution"""
    pool: bool = False
    """2x2 max-pooling after the convolutions (undone by upsampling in the decoder)"""

    def __post_init__(self):
        super().__post_init__()
        require(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "model.channels", f"must list at least one width, each >= 1, got {list(self.channels)}")
        require(self.kernel >= 1, "model.kernel", f"must be >= 1, got {self.kernel}")


@dataclass(frozen=True)
class CNNParams(ConvParams):
    """cnn's keys: the MNIST study's 5x5 convolutions of 16 and 32 channels, 2x2 pooling, dense 64."""

    hidden: tuple[int, ...] = (64,)
    channels: tuple[int, ...] = (16, 32)
    kernel: int = 5
    pool: bool = True


@dataclass(frozen=True)
class AsymParams(ConvParams):
    """asym's keys: the conv encoder with the fc2 decoder (the chain study's)."""

    decoder_hidden: tuple[int, ...] = (28, 144)


def conv_feature_shape(shape, channels, kernel, pool) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """(C', H', W') after the convolutions (and pooling), and (H, W) before pooling."""
    _, h, w = shape
    h, w = h - len(channels) * (kernel - 1), w - len(channels) * (kernel - 1)
    if h < 1 or w < 1 or (pool and (h < 2 or w < 2)):
        raise UserError(
            f"model.channels/model.kernel: {len(channels)} convolutions of kernel {kernel}"
            f"{' and pooling' if pool else ''} leave nothing of {shape[1]}x{shape[2]} images"
        )
    return (channels[-1], h // 2, w // 2) if pool else (channels[-1], h, w), (h, w)


class ConvEncoder(nn.Sequential):
    """(B, C, H, W) → convs (no padding) → [max-pool] → flatten → hidden → (B, out_features)."""

    def __init__(self, shape, channels, kernel, pool, hidden, out_features, batch_norm):
        layers: list[nn.Module] = []
        for c_in, c_out in zip((shape[0], *channels[:-1]), channels):
            layers.append(nn.Conv2d(c_in, c_out, kernel))  # (B, c_out, H − k + 1, W − k + 1)
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU())
        if pool:
            layers.append(nn.MaxPool2d(2))  # (B, C', H'/2, W'/2)
        feat, _ = conv_feature_shape(shape, channels, kernel, pool)
        d = math.prod(feat)
        layers += [nn.Flatten(), *dense_stack([d, *hidden], batch_norm)]  # (B, hidden[-1])
        layers.append(nn.Linear(hidden[-1] if hidden else d, out_features))  # (B, out_features)
        super().__init__(*layers)


class ConvDecoder(nn.Sequential):
    """(B, L) → hidden → (B, C'·H'·W') → [upsample] → transposed convs → (B, C, H, W) logits."""

    def __init__(self, latent_dim, hidden, shape, channels, kernel, pool, batch_norm):
        feat, unpooled = conv_feature_shape(shape, channels, kernel, pool)
        layers: list[nn.Module] = [*dense_stack([latent_dim, *hidden, math.prod(feat)], batch_norm)]
        layers.append(nn.Unflatten(1, feat))  # (B, C', H', W')
        if pool:
            layers.append(nn.Upsample(size=unpooled))  # (B, C', H'·2 (+1), W'·2 (+1))
        outs = (*reversed(channels[:-1]), shape[0])
        for i, (c_in, c_out) in enumerate(zip(reversed(channels), outs)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel))  # (B, c_out, H + k − 1, W + k − 1)
            if i < len(outs) - 1:
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU())
        super().__init__(*layers)


def build_conv(m, shape) -> VAE:
    p = m.params
    encoder = ConvEncoder(shape, p.channels, p.kernel, p.pool, p.hidden, 2 * m.latent_dim, p.batch_norm)
    decoder = ConvDecoder(m.latent_dim, p.decoder_widths, shape, p.channels, p.kernel, p.pool, p.batch_norm)
    return VAE(encoder, decoder, m.latent_dim, m.likelihood)


def build_asym(m, shape) -> VAE:
    p = m.params
    encoder = ConvEncoder(shape, p.channels, p.kernel, p.pool, p.hidden, 2 * m.latent_dim, p.batch_norm)
    decoder = DenseDecoder(m.latent_dim, p.decoder_widths, shape, p.batch_norm)
    return VAE(encoder, decoder, m.latent_dim, m.likelihood)

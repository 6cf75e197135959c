"""Layers shared by the model files: dense stacks and the dense encoder/decoder halves."""

from __future__ import annotations

import math

from torch import nn


def dense_stack(sizes: list[int], batch_norm: bool) -> list[nn.Module]:
    """Linear → [BatchNorm] → ReLU for each consecutive pair of `sizes`."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(a, b))
        if batch_norm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(nn.ReLU())
    return layers


class DenseEncoder(nn.Sequential):
    """(B, C, H, W) → flatten → hidden layers → (B, out_features)."""

    def __init__(self, shape: tuple[int, int, int], hidden: tuple[int, ...], out_features: int, batch_norm: bool):
        d = math.prod(shape)
        super().__init__(
            nn.Flatten(),  # (B, C·H·W)
            *dense_stack([d, *hidden], batch_norm),  # (B, hidden[-1])
            nn.Linear(hidden[-1] if hidden else d, out_features),  # (B, out_features)
        )


class DenseDecoder(nn.Sequential):
    """(B, L) → hidden layers → (B, C·H·W) → (B, C, H, W) logits."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], shape: tuple[int, int, int], batch_norm: bool):
        super().__init__(
            *dense_stack([latent_dim, *hidden], batch_norm),  # (B, hidden[-1])
            nn.Linear(hidden[-1] if hidden else latent_dim, math.prod(shape)),  # (B, C·H·W)
            nn.Unflatten(1, shape),  # (B, C, H, W)
        )

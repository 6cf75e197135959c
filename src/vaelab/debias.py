"""Debiasing with latent distributions (`train.debias`): the resampling of the debiasing VAE
(Amini, Soleimany, Schwarting, Bhatia & Rus 2019, "Uncovering and Mitigating Algorithmic Bias
through Learned Latent Structure"; the lecture's DB-VAE).

At the start of every epoch the training images are encoded; each latent dim's means are binned
into a histogram (BINS bins over their range), and an image's weight is

    w(x) ∝ Π_d 1 / (Q̂_d(μ_d(x)) + α)        Q̂_d: the bin frequencies of dim d, α: the smoothing

so images whose codes fall where few others do (rare shapes, rare positions) are drawn more often.
The epoch's batches are then n draws with replacement by those weights (seeded by the train seed
and the epoch), instead of a shuffle. α → ∞ gives back uniform draws; small α debiases hardest.
"""

from __future__ import annotations

import torch

BINS = 10
"""histogram bins per latent dim (Amini et al. use 10)"""


def debias_weights(mu: torch.Tensor, smoothing: float, bins: int = BINS) -> torch.Tensor:
    """Sampling probabilities (N,) from latent means (N, L): Π_d 1/(Q̂_d + α), normalised to sum 1."""
    mu = mu.double()
    lo, hi = mu.min(0).values, mu.max(0).values  # (L,)
    width = torch.where(hi > lo, (hi - lo) / bins, torch.ones_like(hi))
    idx = ((mu - lo) / width).long().clamp(0, bins - 1)  # (N, L) each mean's bin
    freq = torch.zeros(bins, mu.shape[1], dtype=torch.float64).scatter_add_(0, idx, torch.ones_like(mu)) / len(mu)  # (bins, L)
    log_w = -torch.log(freq.gather(0, idx) + smoothing).sum(1)  # (N,) in log space: L factors may under- or overflow
    w = torch.exp(log_w - log_w.max())
    return (w / w.sum()).float()


def debiased_order(weights: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's n indices, drawn with replacement by `weights` (N,); depends only on (seed, epoch, weights)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.multinomial(weights.double(), len(weights), replacement=True, generator=g)

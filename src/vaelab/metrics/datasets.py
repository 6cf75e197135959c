"""Dataset-level statistics from the chain study (docs/studies.md): variability, occupancy maps and
their distance, mean intensity."""

from __future__ import annotations

import torch


def variability(images: torch.Tensor, pairs: int = 10_000, seed: int = 0) -> float:
    """Mean L2 distance between `pairs` random pairs of distinct images (pixels as they are).

    The chain study's original `points` data scores about 3.8: two disjoint 3×3 blocks are
    √18 ≈ 4.24 apart, overlapping ones less.

    Arguments:
        images: (N, C, H, W), N >= 2.
    """
    n = images.shape[0]
    if n < 2:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (pairs,), generator=g)
    j = (i + torch.randint(1, n, (pairs,), generator=g)) % n  # j ≠ i, uniform over the others
    flat = images.flatten(1).double()
    i, j = i.to(flat.device), j.to(flat.device)  # drawn on the CPU (the same pairs on any device)
    return (flat[i] - flat[j]).norm(dim=1).mean().item()


def occupancy(images: torch.Tensor) -> torch.Tensor:
    """The sum of all images divided by its maximum: (C, H, W) in [0, 1] (all zero for blank data)."""
    total = images.double().sum(0)  # (C, H, W)
    peak = total.max()
    return total / peak if peak > 0 else total


def occupancy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """L2 norm between the occupancy maps of two datasets of the same image shape."""
    return (occupancy(a) - occupancy(b)).norm().item()


def mean_intensity(images: torch.Tensor) -> float:
    """The mean pixel value over the whole set."""
    return images.double().mean().item()

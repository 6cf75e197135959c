"""Block positions in `points`-like images: where each image's block is, and how those positions
are distributed (the chain study: "the position distribution is captured")."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def block_centres(images: torch.Tensor, block: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) int64 (N,) each: the centre of the block×block window with the most mass.

    Windows are centred as `points` renders its blocks (rows y − (block−1)//2 … y + block//2) and
    may hang over the border, so a clipped block is found at its true centre: among windows of
    equal mass, the one with fewer dark in-image pixels wins. Blurry generated images get the
    centre of their brightest window.
    """
    x = images.double().sum(1, keepdim=True)  # (N, 1, H, W) over channels
    lo = (block - 1) // 2  # rows above the centre
    hi = block - 1 - lo  # rows below
    pad = (lo, hi, lo, hi)  # the output at index (y, x) is the window centred there
    box = F.avg_pool2d(F.pad(x, pad), block, stride=1) * block * block  # (N, 1, H, W) window mass
    area = F.avg_pool2d(F.pad(torch.ones_like(x[:1]), pad), block, stride=1) * block * block  # in-image pixels
    eps = 1e-3
    score = (1 + eps) * box - eps * area  # mass first; then fewer dark pixels inside the window
    flat = score.flatten(1).argmax(1)
    w = images.shape[-1]
    return flat % w, flat // w


def marginal_histograms(xs: torch.Tensor, ys: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Empirical pmfs of x and y over 0..size−1, float64 (size,) each."""
    hx = np.bincount(xs.cpu().numpy(), minlength=size)[:size].astype(np.float64)
    hy = np.bincount(ys.cpu().numpy(), minlength=size)[:size].astype(np.float64)
    return hx / max(hx.sum(), 1), hy / max(hy.sum(), 1)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance ½ Σ |p − q| between two pmfs on the same support."""
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())

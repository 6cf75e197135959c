"""Unsupervised disentanglement ranking (Duan et al. 2020, "Unsupervised Model Selection for
Variational Disentangled Representation Learning"): models of one setting trained from different
seeds agree with each other, latent by latent, when they disentangle; entangled models each mix
the factors their own way. No ground truth is needed.

    scores = udr([codes_a, codes_b, codes_c], [kl_a, kl_b, kl_c])   # (3,): each model's UDR

codes are each model's latent means on the same inputs (N, L); kl each model's KL per latent dim
(L,) on them, to leave out the latents that carry nothing (KL below `threshold` nats).

For a pair of models, R is the absolute Spearman correlation of every informative latent of the
one with every informative latent of the other. Each latent scores max² / sum of its row (or
column) of R: 1 when it matches one latent of the other model and no other, 1/k when it spreads
evenly over k. The pair's score averages the two models' mean latent scores (as
disentanglement_lib computes it); a model's UDR is the median of its pairs' scores.
"""

from __future__ import annotations

import numpy as np

from vaelab.errors import UserError
from vaelab.metrics.recovery import correlations

KL_THRESHOLD = 0.01
"""latents whose KL per image is below this many nats are left out (Duan et al.'s filter)"""


def _latent_scores(r: np.ndarray, axis: int) -> np.ndarray:
    """Each latent's max² / sum over its line of R (0 where the line is all 0)."""
    total = r.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.where(total > 0, r.max(axis) ** 2 / total, 0.0))


def pair_score(codes_a, codes_b, kl_a, kl_b, *, threshold: float = KL_THRESHOLD) -> float:
    """The agreement of two models' informative latents, in [0, 1]; 0 when either has none."""
    a, b = np.asarray(codes_a, dtype=np.float64), np.asarray(codes_b, dtype=np.float64)
    keep_a, keep_b = np.asarray(kl_a) > threshold, np.asarray(kl_b) > threshold
    if not keep_a.any() or not keep_b.any():
        return 0.0
    r = correlations(a[:, keep_a], b[:, keep_b], "spearman")  # (La', Lb') |Spearman|, 0 for a constant latent
    return float((_latent_scores(r, 1).mean() + _latent_scores(r, 0).mean()) / 2)


def udr(codes: list, kls: list, *, threshold: float = KL_THRESHOLD) -> np.ndarray:
    """(M,) each model's UDR: the median of its pair scores with the M − 1 others.

    Arguments:
        codes: M arrays (N, L_m) of latent means, every model on the same N inputs.
        kls: M arrays (L_m,) of the KL per latent dim.
    """
    if len(codes) < 2:
        raise UserError(f"UDR compares models of one setting trained from different seeds, and got {len(codes)}: use sweep.seeds >= 2")
    if len(kls) != len(codes) or len({len(c) for c in codes}) != 1:
        raise ValueError("udr needs one KL vector per model and every model's codes on the same inputs")
    m = len(codes)
    pairs = np.full((m, m), np.nan)
    for i in range(m):
        for j in range(i + 1, m):
            pairs[i, j] = pairs[j, i] = pair_score(codes[i], codes[j], kls[i], kls[j], threshold=threshold)
    return np.array([np.median(np.delete(pairs[i], i)) for i in range(m)])

"""Precision, recall, density and coverage of generated samples against real ones.

Precision and recall: Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models". Density and coverage: Naeem et al. 2020, "Reliable Fidelity and
Diversity Metrics for Generative Models". Each sample gets a ball reaching its k-th nearest
neighbour within its own set (k = 5, as in the self-consuming-loop papers):

- precision: the fraction of fake samples inside at least one real ball;
- recall: the fraction of real samples inside at least one fake ball;
- density: the mean over fake samples of the number of real balls holding them, divided by k;
- coverage: the fraction of real balls holding at least one fake sample.

Ties: a ball is closed (a sample at exactly the radius is inside, `<=`), as in Kynkäänniemi et
al.'s own code. The `prdc` package uses open balls (`<`); the two differ only on ties, which pixel
data with duplicate images has plenty of: a sample equal to k or more real images has radius 0, so
on such data `<` can report precision near 0 where `<=` reports 1.
"""

from __future__ import annotations

import torch


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distances (len(a), len(b)) in float64, computed in chunks of rows."""
    return torch.cat([torch.cdist(a[i : i + chunk], b) for i in range(0, a.shape[0], chunk)])


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row: (N,)."""
    d = _pairwise(x, x)
    return d.kthvalue(k + 1, dim=1).values  # the 1st is the point itself, at distance 0


def prdc(
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = 5,
    *,
    real_radii: torch.Tensor | None = None,
    fake_radii: torch.Tensor | None = None,
) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` against `real`.

    Arguments:
        real: (N, D) features (or images, flattened here) of real samples, N > k.
        fake: (M, D) features of generated samples, M > k.
        real_radii, fake_radii: `knn_radii` of either set when already known (a set measured
            again, e.g. the original data in every generation of a chain); computed when None.
    Returns:
        {"precision", "recall", "density", "coverage"}.
    """
    real = real.flatten(1).double()
    fake = fake.flatten(1).double()
    r_real = knn_radii(real, k) if real_radii is None else real_radii
    r_fake = knn_radii(fake, k) if fake_radii is None else fake_radii
    d = _pairwise(real, fake)  # (N, M)
    inside_real = d <= r_real[:, None]  # fake j inside real ball i
    return {
        "precision": inside_real.any(0).double().mean().item(),
        "recall": (d <= r_fake[None, :]).any(1).double().mean().item(),
        "density": (inside_real.sum(0).double() / k).mean().item(),
        "coverage": (d.min(1).values <= r_real).double().mean().item(),
    }

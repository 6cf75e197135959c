"""What the encoder does with the data: posterior diagnostics of a trained VAE, as pure functions
of the posterior parameters of a set of images (μ, log σ² of q(z|x), (N, L) each).

They separate posterior collapse (latents the KL term switched off) from a loss of the data's
variability (latents still used, but on data that varies less):

- `active_units`: the latent dims whose posterior mean varies across the data (Burda et al. 2016).
- `kl_per_dim`: the KL of q(z|x) to N(0, I) per latent dim, data mean; it sums to the KL term.
- `gaussian_fit_kl`: the KL of the Gaussian fitted to the latent means to N(0, I) (how far the
  codes sit from where the prior samples).
- `mmd`: the maximum mean discrepancy between posterior draws and prior draws.
- `mutual_information`: I(x; z) under the aggregate posterior (He et al. 2019's estimator).

Also `memorised`, of images rather than codes: whether a set's images sit closer to the training
images than those sit to each other (copying told apart from generalising).
"""

from __future__ import annotations

import math

import torch

ACTIVE_THRESHOLD = 0.01
"""a latent dim is active when the variance of its posterior mean across the data exceeds this (Burda et al. 2016)"""


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """How many latent dims' posterior means vary across the data: Cov_x(E_q[z_d]) > threshold.
    mu: (N, L), N ≥ 2."""
    return int((mu.double().var(0) > threshold).sum())


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z_d|x) ‖ N(0, 1)) per latent dim, mean over the images: (L,); it sums to the mean KL term."""
    mu, logvar = mu.double(), logvar.double()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)


def gaussian_fit_kl(mu: torch.Tensor) -> float:
    """KL(N(m, S) ‖ N(0, I)) of the Gaussian fitted to the latent means (m their mean, S their
    covariance): ½ (tr S + mᵀm − L − log det S). inf when S is singular (a collapsed dim)."""
    mu = mu.double()
    m = mu.mean(0)
    s = torch.atleast_2d(torch.cov(mu.T))  # (L, L)
    sign, logdet = torch.linalg.slogdet(s)
    if sign <= 0:
        return math.inf
    return 0.5 * float(s.trace() + m @ m - mu.shape[1] - logdet)


def mmd(a: torch.Tensor, b: torch.Tensor, bandwidth2: float | None = None, chunk: int = 2048) -> float:
    """The unbiased estimate of MMD² between the samples `a` (N, L) and `b` (M, L) with the Gaussian
    kernel k(u, v) = exp(−‖u − v‖² / (2 h²)); h² = L by default (then 2h² = 2L is the mean squared
    distance between two draws of N(0, I)). About 0 for samples of one distribution (it can dip
    below 0); it grows as they part."""
    a, b = a.double(), b.double()
    h2 = float(bandwidth2 if bandwidth2 is not None else a.shape[1])

    def mean_kernel(x: torch.Tensor, y: torch.Tensor, same: bool) -> float:
        total = 0.0
        for i in range(0, len(x), chunk):
            k = torch.exp(-torch.cdist(x[i : i + chunk], y).pow(2) / (2 * h2))  # (c, len(y))
            if same:  # leave out each point's kernel with itself
                idx = torch.arange(i, min(i + chunk, len(x)), device=x.device)
                k[idx - i, idx] = 0.0
            total += float(k.sum())
        pairs = len(x) * (len(y) - 1) if same else len(x) * len(y)
        return total / pairs

    return mean_kernel(a, a, True) + mean_kernel(b, b, True) - 2 * mean_kernel(a, b, False)


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, chunk: int = 1024) -> float:
    """I(x; z) under the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n), in nats, with one draw
    z_n ~ q(z|x_n) per image (He et al. 2019): E[log q(z_n|x_n)] − E[log q(z_n)], where
    log q(z_n) = logsumexp_m log q(z_n|x_m) − log N. It lies in [0, log N] up to sampling error.
    mu, logvar, z: (N, L)."""
    mu, logvar, z = mu.double(), logvar.double(), z.double()
    n, latent = mu.shape
    const = -0.5 * latent * math.log(2 * math.pi)
    var = logvar.exp()
    own = const - 0.5 * (logvar + (z - mu).pow(2) / var).sum(1)  # (N,) log q(z_n|x_n)
    log_qz = []
    for i in range(0, n, chunk):
        zc = z[i : i + chunk, None, :]  # (c, 1, L)
        log_q = const - 0.5 * (logvar[None] + (zc - mu[None]).pow(2) / var[None]).sum(-1)  # (c, N) log q(z_c|x_m)
        log_qz.append(torch.logsumexp(log_q, 1) - math.log(n))
    return float(own.mean() - torch.cat(log_qz).mean())


def memorised(images: torch.Tensor, train: torch.Tensor, chunk: int = 1024) -> float:
    """How much closer `images` (N, …) sit to the training set `train` (M, …, M ≥ 2) than its own
    images do to each other: the share of (image, training image) pairs in which the image's
    distance to its nearest training image is below the training image's distance to its nearest
    other (pixel distances; a tie counts a half). Fresh draws of the training distribution score
    about ½ (their distance to the set is distributed as a training image's leave-one-out distance);
    copies of training images score 1; samples further from the data than it is dense score less.

    This compares the two distributions of nearest-neighbour distances (as Meehan et al. 2020's
    data-copying test does, with the training set's own distances in place of held-out images').
    Matching each image with its own nearest training image instead (is it closer than that
    image's neighbour?) asks whether the two are mutual nearest neighbours, whose chance depends
    on the dimension and the sample size (2/3 on a line, 0.25 for 400 draws of a 64-dimensional
    Gaussian), not only on copying."""
    x, t = images.flatten(1).double(), train.flatten(1).double()
    own = torch.empty(len(t), dtype=torch.float64, device=t.device)  # each training image's distance to its nearest other
    for i in range(0, len(t), chunk):
        d = torch.cdist(t[i : i + chunk], t)
        idx = torch.arange(i, min(i + chunk, len(t)), device=t.device)
        d[idx - i, idx] = math.inf
        own[i : i + chunk] = d.min(1).values
    own = own.sort().values
    nearest = torch.cat([torch.cdist(x[i : i + chunk], t).min(1).values for i in range(0, len(x), chunk)])  # (N,)
    below = len(own) - torch.searchsorted(own, nearest, right=True)  # training images farther from their neighbour
    ties = torch.searchsorted(own, nearest, right=True) - torch.searchsorted(own, nearest, right=False)
    return float((below + 0.5 * ties).double().mean() / len(own))

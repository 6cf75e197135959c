"""Posterior diagnostics and memorisation (vaelab.metrics.posterior) against closed forms, brute
force and known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaelab.metrics.posterior import active_units, gaussian_fit_kl, kl_per_dim, memorised, mmd, mutual_information


def normal(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_active_units_count_the_dims_whose_means_vary_past_the_threshold():
    mu = normal(500, 4, seed=0) * torch.tensor([1.0, 0.01, 0.5, 0.2])  # variances 1, 1e-4, 0.25, 0.04
    assert active_units(mu) == 3
    assert active_units(mu, threshold=0.1) == 2
    assert active_units(torch.zeros(10, 6) + 3.0) == 0  # every image coded alike


def test_kl_per_dim_is_torchs_kl_per_dim_and_sums_to_the_kl_term():
    mu, logvar = normal(300, 5, seed=1), normal(300, 5, seed=2) * 0.5
    want = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean(0)
    assert torch.allclose(kl_per_dim(mu, logvar), want, rtol=1e-10)
    assert kl_per_dim(torch.zeros(3, 2), torch.zeros(3, 2)).abs().max() == 0  # q = p


def test_the_gaussian_fit_kl_is_torchs_multivariate_kl_and_vanishes_for_prior_draws():
    mu = normal(2000, 3, seed=3) @ torch.tensor([[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 0.4]], dtype=torch.float64) + torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64)
    m, s = mu.mean(0), torch.cov(mu.T)
    want = kl_divergence(MultivariateNormal(m, s), MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)))
    assert gaussian_fit_kl(mu) == pytest.approx(float(want), rel=1e-9)
    assert gaussian_fit_kl(normal(20000, 4, seed=4)) < 0.01
    assert gaussian_fit_kl(torch.cat([normal(100, 1, seed=5), torch.zeros(100, 1, dtype=torch.float64)], 1)) == math.inf


def test_mmd_is_the_brute_force_unbiased_estimate_about_zero_for_one_distribution_and_grows_with_a_shift():
    a, b = normal(40, 2, seed=6), normal(30, 2, seed=7) + 0.5
    k = lambda u, v: math.exp(-float((u - v).pow(2).sum()) / (2 * 2))  # noqa: E731  h² = L = 2
    same = lambda x: sum(k(x[i], x[j]) for i in range(len(x)) for j in range(len(x)) if i != j) / (len(x) * (len(x) - 1))  # noqa: E731
    cross = sum(k(u, v) for u in a for v in b) / (len(a) * len(b))
    assert mmd(a, b, chunk=7) == pytest.approx(same(a) + same(b) - 2 * cross, rel=1e-9)
    x = normal(2000, 8, seed=8)
    shifts = [mmd(x, normal(2000, 8, seed=9) + s) for s in (0.0, 0.25, 0.5, 1.0)]
    assert abs(shifts[0]) < 2e-3
    assert shifts == sorted(shifts) and shifts[1] > 5 * abs(shifts[0])


@pytest.mark.parametrize("a, sigma", [(1.0, 0.5), (2.0, 0.1)])
def test_mutual_information_of_a_linear_gaussian_encoder_is_the_closed_form(a, sigma):
    """x ~ N(0, 1), q(z|x) = N(a x, σ²): I(x; z) = ½ log(1 + a²/σ²)."""
    n = 4000
    x = normal(n, 1, seed=10)
    mu, logvar = a * x, torch.full((n, 1), 2 * math.log(sigma), dtype=torch.float64)
    z = mu + sigma * normal(n, 1, seed=11)
    assert mutual_information(mu, logvar, z, chunk=333) == pytest.approx(0.5 * math.log(1 + a**2 / sigma**2), abs=0.05)
    constant = torch.zeros(n, 2, dtype=torch.float64)  # every image coded alike: no information
    assert abs(mutual_information(constant, constant, normal(n, 2, seed=12))) < 1e-12


def test_memorised_is_one_for_copies_a_half_for_fresh_draws_and_matches_brute_force():
    train = normal(400, 64, seed=13)
    assert memorised(train[:100] + 0.0, train) == 1.0
    fresh = [memorised(normal(400, d, seed=14), train[:, :d]) for d in (1, 8, 64)]
    assert fresh == pytest.approx([0.5, 0.5, 0.5], abs=0.05)  # in any dimension, unlike mutual nearest neighbours
    assert memorised(normal(200, 64, seed=15) * 3, train) < 0.05  # spread wider than the data: far from it
    small_x, small_t = normal(30, 3, seed=16), normal(25, 3, seed=17)
    loo = [float(torch.cat([small_t[:i], small_t[i + 1 :]]).sub(small_t[i]).norm(dim=1).min()) for i in range(25)]
    near = [float(small_t.sub(x).norm(dim=1).min()) for x in small_x]
    want = sum((o > n) + 0.5 * (o == n) for n in near for o in loo) / (30 * 25)
    assert memorised(small_x, small_t, chunk=4) == pytest.approx(want, rel=1e-12)

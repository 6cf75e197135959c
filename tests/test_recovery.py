"""Latent → factor recovery (vaelab.metrics.recovery) on representations whose answer is known:
the factors themselves (1), independent noise (about 0), a collapsed posterior (0, where pmi
scores it perfect), closed-form correlations, and a brute-force search for MCC's matching."""

import itertools

import numpy as np
import pytest
import torch

from vaelab.errors import UserError
from vaelab.metrics.latent import fit_linear_map, pmi
from vaelab.metrics.recovery import correlations, factor_r2, irs, mcc

N = 4000


@pytest.fixture
def factors():
    return np.random.default_rng(0).uniform(-1, 1, (N, 3))


def test_the_factors_in_another_order_sign_and_scale_score_one(factors):
    rng = np.random.default_rng(1)
    codes = np.column_stack([5 - 3 * factors[:, 2], 2 * factors[:, 0], 0.5 * factors[:, 1] + 7, rng.normal(size=N)])  # and a useless latent
    assert mcc(codes, factors) == pytest.approx(1.0, abs=1e-12)
    assert mcc(codes, factors, method="spearman") == pytest.approx(1.0, abs=1e-12)
    assert factor_r2(codes[:3000], factors[:3000], codes[3000:], factors[3000:]) == pytest.approx(np.ones(3), abs=1e-9)
    discrete = np.random.default_rng(2).integers(0, 10, (N, 3)).astype(float)
    assert irs(discrete[:, [1, 0, 2]] * [1, -2, 3], discrete) == pytest.approx(1.0)  # each latent fixed once its factor is


def test_independent_noise_scores_near_zero(factors):
    codes = np.random.default_rng(3).normal(size=(N, 5))
    assert mcc(codes, factors) < 0.06  # each |r| about sqrt(2 / (π N)) ≈ 0.013; the best of 5 a little more
    assert mcc(codes, factors, method="spearman") < 0.06
    assert factor_r2(codes[:3000], factors[:3000], codes[3000:], factors[3000:]).max() < 0.01
    uniform = np.random.default_rng(3).uniform(size=(N, 5))  # moves as far with a factor held as without
    assert irs(uniform, np.floor((factors + 1) * 5)) < 0.05


def test_a_collapsed_posterior_scores_zero_where_pmi_scores_it_perfect(factors):
    codes = np.full((N, 4), 0.3)
    fit = fit_linear_map(torch.from_numpy(factors[:3000]), torch.from_numpy(codes[:3000]))
    assert pmi(fit, torch.from_numpy(factors[3000:]), torch.from_numpy(codes[3000:]))["pmi"] == pytest.approx(0.0, abs=1e-12)
    assert mcc(codes, factors) == 0.0 and mcc(codes, factors, method="spearman") == 0.0
    assert factor_r2(codes[:3000], factors[:3000], codes[3000:], factors[3000:]).tolist() == [0.0, 0.0, 0.0]
    assert factor_r2(codes[:3000], factors[:3000], codes[3000:], factors[3000:], nonlinear=True).tolist() == [0.0, 0.0, 0.0]
    assert irs(codes, factors) == 0.0


def test_correlations_are_numpy_s_and_spearman_sees_through_a_monotone_map(factors):
    codes = np.column_stack([np.exp(4 * factors[:, 0]), factors[:, 1] + factors[:, 2]])
    expected = np.abs(np.corrcoef(codes.T, factors.T)[:2, 2:])  # (L, F)
    assert correlations(codes, factors) == pytest.approx(expected, abs=1e-12)
    assert correlations(codes, factors, "spearman")[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert correlations(codes, factors)[0, 0] < 0.9  # exp bends the line
    # y1 + y2 with y1, y2 independent and alike: each correlates 1/sqrt(2) with the sum
    assert correlations(codes, factors)[1, 1:] == pytest.approx([2**-0.5] * 2, abs=0.03)


def test_mcc_s_matching_is_the_best_of_every_assignment():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(500, 3))
    for trial in range(5):
        z = y @ rng.normal(size=(3, 5)) + rng.normal(size=(500, 5))  # (500, 5) mixed latents
        r = correlations(z, y)
        best = max(np.mean([r[latent, f] for f, latent in enumerate(p)]) for p in itertools.permutations(range(5), 3))
        assert mcc(z, y) == pytest.approx(best, abs=1e-12)


def test_linear_r2_has_its_closed_form_and_the_perceptron_reads_a_bent_code():
    rng = np.random.default_rng(5)
    y = rng.normal(size=(6000, 2))
    noisy = y + rng.normal(size=y.shape)  # R² of y from y + ε, ε ~ N(0, 1): 1 / (1 + 1)
    assert factor_r2(noisy[:4000], y[:4000], noisy[4000:], y[4000:]) == pytest.approx([0.5, 0.5], abs=0.04)
    u = rng.uniform(-1, 1, (6000, 1))
    cubed = u**3  # the linear fit of u on u³: corr² = (1/5)² / ((1/3)(1/7)) = 0.84
    assert factor_r2(cubed[:4000], u[:4000], cubed[4000:], u[4000:])[0] == pytest.approx(0.84, abs=0.02)
    assert factor_r2(cubed[:4000], u[:4000], cubed[4000:], u[4000:], nonlinear=True)[0] > 0.97


def test_irs_of_a_latent_that_mixes_two_factors_is_one_half():
    # z = y0 + y1, both uniform on 0..9: with y0 held, z still moves |y1 − 4.5| ≤ 4.5; overall it
    # moves up to 9 from its mean; so 1 − 4.5 / 9
    y = np.random.default_rng(6).integers(0, 10, (20000, 2)).astype(float)
    assert irs((y[:, 0] + y[:, 1])[:, None], y) == pytest.approx(0.5, abs=0.02)


def test_bad_input_is_refused_clearly(factors):
    with pytest.raises(UserError, match="3 factors.*only 2 latents"):
        mcc(factors[:, :2], factors)
    with pytest.raises(ValueError, match="method"):
        mcc(factors, factors, method="kendall")
    with pytest.raises(ValueError, match="as many rows"):
        mcc(factors[:10], factors)
    with pytest.raises(ValueError, match="NaN"):
        irs(np.full((10, 2), np.nan), factors[:10])

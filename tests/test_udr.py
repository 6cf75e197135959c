"""UDR (vaelab.metrics.udr) on models whose agreement is known: copies of one code up to order,
sign and monotone maps (1), a rotation (a closed form), independent codes (about 0), and its
median over pairs."""

import math

import numpy as np
import pytest

from vaelab.errors import UserError
from vaelab.metrics.udr import pair_score, udr

N = 3000


@pytest.fixture
def factors():
    return np.random.default_rng(0).normal(size=(N, 3))


def test_models_that_code_the_same_factors_one_to_one_agree_fully(factors):
    a = factors
    b = np.column_stack([np.exp(factors[:, 2]), -3 * factors[:, 0], factors[:, 1] ** 3])  # reordered, flipped, bent
    # 1 but for the sampling noise of the other latents' correlations (about 0.015 each here)
    assert udr([a, b], [np.ones(3), np.ones(3)]) == pytest.approx([1.0, 1.0], abs=0.03)


def test_a_rotated_code_scores_its_closed_form(factors):
    # b = a rotated by 45°: each latent of b correlates with both of a's, Spearman (6/π)·asin(ρ/2)
    # with ρ = 1/√2 for Gaussians; a latent's score max²/sum is then half of it
    a = factors[:, :2]
    b = np.column_stack([a[:, 0] + a[:, 1], a[:, 0] - a[:, 1]]) / math.sqrt(2)
    rho = 6 / math.pi * math.asin(1 / (2 * math.sqrt(2)))
    assert pair_score(a, b, np.ones(2), np.ones(2)) == pytest.approx(rho / 2, abs=0.02)


def test_independent_codes_barely_agree(factors):
    other = np.random.default_rng(1).normal(size=(N, 3))
    assert pair_score(factors, other, np.ones(3), np.ones(3)) < 0.05


def test_uninformative_latents_are_left_out(factors):
    noise = np.random.default_rng(2).normal(size=(N, 1))
    a, b = np.hstack([factors, noise]), np.hstack([factors, -noise * 0 + np.random.default_rng(3).normal(size=(N, 1))])
    kl = np.array([2.0, 2.0, 2.0, 0.001])  # the fourth latent carries nothing: its KL is below 0.01
    assert pair_score(a, b, kl, kl) == pytest.approx(1.0, abs=0.03)
    assert pair_score(a, b, kl, kl, threshold=-1) < 0.9  # kept, the two noise latents disagree
    assert pair_score(a, b, np.zeros(4), kl) == 0.0  # a model with no informative latent agrees with nothing


def test_each_model_s_udr_is_the_median_of_its_pairs(factors):
    other = np.random.default_rng(4).normal(size=(N, 3))
    kls = [np.ones(3)] * 3
    scores = udr([factors, 2 * factors, other], kls)
    same, low = pair_score(factors, 2 * factors, kls[0], kls[1]), pair_score(factors, other, kls[0], kls[2])
    assert scores == pytest.approx([(same + low) / 2, (same + low) / 2, low])  # of two pairs, the median is their mean


def test_udr_needs_two_models():
    with pytest.raises(UserError, match="sweep.seeds >= 2"):
        udr([np.zeros((5, 2))], [np.ones(2)])

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from vaelab.config import LossConfig
from vaelab.losses import (
    LossWeights,
    capacity,
    dip_terms,
    kl_decomposition,
    log_weights,
    draw_latent,
    gaussian_kl,
    kl_weight,
    loss_weights,
    mean_pair_sqdist,
    recon_bernoulli,
    recon_gaussian,
    reconstruction,
    vae_terms,
    variability_gap,
)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(7, 5, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1).mean()
    assert torch.allclose(gaussian_kl(mu, logvar), expected, rtol=1e-12)


def test_gaussian_kl_is_zero_at_the_prior():
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def brute_force_mean_pair_sqdist(x):
    flat = x.flatten(1).double()
    pairs = list(itertools.combinations(range(flat.shape[0]), 2))
    return sum(((flat[i] - flat[j]) ** 2).sum() for i, j in pairs) / len(pairs)


@pytest.mark.parametrize("b", [2, 3, 16, 33])
def test_mean_pair_sqdist_matches_brute_force(b):
    x = torch.rand(b, 1, 4, 5, generator=torch.Generator().manual_seed(b))
    assert torch.allclose(mean_pair_sqdist(x).double(), brute_force_mean_pair_sqdist(x), rtol=1e-5)


def test_mean_pair_sqdist_two_disjoint_blocks():
    # two 24x24 images with disjoint 3x3 blocks: ‖a − b‖² = 18
    a, b = torch.zeros(1, 24, 24), torch.zeros(1, 24, 24)
    a[0, 0:3, 0:3] = 1
    b[0, 10:13, 10:13] = 1
    assert mean_pair_sqdist(torch.stack([a, b])).item() == pytest.approx(18.0)


def test_mean_pair_sqdist_is_linear_in_batch_size():
    # 300,000 pairs-worth of B² memory would be 9e10 floats: only an O(B·D) form can run this
    x = torch.rand(300_000, 1)
    v = mean_pair_sqdist(x).item()
    assert v == pytest.approx(2 * torch.var(x).item(), rel=1e-3)  # E‖xi − xj‖² = 2 Var


def test_single_image_batch_has_no_spread():
    assert mean_pair_sqdist(torch.rand(1, 1, 3, 3)).item() == 0.0


def test_variability_gap_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(9, 1, 3, 3, generator=g), torch.rand(9, 1, 3, 3, generator=g) * 0.3
    expected = (brute_force_mean_pair_sqdist(x) - brute_force_mean_pair_sqdist(y)).abs()
    assert variability_gap(x, y).double().item() == pytest.approx(expected.item(), rel=1e-5)


def test_reconstruction_terms():
    g = torch.Generator().manual_seed(2)
    logits, x = torch.randn(4, 1, 3, 3, generator=g), torch.rand(4, 1, 3, 3, generator=g)
    p = torch.sigmoid(logits)
    # per image: summed over pixels, shape (B,)
    sse = ((p - x) ** 2).flatten(1).sum(1)  # (4,)
    assert recon_gaussian(logits, x).shape == (4,)
    assert torch.allclose(recon_gaussian(logits, x), sse, rtol=1e-6)
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(1)  # (4,)
    assert recon_bernoulli(logits, x).shape == (4,)
    assert torch.allclose(recon_bernoulli(logits, x), bce, rtol=1e-5)
    assert torch.allclose(recon_bernoulli(logits, x), F.binary_cross_entropy(p, x, reduction="none").flatten(1).sum(1), rtol=1e-5)
    # the batch mean
    assert reconstruction("gaussian", logits, x).shape == ()
    assert reconstruction("gaussian", logits, x).item() == pytest.approx(((p - x) ** 2).sum().item() / 4, rel=1e-6)
    assert reconstruction("bernoulli", logits, x).item() == pytest.approx(F.binary_cross_entropy(p, x, reduction="sum").item() / 4, rel=1e-5)


def test_draw_latent_is_mu_plus_sigma_times_the_noise():
    g = torch.Generator().manual_seed(4)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    eps = torch.randn(2, 5, 3, generator=g)  # two draws per image
    z = draw_latent(mu, logvar, eps)
    assert z.shape == (2, 5, 3)
    assert torch.allclose(z, mu + torch.exp(0.5 * logvar) * eps)
    torch.manual_seed(7)
    drawn = draw_latent(mu, logvar)  # noise from the global generator
    torch.manual_seed(7)
    assert drawn.shape == (5, 3) and torch.equal(drawn, mu + torch.exp(0.5 * logvar) * torch.randn(5, 3))
    assert torch.equal(draw_latent(mu, torch.full_like(logvar, -torch.inf)), mu)  # σ = 0: the mean


def test_loss_weights_apply_the_kl_schedule():
    assert loss_weights(LossConfig(), 0) == LossWeights(1.0, 1.0, 0.0) == LossWeights()
    cfg = LossConfig(recon_weight=0.5, beta=2.0, variability_weight=3.0, kl_schedule="linear", warmup_steps=100)
    assert loss_weights(cfg, 25) == LossWeights(recon_weight=0.5, beta=0.5, variability_weight=3.0)
    assert loss_weights(cfg, 500).beta == 2.0


def test_kl_schedules():
    assert kl_weight("constant", 123, 0.5, 0) == 0.5
    assert kl_weight("linear", 0, 2.0, 100) == 0.0
    assert kl_weight("linear", 25, 2.0, 100) == 0.5
    assert kl_weight("linear", 100, 2.0, 100) == 2.0
    assert kl_weight("linear", 10_000, 2.0, 100) == 2.0
    # cyclical: period 200, ramp over the first 100 steps, hold for the next 100
    assert kl_weight("cyclical", 50, 1.0, 100) == 0.5
    assert kl_weight("cyclical", 150, 1.0, 100) == 1.0
    assert kl_weight("cyclical", 200, 1.0, 100) == 0.0
    assert kl_weight("cyclical", 250, 1.0, 100) == 0.5


def test_total_is_the_weighted_sum_of_the_terms():
    g = torch.Generator().manual_seed(3)
    x, logits = torch.rand(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    mu, logvar = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    t = vae_terms(x, logits, mu, logvar, likelihood="gaussian", loss=LossWeights(recon_weight=0.5, beta=3.0, variability_weight=2.0))
    assert set(t) == {"loss", "recon", "kl", "beta", "variability"}
    expected = 0.5 * recon_gaussian(logits, x).mean() + 3.0 * gaussian_kl(mu, logvar) + 2.0 * variability_gap(x, torch.sigmoid(logits))
    assert torch.allclose(t["loss"], expected)
    assert t["beta"].item() == 3.0
    ae = vae_terms(x, logits, mu, None, likelihood="bernoulli", loss=LossWeights(recon_weight=1.0, beta=1.0, variability_weight=0.0))
    assert set(ae) == {"loss", "recon"} and torch.equal(ae["loss"], ae["recon"])


# ---------------------------------------------------------------------------------------------
# Annealed capacity and DIP-VAE


def test_dip_terms_are_numpy_s_covariance_against_the_identity():
    import numpy as np

    g = torch.Generator().manual_seed(1)
    mu = torch.randn(50, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(50, 4, generator=g, dtype=torch.float64)
    for second in (0.0, 1.0):  # DIP-I, DIP-II
        cov = np.cov(mu.numpy(), rowvar=False, bias=True) + second * np.diag(np.exp(logvar.numpy()).mean(0))
        off, diag = dip_terms(mu, logvar, second)
        assert off.item() == pytest.approx((cov**2).sum() - (np.diag(cov) ** 2).sum(), rel=1e-12)
        assert diag.item() == pytest.approx(((np.diag(cov) - 1) ** 2).sum(), rel=1e-12)
    white = torch.randn(200_000, 3, generator=g, dtype=torch.float64)  # Cov = I: both terms about 0
    assert max(t.item() for t in dip_terms(white, torch.zeros_like(white), 0.0)) < 1e-3
    assert dip_terms(torch.zeros(200_000, 3, dtype=torch.float64), torch.zeros(200_000, 3, dtype=torch.float64), 1.0)[1].item() == 0.0  # DIP-II: σ² = 1 alone is the identity


def test_capacity_rises_linearly_then_holds():
    assert [capacity(25.0, s, 100) for s in (0, 40, 100, 1000)] == [0.0, 10.0, 25.0, 25.0]
    assert capacity(0.0, 50, 0) == 0.0


def test_the_capacity_target_and_dip_enter_the_total_as_weighted():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 1, 4, 4, generator=g)
    logits = torch.randn(6, 1, 4, 4, generator=g)
    mu, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    plain = vae_terms(x, logits, mu, logvar, likelihood="gaussian", loss=LossWeights(beta=2.0))
    for c in (0.5, 100.0):  # below and above the KL
        t = vae_terms(x, logits, mu, logvar, likelihood="gaussian", loss=LossWeights(beta=2.0, capacity_on=1.0, capacity=c))
        assert t["loss"].item() == pytest.approx(plain["recon"].item() + 2.0 * abs(plain["kl"].item() - c), rel=1e-6)
        assert t["kl"].item() == plain["kl"].item() and t["capacity"].item() == c
    t = vae_terms(x, logits, mu, logvar, likelihood="gaussian", loss=LossWeights(beta=2.0, dip_offdiag=3.0, dip_diag=7.0, dip_ii=1.0))
    off, diag = dip_terms(mu, logvar, 1.0)
    assert t["dip_offdiag"].item() == pytest.approx(off.item()) and t["dip_diag"].item() == pytest.approx(diag.item())
    assert t["loss"].item() == pytest.approx(plain["loss"].item() + 3.0 * off.item() + 7.0 * diag.item(), rel=1e-6)
    assert "capacity" not in plain and "dip_offdiag" not in plain  # off: not computed
    tensors = LossWeights(*(torch.tensor(float(v)) for v in LossWeights(beta=2.0)))  # a group member's weights, all off
    t = vae_terms(x, logits, mu, logvar, likelihood="gaussian", loss=tensors)
    assert t["loss"].item() == pytest.approx(plain["loss"].item(), rel=1e-6) and {"capacity", "dip_offdiag"} <= set(t)


def test_loss_weights_read_the_capacity_and_dip_settings():
    w = loss_weights(LossConfig(beta=4.0, capacity_max=20.0, capacity_steps=1000, dip="ii", dip_offdiag=5.0, dip_diag=5.0), 250)
    assert (w.capacity_on, w.capacity, w.dip_offdiag, w.dip_diag, w.dip_ii) == (1.0, 5.0, 5.0, 5.0, 1.0)
    w = loss_weights(LossConfig(dip="i"), 0)
    assert (w.capacity_on, w.dip_offdiag, w.dip_diag, w.dip_ii) == (0.0, 10.0, 100.0, 0.0)
    assert loss_weights(LossConfig(), 0)[3:8] == (0.0, 0.0, 0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# β-TCVAE: the KL term's decomposition


def test_the_minibatch_weights_are_chen_et_al_s_and_each_row_sums_to_one():
    w = log_weights(5, 100.0, 0.0).exp()  # mws: 1/N own, (N − 1)/(N(B − 1)) others
    assert torch.allclose(torch.diagonal(w), torch.full((5,), 0.01)) and w[0, 3].item() == pytest.approx(99 / 400)
    s = log_weights(5, 100.0, 1.0).exp()  # mss, M = 4: 1/N own, (N − M)/(NM) the next, 1/M the rest
    assert s[2, 2].item() == pytest.approx(0.01) and s[2, 3].item() == pytest.approx(96 / 400) and s[2, 0].item() == pytest.approx(0.25)
    assert s[4, 0].item() == pytest.approx(96 / 400)  # the next image, cyclically
    for m in (w, s, log_weights(5, 0.0, 0.0).exp()):
        assert torch.allclose(m.sum(1), torch.ones(5))
    assert torch.allclose(log_weights(5, 0.0, 0.0).exp(), torch.full((5, 5), 0.2))  # N unknown: the batch's own mixture


def brute_force_decomposition(z, mu, logvar, n, mss):
    """Chen et al.'s estimates by explicit loops over images i, j and dims d (float64)."""
    import math

    b, dims = len(z), len(z[0])
    w = log_weights(b, n, mss).double().exp().tolist()

    def q(i, j, d):  # q(z_i,d | x_j)
        var = math.exp(logvar[j][d])
        return math.exp(-((z[i][d] - mu[j][d]) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)

    mi = tc = dwkl = 0.0
    for i in range(b):
        joint = math.log(sum(w[i][j] * math.prod(q(i, j, d) for d in range(dims)) for j in range(b)))
        marginals = sum(math.log(sum(w[i][j] * q(i, j, d) for j in range(b))) for d in range(dims))
        own = sum(math.log(q(i, i, d)) for d in range(dims))
        prior = sum(-0.5 * (math.log(2 * math.pi) + z[i][d] ** 2) for d in range(dims))
        mi, tc, dwkl = mi + own - joint, tc + joint - marginals, dwkl + marginals - prior
    return mi / b, tc / b, dwkl / b


@pytest.mark.parametrize("mss", [0.0, 1.0])
def test_the_kl_decomposition_is_its_definition_computed_by_hand(mss):
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(6, 3, generator=g, dtype=torch.float64), 0.5 * torch.randn(6, 3, generator=g, dtype=torch.float64)
    z = draw_latent(mu, logvar, torch.randn(6, 3, generator=g, dtype=torch.float64))
    got = kl_decomposition(z, mu, logvar, 50.0, mss)
    want = brute_force_decomposition(z.tolist(), mu.tolist(), logvar.tolist(), 50.0, mss)
    assert [got[k].item() for k in ("mi", "tc", "dwkl")] == pytest.approx(want, rel=1e-5)


def test_the_total_correlation_sees_dependence_and_separated_codes_score_their_closed_forms():
    import math

    g = torch.Generator().manual_seed(4)
    b = 1000
    u = torch.randn(b, 2, generator=g, dtype=torch.float64)
    logvar = torch.full((b, 2), math.log(0.3**2), dtype=torch.float64)
    noise = torch.randn(b, 2, generator=g, dtype=torch.float64)
    independent = kl_decomposition(draw_latent(u, logvar, noise), u, logvar, b)
    shared = torch.stack([u[:, 0], u[:, 0]], 1)  # both dims code the same thing
    dependent = kl_decomposition(draw_latent(shared, logvar, noise), shared, logvar, b)
    # the aggregate is Gaussian with correlation ρ = 1 / (1 + 0.3²) between the dims: its TC is
    # −½ log(1 − ρ²) = 0.92 nats; independent dims have none
    assert abs(independent["tc"].item()) < 0.05
    assert dependent["tc"].item() == pytest.approx(-0.5 * math.log(1 - (1 / 1.09) ** 2), abs=0.05)
    # codes far apart with tiny variances: q(z_i) is its own image's posterior alone, so the
    # index-code MI is log N (its maximum) and the TC (L − 1)·log N
    apart = torch.arange(8, dtype=torch.float64)[:, None].repeat(1, 3) * 100.0
    tiny = torch.full((8, 3), -20.0, dtype=torch.float64)
    t = kl_decomposition(apart, apart, tiny, 8.0)
    assert t["mi"].item() == pytest.approx(math.log(8)) and t["tc"].item() == pytest.approx(2 * math.log(8))
    # with N = B the weights are the batch's own mixture, and the three terms add up to the
    # Monte Carlo KL, E[log q(z|x) − log p(z)] at the same draws
    z = draw_latent(u, logvar, noise)
    terms = kl_decomposition(z, u, logvar, b)
    mc = (Normal(u, (0.5 * logvar).exp()).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    assert sum(terms.values()).item() == pytest.approx(mc.item(), rel=1e-9)


def test_the_tc_weight_adds_the_tc_and_logs_the_decomposition():
    g = torch.Generator().manual_seed(5)
    x, logits = torch.rand(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    mu, logvar = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    z = draw_latent(mu, logvar, torch.randn(8, 3, generator=g))
    plain = vae_terms(x, logits, mu, logvar, likelihood="gaussian", loss=LossWeights(), z=z)
    t = vae_terms(x, logits, mu, logvar, likelihood="gaussian", loss=LossWeights(tc_weight=4.0, dataset_size=1000.0), z=z)
    want = kl_decomposition(z, mu, logvar, 1000.0)
    assert {k: t[k].item() for k in want} == pytest.approx({k: v.item() for k, v in want.items()})
    assert t["loss"].item() == pytest.approx(plain["loss"].item() + 4.0 * want["tc"].item(), rel=1e-6)
    assert "tc" not in plain
    w = loss_weights(LossConfig(tc_weight=4.0, tc_estimator="mss"), 0, 5000)
    assert (w.tc_weight, w.dataset_size, w.tc_mss) == (4.0, 5000.0, 1.0)

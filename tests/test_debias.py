"""Debiasing with latent distributions (`train.debias`, vaelab.debias): the weights against a
hand computation and a NumPy-histogram brute force, the seeded draws, a training run on a 95/5
two-pattern set whose rare pattern gets the weight, the `rare` sweep metric's split, the `debias`
preset on tiny settings, and bad input.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error

from vaelab.checkpoint import load_extra
from vaelab.config import load_config
from vaelab.data import Dataset, load_data
from vaelab.data.sprites import factor_pmfs, rare_mask
from vaelab.debias import BINS, debias_weights, debiased_order
from vaelab.train import latent_weights, train
from vaelab.vectorized import group_key


def test_weights_of_a_90_10_split_are_the_inverse_smoothed_frequencies():
    mu = torch.cat([torch.zeros(90, 1), torch.ones(10, 1)])  # bins 0 and 9 of [0, 1]
    for alpha in (0.01, 0.5, 100.0):
        w = debias_weights(mu, alpha)
        assert w.sum().item() == pytest.approx(1.0, abs=1e-6)
        ratio = w[-1] / w[0]
        assert ratio.item() == pytest.approx((0.9 + alpha) / (0.1 + alpha), rel=1e-5)  # rare over common
    assert (debias_weights(mu, 1e6)[-1] / debias_weights(mu, 1e6)[0]).item() == pytest.approx(1.0, abs=1e-5)  # α → ∞: uniform


def test_weights_are_the_product_over_dims_like_numpy_histograms():
    g = torch.Generator().manual_seed(0)
    mu = torch.cat([torch.randn(300, 3, generator=g), 4 + torch.randn(20, 3, generator=g)])
    alpha = 0.05
    w = debias_weights(mu, alpha)
    brute = np.ones(len(mu))
    for d in range(3):
        m = mu[:, d].double().numpy()
        counts, edges = np.histogram(m, bins=BINS, range=(m.min(), m.max()))
        idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, BINS - 1)
        brute /= counts[idx] / len(m) + alpha
    assert np.allclose(w.numpy(), brute / brute.sum(), rtol=1e-4)
    assert w[300:].mean() > 5 * w[:300].mean()  # the small far cluster is favoured


def test_draws_follow_the_weights_and_are_seeded():
    w = torch.tensor([0.7, 0.2, 0.1, 0.0])
    order = debiased_order(w, seed=3, epoch=1)
    assert torch.equal(order, debiased_order(w, seed=3, epoch=1)) and not torch.equal(order, debiased_order(w, seed=3, epoch=2))
    many = torch.cat([debiased_order(w, 0, e) for e in range(3000)])  # 12,000 draws
    freq = torch.bincount(many, minlength=4).double() / len(many)
    assert torch.allclose(freq, w.double(), atol=0.015) and freq[3] == 0


def two_patterns(n=400, rare=0.05) -> Dataset:
    g = torch.Generator().manual_seed(0)
    a, b = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)
    a[:, :, :4], b[:, :, 4:] = 1.0, 1.0  # left half lit, right half lit
    is_rare = torch.arange(n) < round(rare * n)
    images = torch.where(is_rare[:, None, None, None], b, a) + 0.02 * torch.randn(n, 1, 8, 8, generator=g)
    return Dataset(images.clamp(0, 1), is_rare.long(), name="two-patterns")


def test_training_with_debias_draws_the_rare_pattern_far_more_often(tmp_path):
    data = two_patterns()
    cfg = load_config(overrides=["model.name=fc1", "model.latent_dim=2", "train.steps=120", "train.batch_size=20", "train.debias=true", "train.checkpoint_every=100"])
    assert group_key(cfg) is None  # trains alone, never in a vmap group
    run = train(cfg, data, out=tmp_path / "run", quiet=True, finish=False)
    w = latent_weights(run.model, data.images, None, cfg.train.debias_smoothing)
    rare = data.labels == 1
    assert w[rare].mean() > 5 * w[~rare].mean()
    stored = load_extra(tmp_path / "run")  # the last epoch's weights, as the loop drew by them
    drawn = debiased_order(stored["debias_weights"], cfg.train.seed, int(stored["debias_epoch"]))
    assert rare[drawn].float().mean() > 0.25  # 5% of the data, a quarter or more of the draws
    ess = 1.0 / stored["debias_weights"].double().pow(2).sum().item()  # the effective sample size, logged per step
    assert run.history[-1]["debias_ess"] == pytest.approx(ess, rel=1e-5) and 1 <= ess < len(data)


def test_rare_mask_is_the_values_rarer_than_uniform():
    p = load_config(overrides=["data.name=sprites", "data.skew_factor=pos_x", "data.skew=0.02"]).data.params
    pmf = factor_pmfs(p)[3]
    factors = torch.zeros(32, 5)
    factors[:, 3] = torch.arange(32)
    mask = rare_mask(p, factors)
    assert mask.tolist() == [bool(v < 1 / 32) for v in pmf]
    assert not mask[0] and mask[31] and mask.sum() == 21  # x >= 11: w_k = 0.02^(k/31) below its mean


def test_rare_metric_and_the_debias_preset_on_tiny_settings(tmp_path):
    d = tmp_path / "debias"
    r = cli(
        "sweep", "--preset", "debias", "--set", "data.n=256", "--set", "train.steps=6", "--set", "train.batch_size=32",
        "--set", "model.channels=[4,4]", "--set", "sweep.test_n=64", "--set", "sweep.views=false", "--out", d, "--quiet",
    )  # fmt: skip
    assert r.rc == 0, r.err
    rows = list(csv.DictReader((d / "sweep.csv").open()))
    assert [row["train.debias"] for row in rows] == ["false", "true"]
    for row in rows:
        for k in ("rare_recall", "rare_coverage"):
            assert 0 <= float(row[k]) <= 1
        assert float(row["rare_recon_mse"]) > 0 and float(row["common_recon_mse"]) > 0
    test = load_data(load_config(overrides=["data.name=sprites", "data.n=64", "data.seed=1"]).data)
    assert test.factors is not None  # the metric's unskewed test set has the factors it splits by


def test_rare_metric_needs_a_skewed_dataset(tmp_path):
    user_error(cli("sweep", "--grid", "loss.beta=1,2", "--set", 'sweep.metrics=["rare"]', "--out", tmp_path / "s"), "rare", "skew")


def test_bad_smoothing(tmp_path):
    user_error(cli("train", "--set", "train.debias=true", "--set", "train.debias_smoothing=0", "--out", tmp_path / "r"), "train.debias_smoothing")

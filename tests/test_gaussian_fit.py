"""The exact baseline `gaussian-fit`: its fit is the maximum-likelihood Gaussian, its draws are
that Gaussian's, refitting shrinks the variance as the closed form says, and it runs through a
chain with its model columns left empty and the closed form drawn in the report."""

from __future__ import annotations

import math

import pytest
import torch
from clihelp import cli, user_error

from vaelab.config import load_config
from vaelab.experiments.chain_report import sampling_error
from vaelab.experiments.chain_table import read_table
from vaelab.models import build_model
from vaelab.report import read_config
from vaelab.sample import reconstruct, sample


def fitted(x: torch.Tensor, jitter: float = 0.0):
    model = build_model(load_config(overrides={"model.name": "gaussian-fit", "model.jitter": jitter}), tuple(x.shape[1:]))
    model.after_training(x, seed=0)
    return model


def test_the_fit_is_the_maximum_likelihood_gaussian_and_its_draws_are_that_gaussians():
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.4, 0.0, 0.0], [0.0, 0.3, 0.2, 0.0], [0.1, 0.0, 0.0, 0.6]], dtype=torch.float64)
    x = (torch.randn(3000, 4, generator=g, dtype=torch.float64) @ mix.T + 0.5).float().view(-1, 1, 2, 2)
    model = fitted(x)
    flat = x.flatten(1).double()
    ml = torch.cov(flat.T, correction=0)  # the maximum-likelihood covariance: divided by M
    assert torch.allclose(model.mean, flat.mean(0), atol=1e-6) and torch.allclose(model.tril @ model.tril.T, ml, atol=1e-6)
    assert torch.allclose(reconstruct(model, x[:50]), x[:50], atol=1e-5)  # the code is invertible
    drawn = sample(model, 40_000, seed=1).flatten(1).double()
    assert torch.allclose(drawn.mean(0), flat.mean(0), atol=0.02) and torch.allclose(torch.cov(drawn.T), ml, atol=0.02)
    wide = sample(model, 40_000, seed=1, delta=1.0).flatten(1).double()
    assert torch.allclose(torch.cov(wide.T), 4 * ml, atol=0.08)  # δ widens it as it widens N(0, I)


def test_refitting_m_draws_shrinks_the_variance_by_m_minus_one_over_m_per_generation():
    """E[tr Sₙ] = tr S₀ ((M − 1)/M)ⁿ: 400 chains of 8 generations of M = 8 draws of a 4-pixel Gaussian."""
    m, generations, seeds = 8, 8, 400
    x0 = torch.randn(m, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    model = fitted(x0)
    trace0 = float((model.tril @ model.tril.T).trace())
    traces = []
    for seed in range(seeds):
        model.after_training(x0, seed=0)  # every chain starts from the fit to the same M images
        for g in range(generations):
            model.after_training(sample(model, m, seed=1000 * seed + g), seed=0)
        traces.append(float((model.tril @ model.tril.T).trace()))
    traces = torch.tensor(traces, dtype=torch.float64)
    want = trace0 * ((m - 1) / m) ** generations
    error = traces.std() / math.sqrt(seeds)
    assert abs(traces.mean() - want) < 4 * error, (float(traces.mean()), want, float(error))
    assert 4 * error < 0.25 * (trace0 - want)  # the shrinkage is far larger than the error


def test_a_gaussian_fit_chain_leaves_the_model_columns_empty_and_draws_the_closed_form(tmp_path):
    sets = ["data.n=120", "chain.holdout=20", "chain.metric_samples=60", "chain.generations=3", "model.name=gaussian-fit", "train.steps=2"]
    r = cli("chain", "--preset", "chain-conv", *(a for s in sets for a in ("--set", s)), "--out", tmp_path / "g", "--quiet")
    assert r.rc == 0, r.err
    rows = read_table(tmp_path / "g" / "chain.csv")
    assert [r["generation"] for r in rows] == [0, 1, 2, 3]
    assert all(math.isnan(r["neg_elbo"]) and math.isnan(r["active_units"]) and math.isnan(r["nll_iw"]) for r in rows)
    assert all(0 <= r["memorised"] <= 1 for r in rows[1:]) and all(r["variability"] > 0 for r in rows)
    gens, values, label = sampling_error(read_config(tmp_path / "g" / "config.toml"), rows)
    assert list(gens) == [1, 2, 3] and values[0] == rows[1]["variability"]
    assert values[2] == pytest.approx(rows[1]["variability"] * (119 / 120)) and "M = 120" in label
    assert "log_det" in (tmp_path / "g" / "seed-0" / "gen-000" / "vae" / "model.safetensors").read_bytes()[:2000].decode(errors="ignore")


@pytest.mark.parametrize(
    "sets, needles",
    [
        (["model.latent_dim=4"], ["model.latent_dim", "gaussian-fit does not use it"]),
        (["model.likelihood=bernoulli"], ["model.likelihood", "gaussian-fit"]),
        (["loss.beta=2"], ["loss.beta", "gaussian-fit does not use it"]),
        (["model.jitter=-1"], ["model.jitter", ">= 0"]),
    ],
)
def test_settings_gaussian_fit_would_ignore_are_refused(tmp_path, sets, needles):
    sets = ["data.n=64", "model.name=gaussian-fit", "train.steps=2", *sets]
    user_error(cli("train", *(a for s in sets for a in ("--set", s)), "--out", tmp_path / "r", "--quiet"), *needles)
    assert not (tmp_path / "r").exists()


def test_evaluate_refuses_the_elbo_metrics_of_a_fitted_gaussian(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--set", "data.n=64", "--set", "model.name=gaussian-fit", "--set", "train.steps=2", "--out", run, "--quiet").rc == 0
    user_error(cli("evaluate", run, "--metrics", "neg_elbo"), "--metrics neg_elbo", "fitted Gaussian")

import math

import pytest
import torch
from clihelp import cli, user_error
from torch import nn

from vaelab.checkpoint import load_run
from vaelab.models import VAE
from vaelab.runfolder import read_manifest
from vaelab.sample import PRIOR_FILE, AggregatePrior, denoise_images, reconstruct, sample


class Identity(nn.Module):
    """decode(z) = z as a (1, 1, L) image: sampling's z becomes visible."""

    latent_dim = 4000

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    prior_sample = VAE.prior_sample

    def decode(self, z, labels=None):
        return z[:, None, None, :] + self.w

    def forward(self, x, labels=None):
        return x * 2 + self.w


@pytest.mark.parametrize("delta", [0.0, 0.4, 0.7])
def test_prior_is_widened_by_delta(delta):
    z = sample(Identity(), 50, delta=delta, seed=1)
    assert z.shape == (50, 1, 1, 4000)
    assert z.std().item() == pytest.approx(1 + delta, rel=0.02)
    assert z.mean().item() == pytest.approx(0, abs=0.02)


def test_sampling_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = sample(Identity(), 5, seed=3), sample(Identity(), 5, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, sample(Identity(), 5, seed=4))
    assert torch.equal(state, torch.get_rng_state())


def test_denoise_zeroes_pixels_below_threshold_times_the_set_max():
    x = torch.tensor([[[[0.1, 0.5]]], [[[0.8, 0.39]]]])  # max 0.8; threshold 0.5 → 0.4
    out = denoise_images(x, 0.5)
    assert torch.equal(out.flatten(), torch.tensor([0.0, 0.5, 0.8, 0.0]))
    big = sample(Identity(), 20, denoise=0.5, seed=0)
    raw = sample(Identity(), 20, seed=0)
    keep = raw >= 0.5 * raw.max()
    assert torch.equal(big[keep], raw[keep]) and (big[~keep] == 0).all()


def test_reconstruct_runs_the_model_in_eval_mode_and_restores_training():
    m = Identity()
    m.train()
    x = torch.rand(7, 1, 2, 2)
    assert torch.equal(reconstruct(m, x, batch_size=3), x * 2)
    assert m.training


# ---------------------------------------------------------------------------------------------
# The aggregate prior (sample.prior = aggregate).

WEIGHTS, MEANS = torch.tensor([0.3, 0.7], dtype=torch.float64), torch.tensor([[-3.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
TRILS = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.4, 0.0], [0.0, 1.5]]], dtype=torch.float64)


def known_mixture(n: int, seed: int) -> torch.Tensor:
    """n draws of the mixture (WEIGHTS, MEANS, TRILS), written out independently of AggregatePrior."""
    g = torch.Generator().manual_seed(seed)
    k = (torch.rand(n, generator=g, dtype=torch.float64) > WEIGHTS[0]).long()
    return MEANS[k] + (TRILS[k] @ torch.randn(n, 2, 1, generator=g, dtype=torch.float64)).squeeze(-1)


def test_a_mixture_fitted_to_a_known_mixtures_draws_recovers_it_and_reproduces_its_samples():
    prior = AggregatePrior.fit(known_mixture(20_000, seed=0), 2, seed=0)
    order = prior.means[:, 0].argsort()  # the component left of 0 first, as in MEANS
    assert prior.weights[order] == pytest.approx(WEIGHTS, abs=0.01)
    assert torch.allclose(prior.means[order], MEANS, atol=0.05)
    assert torch.allclose(prior.scale_tril[order] @ prior.scale_tril[order].mT, TRILS @ TRILS.mT, atol=0.08)
    drawn, truth = prior.sample(20_000, torch.Generator().manual_seed(1)).double(), known_mixture(20_000, seed=2)
    for part in (lambda z: z[:, 0] < 0, lambda z: z[:, 0] >= 0):  # each component's draws, told apart by x
        a, b = drawn[part(drawn)], truth[part(truth)]
        assert len(a) / len(drawn) == pytest.approx(len(b) / len(truth), abs=0.015)
        assert torch.allclose(a.mean(0), b.mean(0), atol=0.05) and torch.allclose(torch.cov(a.T), torch.cov(b.T), atol=0.1)


def test_delta_widens_each_component_and_a_seed_fixes_the_draws():
    prior = AggregatePrior(WEIGHTS, MEANS, TRILS)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    plain, wide = prior.sample(4000, g()), prior.sample(4000, g(), delta=1.0)
    assert torch.equal(plain, prior.sample(4000, g()))
    centre = (2 * plain - wide).double()  # wide − m = 2 (plain − m) when both drew component m: then this is m
    nearest = torch.cdist(centre, MEANS).min(1).values
    assert nearest.max() < 1e-4  # every draw kept its component; only its spread doubled


def test_a_run_trained_with_the_aggregate_prior_keeps_it_and_samples_from_it(tmp_path):
    run = tmp_path / "agg"
    sets = ["data.name=points", "data.n=300", "model.name=fc1", "model.latent_dim=3", "train.steps=30", "sample.n=16", "sample.prior=aggregate", "sample.prior_components=2"]
    assert cli("train", *(a for s in sets for a in ("--set", s)), "--out", run, "--quiet").rc == 0
    assert (run / PRIOR_FILE).is_file() and PRIOR_FILE in read_manifest(run)  # --force clears it with the run
    cfg, model = load_run(run)
    assert cfg.sample.prior == "aggregate" and model.aggregate_prior.means.shape == (2, 3)
    assert math.isclose(float(model.aggregate_prior.weights.sum()), 1.0)
    assert cli("sample", run, "--n", "20", "--out", tmp_path / "a.npz").rc == 0
    assert cli("sample", run, "--n", "20", "--set", "sample.prior=standard", "--out", tmp_path / "s.npz").rc == 0
    import numpy as np

    a, s = np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "s.npz")["images"]
    want = sample(model, 20, prior="aggregate").numpy()  # the CLI's draw is the library's
    assert np.array_equal(a, want) and not np.array_equal(a, s)


@pytest.mark.parametrize(
    "sets, needles",
    [
        (["sample.prior=aggregate", "model.name=vqvae"], ["sample.prior", "vqvae"]),
        (["sample.prior=aggregate", "sample.prior_components=0"], ["sample.prior_components", ">= 1"]),
        (["sample.prior_components=4"], ["sample.prior_components", "only with sample.prior = aggregate"]),
        (["sample.prior=aggregate", "sample.prior_components=500", "data.n=64"], ["sample.prior_components = 500", "64 training images"]),
    ],
)
def test_bad_aggregate_prior_settings_are_one_line(tmp_path, sets, needles):
    sets = ["data.name=points", "data.n=64", "model.name=fc1", "train.steps=2", *sets]
    user_error(cli("train", *(a for s in sets for a in ("--set", s)), "--out", tmp_path / "r", "--quiet"), *needles)

"""The VQ-VAE (`vqvae`): quantisation against a brute-force nearest neighbour, the EMA codebook
converging to the mean of its vectors, dead-code restarts, the straight-through gradient, training
on the bundled digits (loss falls, codebook usage above a floor), the code prior (better than a
uniform guess, its samples' code histogram near the data's), the checkpoint round trip (the same
samples after loading), and its use by `vaelab sample`, chains and sweeps; bad input.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error

from vaelab.checkpoint import load_run
from vaelab.config import load_config
from vaelab.losses import loss_weights
from vaelab.models import build_model
from vaelab.models.vqvae import DEAD_FRACTION, EMA_DECAY, Quantizer
from vaelab.runfolder import load_tensors
from vaelab.sample import sample
from vaelab.train import train
from vaelab.vectorized import group_key

K = 16
DIGITS = ["data.name=digits", "model.name=vqvae", "model.latent_dim=8", f"model.codebook_size={K}", "model.channels=[16, 32]"]
TRAIN = [*DIGITS, "train.steps=600", "train.batch_size=64", "model.prior_steps=400", "model.likelihood=bernoulli"]


def test_quantizer_picks_the_nearest_code_like_brute_force():
    q = Quantizer(7, 3, ema=False).eval()
    with torch.no_grad():
        q.codebook.copy_(torch.randn(7, 3))
    x = torch.randn(50, 3)
    z_q, idx = q(x)
    brute = torch.tensor([min(range(7), key=lambda k: sum((a - b) ** 2 for a, b in zip(v.tolist(), q.codebook[k].tolist()))) for v in x])
    assert torch.equal(idx, brute)
    assert torch.equal(z_q, q.codebook[brute])


def test_ema_codebook_converges_to_the_mean_of_its_vectors():
    q = Quantizer(2, 2, ema=True).train()
    q(torch.zeros(4, 2))  # the first batch only initialises the codebook
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        q.ema_sum.copy_(q.codebook)
    near0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    near10 = torch.tensor([[9.0, 9.0], [11.0, 12.0]])
    x = torch.cat([near0, near10])
    q(x)
    # one step of the update, by hand: count = d·1 + (1 − d)·n, sum = d·old + (1 − d)·Σ, smoothed counts
    d = EMA_DECAY
    count = torch.tensor([d + (1 - d) * 3, d + (1 - d) * 2])
    sums = torch.stack([d * torch.tensor([0.0, 0.0]) + (1 - d) * near0.sum(0), d * torch.tensor([10.0, 10.0]) + (1 - d) * near10.sum(0)])
    smoothed = (count + 1e-5) / (count.sum() + 2e-5) * count.sum()
    assert torch.allclose(q.codebook, sums / smoothed[:, None], atol=1e-5)
    for _ in range(3000):
        q(x)
    assert torch.allclose(q.codebook[0], near0.mean(0), atol=1e-3)
    assert torch.allclose(q.codebook[1], near10.mean(0), atol=1e-3)


def test_a_dead_code_restarts_at_an_encoder_output():
    q = Quantizer(4, 3, ema=False).train()
    x = torch.randn(30, 3)
    q(x)  # initialisation from the batch
    with torch.no_grad():
        q.codebook[2] = 1000.0  # never chosen again
    steps = math.ceil(math.log(DEAD_FRACTION) / math.log(EMA_DECAY)) + 1  # until its usage average falls below the floor
    for _ in range(steps):
        q(x)
    assert any(torch.equal(q.codebook[2], v) for v in x)
    assert q.usage[2] > DEAD_FRACTION / 4  # alive again


def test_a_loaded_codebook_is_initialised_from_data_once_only():
    """`ready` is read once per load (not every step, which would be a GPU sync): a codebook loaded
    initialised is not re-initialised, and one loaded fresh is."""
    trained = Quantizer(4, 3, ema=True).train()
    trained(torch.randn(30, 3))
    for state, reinitialised in ((trained.state_dict(), False), (Quantizer(4, 3, ema=True).state_dict(), True)):
        q = Quantizer(4, 3, ema=True).train()
        q(torch.randn(30, 3))  # initialised here first, so only the load can make it forget
        q.load_state_dict(state)
        before = q.codebook.clone()
        x = torch.randn(30, 3) + 50.0
        q(x)
        picked = all(any(torch.equal(c, v) for v in x) for c in q.codebook)  # every code one of x's vectors
        assert picked == reinitialised and not torch.equal(q.codebook, before)


def test_gradient_passes_the_quantisation_straight_through():
    cfg = load_config(overrides=DIGITS)
    model = build_model(cfg, (1, 8, 8)).train()
    model.loss(torch.rand(16, 1, 8, 8), 0, loss_weights(cfg.loss, 0))  # initialise the codebook
    terms = model.loss(torch.rand(16, 1, 8, 8), 1, loss_weights(cfg.loss, 1))
    assert set(terms) == {"loss", "recon", "commitment", "codebook", "perplexity"}
    terms["loss"].backward()
    first = model.encoder[0].weight.grad
    assert first is not None and first.abs().sum() > 0  # the encoder learns through the decoder's loss
    assert model.quantizer.codebook.grad.abs().sum() > 0  # and the codebook through its own term


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(load_config(overrides=TRAIN), out=tmp_path_factory.mktemp("vq") / "run", quiet=True)


def test_vqvae_trains_and_uses_its_codebook(run):
    losses = [r["recon"] for r in run.history]
    assert sum(losses[-50:]) / 50 < 0.6 * sum(losses[:50]) / 50
    perplexity = sum(r["perplexity"] for r in run.history[-50:]) / 50
    assert perplexity > K / 4, perplexity  # the floor: dead codes restart, so a quarter of the codebook's worth is in use


def test_the_code_priors_final_loss_is_kept_in_the_checkpoint_and_shown_in_the_report(run):
    _, meta = load_tensors(run.dir / "model.safetensors")
    nll = float(meta["prior_nll"])
    assert 0 < nll < math.log(K)  # nats per code, better than a uniform guess
    assert "<th>after training: prior_nll</th>" in (run.dir / "report.html").read_text()


def test_the_code_prior_learns_the_code_distribution(run):
    # refit on a copy: the shared run's prior stays the one in its checkpoint (a GPU need not refit
    # it bitwise the same), which test_samples_are_images_and_survive_the_checkpoint relies on
    model = copy.deepcopy(run.model)
    device = next(model.parameters()).device
    with torch.no_grad():
        codes = model.codes(run.data.images.to(device)).cpu()  # (N, 4)
    figures = model.after_training(run.data.images, seed=0)
    assert figures["prior_nll"] < math.log(K) - 0.5  # better than a uniform guess
    drawn = model.prior.sample(4000, torch.Generator().manual_seed(0)).cpu()
    hist = lambda c: torch.bincount(c.flatten(), minlength=K).double() / c.numel()  # noqa: E731
    assert 0.5 * (hist(drawn) - hist(codes)).abs().sum() < 0.1  # total variation of the code histograms


def test_samples_are_images_and_survive_the_checkpoint(run, tmp_path):
    a = sample(run.model, 20, seed=3)
    assert a.shape == (20, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, sample(run.model, 20, seed=3))  # seeded
    _, loaded = load_run(run.dir)
    assert next(loaded.parameters()).device == next(run.model.parameters()).device  # read on the device it trained on
    assert torch.equal(sample(loaded, 20, seed=3), a)  # the prior is in the checkpoint
    r = cli("sample", run.dir, "--n", 10, "--out", tmp_path / "s.png")
    assert r.rc == 0, r.err


def test_vqvae_trains_alone_in_a_sweep_and_runs_a_chain(tmp_path):
    from vaelab.experiments.chain import run_chain
    from vaelab.experiments.sweep import run_sweep

    small = [*DIGITS, "train.steps=50", "model.prior_steps=20", "data.n=200"]
    cfg = load_config(overrides=small)
    assert group_key(cfg) is None  # buffers change in place while training: no vmap
    rows = run_sweep(load_config(overrides=[*small, 'sweep.metrics=["recon_mse"]']), tmp_path / "sweep", grid=["model.commitment=0.25,1"], quiet=True)
    assert len(rows) == 2 and all(0 < r["recon_mse"] < 1 for r in rows)
    rows = run_chain(load_config(overrides=[*small, "chain.generations=2", "chain.holdout=50", "chain.metric_samples=50"]), tmp_path / "chain", quiet=True)
    assert [r["generation"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["neg_elbo"]) for r in rows[1:])


@pytest.mark.parametrize("bad,needle", [("model.codebook_size=1", "model.codebook_size"), ("model.commitment=-1", "model.commitment"), ("model.prior_steps=-5", "model.prior_steps")])
def test_bad_vq_settings(bad, needle, tmp_path):
    user_error(cli("train", "--set", "model.name=vqvae", "--set", bad, "--out", tmp_path / "r"), needle)


def test_images_too_small_for_two_halvings(tmp_path):
    import numpy as np

    np.savez(tmp_path / "tiny.npz", images=np.random.rand(20, 3, 3).astype(np.float32))
    user_error(cli("train", "--set", "model.name=vqvae", "--set", "data.name=array", "--set", f"data.path={tmp_path / 'tiny.npz'}", "--out", tmp_path / "r"), "vqvae", "3x3")


import dataclasses

import pytest
import torch
from torch.distributions import Normal

from vaelab.config import ModelConfig, load_config
from vaelab.errors import UserError
from vaelab.losses import LossWeights, loss_weights
from vaelab.models import MODELS, build_model, count_parameters
from vaelab.train import train

MODEL_NAMES = sorted(name for name, spec in MODELS.items() if not spec.fitted)
"""the models trained by gradient steps (gaussian-fit is fitted in closed form: tests/test_gaussian_fit.py)"""


def cfg_for(name, likelihood="gaussian", **extra):
    return load_config(overrides={"model.name": name, "model.likelihood": likelihood, "data.n": 1000, **extra})


def own_keys(name, overrides):
    """the `model.*` overrides that model `name` takes (each model takes only its own keys)"""
    takes = {f.name for f in dataclasses.fields(MODELS[name].params)} | {f.name for f in dataclasses.fields(ModelConfig)}
    return {k: v for k, v in overrides.items() if not k.startswith("model.") or k.split(".", 1)[1] in takes}


def labels_for(name, n, k=3):
    """labels (n,) in 0..k−1 for a conditional model, None for the others"""
    return torch.arange(n) % k if MODELS[name].conditional else None


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_and_one_backward_step(name, likelihood):
    cfg = cfg_for(name, likelihood, **own_keys(name, {"model.latent_dim": 5, "model.classes": 3}))
    model = build_model(cfg, (1, 24, 24))
    x, y = torch.rand(6, 1, 24, 24), labels_for(name, 6)
    q = model.encode(x, y)
    L = model.latent_dim  # 5, or 5 per cell of a VQ-VAE's code grid
    assert L % 5 == 0 and isinstance(q, Normal) and q.mean.shape == (6, L) and q.stddev.shape == (6, L)
    x_hat = model.decode(q.mean, y)
    assert x_hat.shape == (6, 1, 24, 24) and x_hat.min() >= 0 and x_hat.max() <= 1
    terms = model.loss(x, 0, loss_weights(cfg.loss, 0), labels=y)
    assert terms["loss"].shape == () and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if not n.startswith("prior.")]  # a VQ-VAE's prior trains after
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_loss_falls_on_points(name, likelihood):
    # conv models with 8 filters instead of 32 (FactorVAE's discriminator 2 layers of 64, not 6 of
    # 1000): the same structure, a fraction of the time; a conditional model on the bundled digits
    # (points have no labels)
    data = {"data.name": "digits", "data.n": 0} if MODELS[name].conditional else {"data.n": 2000}
    small = {"model.channels": [8], "model.prior_steps": 20, "model.discriminator": [64, 64]}
    cfg = cfg_for(name, likelihood, **own_keys(name, {"train.steps": 200, "train.batch_size": 32, **small, **data}))
    run = train(cfg, quiet=True)
    losses = [r["loss"] for r in run.history]
    assert len(losses) == 200
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.7 * first, (first, last)


def dense(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def test_chain_architectures_have_the_studys_parameter_counts():
    # docs/studies.md, the chain study: 24x24 images, latent 8, encoder outputs (μ, log σ²)
    expected = {
        "chain-fc1": dense([576, 115, 16]) + dense([8, 115, 576]),
        "chain-fc2": dense([576, 144, 28, 16]) + dense([8, 28, 144, 576]),
        "chain-conv": (32 * 9 + 32) + dense([22 * 22 * 32, 115, 16]) + dense([8, 115, 22 * 22 * 32]) + (32 * 9 + 1),
        "chain-asym": (32 * 9 + 32) + dense([22 * 22 * 32, 115, 16]) + dense([8, 28, 144, 576]),
    }
    for preset, count in expected.items():
        model = build_model(load_config(preset), (1, 24, 24))
        assert count_parameters(model) == count, preset


def test_autoencoder_is_deterministic_and_has_no_kl():
    model = build_model(cfg_for("ae"), (1, 24, 24))
    x = torch.rand(4, 1, 24, 24)
    assert "kl" not in model.loss(x, 0, LossWeights())
    assert torch.equal(model.loss(x, 0, LossWeights())["loss"], model.loss(x, 0, LossWeights())["loss"])


@pytest.mark.parametrize("shape", [(1, 21, 21), (3, 16, 12), (2, 9, 9)])
@pytest.mark.parametrize("pool", [False, True])
def test_conv_handles_odd_sizes_channels_and_pooling(shape, pool):
    cfg = cfg_for("conv", **{"model.pool": pool, "model.channels": [8, 4], "model.batch_norm": True})
    model = build_model(cfg, shape)
    x = torch.rand(5, *shape)
    assert model(x).shape == x.shape
    model.loss(x, 0, loss_weights(cfg.loss, 0))["loss"].backward()


def test_latent_dim_extremes_and_batch_norm():
    for dim in (1, 2048):
        model = build_model(cfg_for("fc2", **{"model.latent_dim": dim, "model.batch_norm": True}), (1, 8, 8))
        assert model.encode(torch.rand(3, 1, 8, 8)).mean.shape == (3, dim)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())


def test_hidden_widths_are_config():
    model = build_model(cfg_for("fc2", **{"model.hidden": [64, 16], "model.decoder_hidden": [10, 20]}), (1, 24, 24))
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [64, 16, 16, 10, 20, 576]


def test_bad_model_settings_are_user_errors():
    with pytest.raises(UserError, match=r"model\.hidden must list 1 width\(s\) for this model, got \[10, 10\]"):
        cfg_for("fc1", **{"model.hidden": [10, 10]})
    with pytest.raises(UserError, match=r"model\.hidden must list 2 width\(s\) for this model, got \[10\]"):
        cfg_for("fc2", **{"model.hidden": [10]})
    with pytest.raises(UserError, match=r"model\.kernel must be >= 1, got 0"):  # 0 no longer means "the default"
        cfg_for("conv", **{"model.kernel": 0})
    with pytest.raises(UserError, match=r"model\.channels must list at least one width"):
        cfg_for("cnn", **{"model.channels": []})
    with pytest.raises(UserError, match="latent_dim"):
        cfg_for("fc1", **{"model.latent_dim": 0})
    with pytest.raises(UserError, match="leave nothing"):
        build_model(cfg_for("conv", **{"model.channels": [4, 4, 4, 4]}), (1, 8, 8))
    with pytest.raises(UserError, match="valid models"):
        cfg_for("resnet")

import dataclasses
import tomllib

import pytest

from vaelab.config import Config, coerce, load_config, parse_value, preset_names
from vaelab.errors import UserError


@pytest.mark.parametrize(
    "preset, model, hidden, decoder",
    [
        ("chain-fc1", "fc1", (115,), (115,)),
        ("chain-fc2", "fc2", (144, 28), (28, 144)),
        ("chain-conv", "conv", (115,), (115,)),
        ("chain-asym", "asym", (115,), (28, 144)),
    ],
)
def test_chain_presets_reproduce_the_study(preset, model, hidden, decoder):
    c = load_config(preset)  # docs/studies.md, the chain study
    assert (c.data.name, c.data.n) == ("points", 20000)
    assert (c.data.params.size, c.data.params.block, c.data.params.p_x, c.data.params.p_y) == (24, 3, 0.3, 0.8)
    assert (c.model.name, c.model.latent_dim, c.model.params.hidden, c.model.params.decoder_widths) == (model, 8, hidden, decoder)
    assert c.model.params.decoder_hidden == ((28, 144) if model == "asym" else ())  # unset: the decoder mirrors hidden
    assert c.model.likelihood == "gaussian" and not c.model.params.batch_norm
    if model in ("conv", "asym"):
        assert (c.model.params.channels, c.model.params.kernel, c.model.params.pool) == ((32,), 3, False)
    else:
        assert not hasattr(c.model.params, "channels")  # a dense model takes no convolution keys
    assert (c.loss.recon_weight, c.loss.beta, c.loss.variability_weight) == (1.0, 1.0, 0.0)
    assert (c.train.epochs, c.train.batch_size, c.train.lr) == (5, 32, 1e-3)


def test_every_preset_loads_and_round_trips():
    for name in preset_names():
        c = load_config(name)
        assert Config.from_dict(c.to_dict()) == c
        assert Config.from_dict(tomllib.loads(__import__("tomli_w").dumps(c.to_dict()))) == c


def test_set_values_are_parsed_as_toml_then_coerced():
    assert parse_value("1e-3") == 0.001 and parse_value("true") is True and parse_value("[1, 2]") == [1, 2]
    assert parse_value("points") == "points" and parse_value("/a/b.npz") == "/a/b.npz"
    c = load_config(overrides=["loss.beta=2", "model.hidden=144,28", "model.batch_norm=true", "data.name=squares", "data.mu=1"])
    assert c.loss.beta == 2.0 and isinstance(c.loss.beta, float)
    assert c.model.params.hidden == (144, 28) and c.model.params.batch_norm is True
    assert c.data.params.mu == 1.0


def test_config_file_over_preset_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[loss]\nbeta = 0.3\n[train]\nepochs = 2\n')
    c = load_config("chain-conv", f, ["train.epochs=3"])
    assert (c.model.name, c.loss.beta, c.train.epochs) == ("conv", 0.3, 3)


def test_override_returns_a_new_frozen_config():
    c = load_config("chain-fc2")
    d = c.override({"loss.beta": 0.5})
    assert c.loss.beta == 1.0 and d.loss.beta == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.loss.beta = 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["loss.beta=-1"], "loss.beta must be >= 0"),
        (["model.latent_dim=0"], "model.latent_dim must be in 1..2048"),
        (["model.latent_dim=2049"], "model.latent_dim"),
        (["train.lr=0"], "train.lr must be > 0"),
        (["train.batch_size=1", "loss.variability_weight=1"], "batch_size must be >= 2"),
        (["train.epochs=abc"], "train.epochs must be an integer"),
        (["model.batch_norm=maybe"], "true or false"),
        (["model.likelihood=poisson"], "gaussian, bernoulli"),
        (["loss.kl_schedule=linear"], "warmup_steps must be > 0"),
        (["loss.capacity_max=25"], "loss.capacity_steps must be > 0 with loss.capacity_max = 25"),
        (["loss.capacity_steps=100"], "loss.capacity_steps = 100 is ignored without loss.capacity_max > 0"),
        (["loss.dip_offdiag=5"], "ignored with loss.dip = off"),
        (["loss.dip=iii"], "loss.dip"),
        (["train.device=tpu"], "train.device"),
        (["sample.delta=-1"], "sample.delta"),
        (["sample.denoise=1.5"], "sample.denoise"),
        (["loss.betta=1"], "valid keys: loss.recon_weight, loss.beta"),
        (["lossbeta=1"], "section.key"),
        (["optim.lr=1"], "valid sections"),
        (["data.name=mnist"], "data.path"),
        (["loss.beta"], "key=value"),
    ],
)
def test_bad_values_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(overrides=overrides)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(UserError, match="chain-conv"):
        load_config("chain-cnn")


def test_coerce():
    assert coerce(3, float, "k") == 3.0
    assert coerce(4.0, int, "k") == 4
    with pytest.raises(UserError):
        coerce(True, int, "k")
    with pytest.raises(UserError):
        coerce(4.5, int, "k")
    assert coerce([1, 2], tuple[int, ...], "k") == (1, 2)
    assert coerce(7, tuple[int, ...], "k") == (7,)


def test_switching_dataset_or_model_takes_the_new_ones_defaults():
    c = load_config("chain-fc2")
    d = c.override(["data.name=squares", "data.mu=2", "model.name=fc1"])
    assert d.data.name == "squares" and d.data.params.mu == 2.0 and d.model.params.hidden == (115,)
    e = c.override({"model.name": "asym"})
    assert e.model.params.hidden == (115,) and e.model.params.decoder_widths == (28, 144)
    custom = load_config(overrides={"model.name": "fc2", "model.hidden": [64, 8]})
    with pytest.raises(UserError, match="model.hidden"):  # an explicit width is kept, and fc1 needs one
        custom.override({"model.name": "fc1"})


@pytest.mark.parametrize("bad", ["data.seed=-1", "train.seed=-2", "data.n=1e30", "loss.beta=nan", "loss.beta=inf"])
def test_seeds_sizes_and_non_finite_numbers(bad):
    with pytest.raises(UserError):
        load_config(overrides=[bad])


@pytest.mark.parametrize("key", ["train.seed", "sample.seed", "data.seed"])
@pytest.mark.parametrize("value", [-1, 2**32, 2**62, 99999999999999999999999])
def test_seeds_beyond_32_bits_are_refused_by_name(key, value):
    with pytest.raises(UserError, match=f"{key} must be in 0..4294967295"):
        load_config(overrides=[f"{key}={value}"])


def test_the_largest_seed_trains():
    from vaelab.train import train

    cfg = load_config(overrides={"train.seed": 2**32 - 1, "data.n": 64, "train.steps": 2, "sample.n": 2})
    assert len(train(cfg, quiet=True).history) == 2

"""Models' own defaults and the MNIST study's models: parameter counts of dense3 and cnn by hand, how
unset model keys resolve (and re-resolve when model.name switches, in overrides and in sweeps), which
model and loss keys each model takes (and that config.toml files of vaelab 0.1, which held every
model key for every model, still load), the arch presets, and train.input_noise (a denoising VAE:
noisy encoder input, clean target).

Everything here builds configs and models only, except a few trainings of 20 steps on 8×8 digits.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib

import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error

from vaelab.config import Config, LossConfig, load_config
from vaelab.data import load_data
from vaelab.errors import UserError
from vaelab.experiments.sweep import sweep_axes, sweep_cells
from vaelab.models import MODELS, build_model, count_parameters
from vaelab.models.vae import VAE
from vaelab.train import epoch_order, train
from vaelab.vectorized import group_key

MNIST = (1, 28, 28)


def cfg_of(*sets: str):
    return load_config(None, None, list(sets))


def model_keys(cfg) -> dict:
    """the model's own keys (`cfg.model.params`, only the keys that model takes) and the decoder
    widths they give"""
    p = cfg.model.params
    widths = {"decoder_widths": p.decoder_widths} if hasattr(p, "decoder_widths") else {}  # a vqvae has no dense part
    return {**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}, **widths}


# the values each model resolves to when nothing is set (from the models' params dataclasses and the
# study: dense3 784-392-196-z, cnn 5×5 convs of 16 and 32 channels, 2×2 pool, dense 64); an unset
# decoder_hidden stays empty and the decoder mirrors hidden; dense models take no convolution keys
CNN = {"hidden": (64,), "decoder_hidden": (), "decoder_widths": (64,), "batch_norm": False, "channels": (16, 32), "kernel": 5, "pool": True}
CONV = {"hidden": (115,), "decoder_hidden": (), "decoder_widths": (115,), "batch_norm": False, "channels": (32,), "kernel": 3, "pool": False}
FC2 = {"hidden": (144, 28), "decoder_hidden": (), "decoder_widths": (28, 144), "batch_norm": False}
DENSE3 = {"hidden": (392, 196), "decoder_hidden": (), "decoder_widths": (196, 392), "batch_norm": False}


# ---------------------------------------------------------------------------------------------
# Parameter counts by hand.


def linear(a: int, b: int) -> int:
    return a * b + b


def conv(c_in: int, c_out: int, k: int) -> int:  # Conv2d and ConvTranspose2d alike
    return c_in * c_out * k * k + c_out


def dense3_count(latent: int) -> int:
    """784 → 392 → 196 → 2L (μ, log σ²); L → 196 → 392 → 784."""
    return linear(784, 392) + linear(392, 196) + linear(196, 2 * latent) + linear(latent, 196) + linear(196, 392) + linear(392, 784)


def cnn_count(latent: int) -> int:
    """28×28 → conv 5×5 (16) → 24×24 → conv 5×5 (32) → 20×20 → pool → 10×10×32 = 3200 → 64 → 2L;
    L → 64 → 3200 → upsample → transposed conv 5×5 (32 → 16) → transposed conv 5×5 (16 → 1)."""
    encoder = conv(1, 16, 5) + conv(16, 32, 5) + linear(3200, 64) + linear(64, 2 * latent)
    decoder = linear(latent, 64) + linear(64, 3200) + conv(32, 16, 5) + conv(16, 1, 5)
    return encoder + decoder


def test_dense3_at_latent_16_is_the_studys_780k_weight_model():
    # 307,720 + 77,028 + 6,304 + 3,332 + 77,224 + 308,112
    assert dense3_count(16) == 779_720
    model = build_model(cfg_of("model.name=dense3", "model.latent_dim=16"), MNIST)
    assert count_parameters(model) == 779_720
    assert 400_000 <= count_parameters(model) <= 800_000


def test_cnn_at_latent_16_has_the_hand_counted_weights():
    # 416 + 12,832 + 204,864 + 2,080 (encoder) + 1,088 + 208,000 + 12,816 + 401 (decoder)
    assert cnn_count(16) == 442_497
    model = build_model(cfg_of("model.name=cnn", "model.latent_dim=16"), MNIST)
    assert count_parameters(model) == 442_497


def test_cnn_layers_are_5x5_convs_of_16_and_32_with_pooling_and_dense_64():
    model = build_model(cfg_of("model.name=cnn", "model.latent_dim=16"), MNIST)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 16, (5, 5)), (16, 32, (5, 5))]
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in model.encoder.modules())
    h = torch.nn.Sequential(*list(model.encoder)[:-1])(torch.zeros(3, *MNIST))  # all before the (μ, log σ²) layer
    assert h.shape == (3, 64)
    assert model.decode(torch.zeros(3, 16)).shape == (3, *MNIST)


# ---------------------------------------------------------------------------------------------
# Defaults: unset keys take the named model's values.


@pytest.mark.parametrize(
    "name, expected",
    [("cnn", CNN), ("fc2", FC2), ("conv", CONV), ("dense3", DENSE3)],
)
def test_an_unset_key_takes_the_models_own_default(name, expected):
    assert model_keys(cfg_of(f"model.name={name}")) == expected


def test_the_default_model_is_fc2_with_its_defaults():
    assert load_config().model.name == "fc2"
    assert model_keys(load_config()) == FC2


def test_an_explicit_value_wins_over_the_models_default():
    cfg = cfg_of("model.name=cnn", "model.channels=[8]")
    assert model_keys(cfg) == {**CNN, "channels": (8,)}
    cfg = cfg_of("model.name=cnn", "model.kernel=3", "model.pool=false", "model.hidden=[20]")
    assert model_keys(cfg) == {**CNN, "hidden": (20,), "decoder_widths": (20,), "kernel": 3, "pool": False}


def test_the_cli_stores_the_resolved_model_and_an_explicit_channel_list_wins(tmp_path):
    # digits are 8×8: cnn's two 5×5 convolutions leave nothing, one of 8 channels leaves 4×4 → 2×2
    r = cli("train", "--set", "data.name=digits", "--set", "data.n=64", "--set", "model.name=cnn", "--set", "model.channels=[8]",
            "--set", "train.steps=2", "--set", "sample.n=4", "--out", tmp_path / "run", "--quiet")  # fmt: skip
    assert r.rc == 0, r.err
    stored = tomllib.loads((tmp_path / "run" / "config.toml").read_text())["model"]
    assert (stored["channels"], stored["kernel"], stored["pool"], stored["hidden"], stored["decoder_hidden"]) == ([8], 5, True, [64], [])
    assert set(stored) == {"name", "latent_dim", "likelihood", *(k for k in CNN if k != "decoder_widths")}  # the cnn's keys only
    r = cli("train", "--set", "data.name=digits", "--set", "model.name=cnn", "--out", tmp_path / "too-deep", "--quiet")
    user_error(r, "model.channels", "8x8")
    assert not (tmp_path / "too-deep").exists()


def test_switching_model_name_drops_the_old_models_defaults():
    cnn = cfg_of("model.name=cnn")
    assert model_keys(cnn.override({"model.name": "conv"})) == CONV
    assert model_keys(cnn.override(["model.name=fc2"])) == FC2
    assert model_keys(cfg_of("model.name=conv").override({"model.name": "cnn"})) == CNN
    assert model_keys(load_config().override({"model.name": "dense3"})) == DENSE3


def test_a_key_set_in_the_same_override_survives_the_switch():
    cnn = cfg_of("model.name=cnn")
    assert model_keys(cnn.override({"model.name": "conv", "model.kernel": 5})) == {**CONV, "kernel": 5}
    assert model_keys(cnn.override(["model.name=conv", "model.channels=[16,32]"])) == {**CONV, "channels": (16, 32)}
    switched = cnn.override({"model.name": "fc2", "model.hidden": [32, 16]})
    assert model_keys(switched) == {**FC2, "hidden": (32, 16), "decoder_widths": (16, 32)}


def test_a_value_the_user_set_away_from_the_default_survives_a_later_switch():
    custom = cfg_of("model.name=cnn", "model.channels=[8]")
    assert model_keys(custom.override({"model.name": "conv"})) == {**CONV, "channels": (8,)}
    with pytest.raises(UserError, match=r"model\.channels is a parameter of .*not of model fc2"):  # a dense model has no channels to keep it in
        custom.override({"model.name": "fc2"})


def test_changing_hidden_changes_a_mirrored_decoder_but_not_an_explicit_one():
    mirrored = cfg_of("model.name=fc2").override({"model.hidden": [64, 16]})
    assert model_keys(mirrored) == {**FC2, "hidden": (64, 16), "decoder_widths": (16, 64)}
    widths = [m.out_features for m in build_model(mirrored, (1, 24, 24)).modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [64, 16, 16, 16, 64, 576]
    explicit = cfg_of("model.name=fc2", "model.decoder_hidden=[10, 20]").override({"model.hidden": [64, 16]})
    assert model_keys(explicit) == {**FC2, "hidden": (64, 16), "decoder_hidden": (10, 20), "decoder_widths": (10, 20)}
    assert model_keys(cfg_of("model.name=asym").override({"model.hidden": [50]}))["decoder_widths"] == (28, 144)  # asym's own decoder


def test_a_swept_model_name_gives_each_cell_its_own_models_defaults():
    base = cfg_of("model.name=cnn", "data.name=fontdigits")
    cells = sweep_cells(base, sweep_axes(base, ["model.name=dense3,cnn"]))
    assert [c.config.model.name for c in cells] == ["dense3", "cnn"]
    assert model_keys(cells[0].config) == DENSE3
    assert model_keys(cells[1].config) == CNN
    from_fc2 = load_config()  # the same grid over a dense base
    cells = sweep_cells(from_fc2, sweep_axes(from_fc2, ["model.name=dense3,cnn"]))
    assert [model_keys(c.config) for c in cells] == [DENSE3, CNN]


# ---------------------------------------------------------------------------------------------
# Which keys each model takes: its own model keys, and the loss keys it honours.

ALL_LOSS_KEYS = (
    "recon_weight", "beta", "variability_weight", "kl_schedule", "warmup_steps",
    "tc_weight", "tc_estimator", "capacity_max", "capacity_steps", "dip", "dip_offdiag", "dip_diag",
)  # fmt: skip
HONOURED = {
    **{name: ALL_LOSS_KEYS for name in ("fc1", "fc2", "dense3", "conv", "cnn", "asym", "cvae", "factorvae")},
    "ae": ("recon_weight", "variability_weight"),  # no KL term: no β, no KL schedule
    "vqvae": ("recon_weight",),  # no KL, no variability term
    "introvae": ("recon_weight", "beta", "kl_schedule", "warmup_steps"),  # no variability term
    "gaussian-fit": (),  # no loss at all: fitted in closed form
}
"""the loss keys each model honours (issue 17): setting any other away from its default is refused"""

NON_DEFAULT = {
    "recon_weight": 2, "beta": 4, "variability_weight": 1, "kl_schedule": "linear", "warmup_steps": 10,
    "tc_weight": 5, "tc_estimator": "mss", "capacity_max": 20, "capacity_steps": 100, "dip": "i", "dip_offdiag": 5, "dip_diag": 5,
}  # fmt: skip
COMPANION = {"kl_schedule": "warmup_steps", "tc_estimator": "tc_weight", "capacity_max": "capacity_steps", "capacity_steps": "capacity_max", "dip_offdiag": "dip", "dip_diag": "dip"}
"""a key that needs another set with it (a schedule its ramp, a DIP weight DIP itself)"""


def test_every_model_has_its_honoured_loss_keys_listed():
    assert set(HONOURED) == set(MODELS)


@pytest.mark.parametrize("key", ALL_LOSS_KEYS)
@pytest.mark.parametrize("name", sorted(HONOURED))
def test_a_loss_key_is_taken_exactly_when_the_model_honours_it(name, key):
    sets = [f"model.name={name}", f"loss.{key}={NON_DEFAULT[key]}"]
    if key in COMPANION:
        sets.append(f"loss.{COMPANION[key]}={NON_DEFAULT[COMPANION[key]]}")
    if key in HONOURED[name]:
        cfg = cfg_of(*sets)
        assert getattr(cfg.loss, key) == NON_DEFAULT[key]
    else:
        honours = ", ".join(f"loss.{k}" for k in HONOURED[name]) or "no loss.* key"
        refused = f"({key}|{COMPANION[key]})" if key in COMPANION else key  # the first of the two in field order is named
        with pytest.raises(UserError, match=rf"^loss\.{refused} = .*: model {name} does not use it \(it honours {honours}\)$"):
            cfg_of(*sets)
    default = {f.name: f.default for f in dataclasses.fields(LossConfig)}[key]
    assert getattr(cfg_of(f"model.name={name}", f"loss.{key}={default}").loss, key) == default  # its default: always accepted


@pytest.mark.parametrize("name", ["vqvae", "ae"])
def test_the_cli_refuses_loss_beta_for_a_model_without_a_kl_term_in_one_line(tmp_path, name):
    r = cli("train", "--set", f"model.name={name}", "--set", "loss.beta=4", "--set", "train.steps=1", "--out", tmp_path / "run")
    honours = ", ".join(f"loss.{k}" for k in HONOURED[name])
    user_error(r, "loss.beta = 4", f"model {name} does not use it", f"(it honours {honours})")
    assert not (tmp_path / "run").exists()


def test_introvae_refuses_a_variability_weight_and_takes_beta_and_a_kl_schedule():
    with pytest.raises(UserError, match=r"loss\.variability_weight = 0\.5: model introvae does not use it \(it honours loss\.recon_weight, loss\.beta, loss\.kl_schedule, loss\.warmup_steps\)"):
        cfg_of("model.name=introvae", "loss.variability_weight=0.5")
    cfg = cfg_of("model.name=introvae", "loss.beta=2", "loss.kl_schedule=linear", "loss.warmup_steps=50")
    assert (cfg.loss.beta, cfg.loss.kl_schedule, cfg.loss.warmup_steps) == (2.0, "linear", 50)


def test_a_non_default_beta_is_accepted_for_fc2(tmp_path):
    assert cfg_of("model.name=fc2", "loss.beta=0.5").loss.beta == 0.5
    r = cli("train", "--set", "model.name=fc2", "--set", "loss.beta=0.5", "--set", "data.n=64", "--set", "train.steps=2",
            "--set", "sample.n=4", "--out", tmp_path / "run", "--quiet")  # fmt: skip
    assert r.rc == 0, r.err
    assert tomllib.loads((tmp_path / "run" / "config.toml").read_text())["loss"]["beta"] == 0.5


def test_fontdigits_cnn_with_a_model_that_has_no_kl_needs_beta_reset():
    # the preset's β = 0.5 was silently ignored by these models before; now it must be set back
    for name in ("vqvae", "ae"):
        with pytest.raises(UserError, match=f"loss.beta = 0.5: model {name} does not use it"):
            load_config("fontdigits-cnn", None, [f"model.name={name}"])
    assert load_config("fontdigits-cnn", None, ["model.name=ae", "loss.beta=1"]).loss.recon_weight == 0.5
    assert load_config("fontdigits-cnn", None, ["model.name=vqvae", "loss.beta=1"]).model.name == "vqvae"


def test_another_models_key_away_from_its_default_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^model\.margin is a parameter of introvae, not of model fc2, which takes: model\.name, .*model\.hidden"):
        cfg_of("model.name=fc2", "model.margin=5")
    for sets in (["model.name=fc2", "model.classes=3"], ["model.name=cnn", "model.prior_steps=5"], ["model.name=vqvae", "model.hidden=[64]"], ["model.name=vqvae", "model.kernel=5"]):
        with pytest.raises(UserError, match=rf"^{sets[1].split('=')[0]} is a parameter of .*, not of model {sets[0].split('=')[1]}"):
            cfg_of(*sets)
    r = cli("train", "--set", "model.name=fc2", "--set", "model.margin=5", "--out", tmp_path / "run")
    user_error(r, "model.margin is a parameter of introvae", "not of model fc2", "model.hidden")
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="unknown config key model.widths for model fc2"):  # no model has it
        cfg_of("model.name=fc2", "model.widths=[3]")


def test_another_models_key_at_its_default_or_empty_in_a_file_changes_nothing_and_is_refused_when_set(tmp_path):
    """vaelab 0.1 wrote every model's keys into every config.toml: read from a file, another model's
    key at its default or empty is dropped; given with --set it is a setting the model would ignore."""
    fc2 = cfg_of("model.name=fc2")

    def from_file(section: str) -> Config:
        (tmp_path / "c.toml").write_text(f"[model]\n{section}")
        return load_config(config_file=tmp_path / "c.toml")

    assert from_file('name = "fc2"\nmargin = 20\nchannels = [32]\nkernel = 3\nclasses = 0\n') == fc2
    assert from_file('name = "fc2"\nchannels = []\n') == fc2
    assert from_file('name = "vqvae"\nhidden = []\ndecoder_hidden = []\nbatch_norm = false\n') == cfg_of("model.name=vqvae")
    assert "margin" not in fc2.to_dict()["model"] and "channels" not in fc2.to_dict()["model"]
    for setting in ("model.margin=20", "model.channels=[]"):
        with pytest.raises(UserError, match=f"{setting.split('=')[0]} is a parameter of .*, not of model fc2"):
            cfg_of("model.name=fc2", setting)
    with pytest.raises(UserError, match="model.hidden is a parameter of"):
        load_config(config_file=tmp_path / "c.toml", overrides=["model.hidden=[115]"])  # --set refuses what the file may hold
    with pytest.raises(UserError, match="model.kernel is a parameter of conv"):
        from_file('name = "fc2"\nkernel = 5\n')  # away from its default it would have changed something


OLD_FC2 = """\
[model]
name = "fc2"
latent_dim = 8
hidden = [144, 28]
decoder_hidden = [28, 144]
channels = [32]
kernel = 3
pool = false
batch_norm = false
likelihood = "gaussian"
classes = 0
codebook_size = 64
codebook_ema = false
commitment = 0.25
prior_steps = 2000
margin = 20.0
adversarial_weight = 0.25
adversarial_warmup = 300
"""
"""the [model] section vaelab 0.1 wrote into a fc2 run's config.toml: all 17 keys, resolved"""

OLD_VQVAE = OLD_FC2.replace('"fc2"', '"vqvae"').replace("[144, 28]", "[]").replace("[28, 144]", "[]").replace("[32]", "[32, 64]")
"""the same, as 0.1 wrote it for a vqvae run (its hidden widths empty, its channels resolved)"""

OLD_LOSS = """
[loss]
recon_weight = 1.0
beta = 1.0
variability_weight = 0.0
kl_schedule = "constant"
warmup_steps = 0
"""


def layer_shapes(cfg, shape=(1, 24, 24)):
    return [(k, tuple(v.shape)) for k, v in build_model(cfg, shape).state_dict().items()]


@pytest.mark.parametrize("name, old", [("fc2", OLD_FC2), ("vqvae", OLD_VQVAE)])
def test_a_config_toml_of_vaelab_0_1_with_all_17_model_keys_still_loads(tmp_path, name, old):
    f = tmp_path / "config.toml"
    f.write_text(old + OLD_LOSS)
    assert len(tomllib.loads(old)["model"]) == 17
    loaded, today = load_config(config_file=f), cfg_of(f"model.name={name}")
    assert loaded.model.name == name and loaded.loss == today.loss
    assert set(loaded.to_dict()["model"]) == set(today.to_dict()["model"])  # only the model's own keys are kept
    assert loaded == today  # the stored mirror [28, 144] is today's [] (the mirror): a resume with the same flags matches
    assert layer_shapes(loaded) == layer_shapes(today)  # the same network


def test_a_stored_run_config_drops_what_its_model_never_used_where_a_new_config_refuses_it(tmp_path):
    """0.1 stored loss.beta = 0.5 for a vqvae trained from fontdigits-cnn (it ignored it) and could
    store another model's key away from its default: such a run folder still loads, as the model it
    trained; a new config with the same settings is refused."""
    from vaelab.checkpoint import read_run_config
    from vaelab.runfolder import prepare_out

    run = prepare_out(tmp_path / "run", "run")
    (run / "config.toml").write_text(OLD_VQVAE.replace("kernel = 3", "kernel = 5") + OLD_LOSS.replace("beta = 1.0", "beta = 0.5"))
    stored = read_run_config(run)
    assert stored == cfg_of("model.name=vqvae")
    with pytest.raises(UserError, match="model.kernel is a parameter of conv"):
        load_config(config_file=run / "config.toml")
    with pytest.raises(UserError, match="loss.beta = 0.5: model vqvae does not use it"):
        cfg_of("model.name=vqvae", "loss.beta=0.5")


def test_an_empty_hidden_list_is_refused_rather_than_read_as_the_models_default():
    for name in ("fc2", "dense3", "conv", "cvae"):
        with pytest.raises(UserError, match="model.hidden must list at least one width"):
            cfg_of(f"model.name={name}", "model.hidden=[]")


# ---------------------------------------------------------------------------------------------
# The arch presets.


def test_arch_latent_dim_is_2_models_by_7_latent_dims_each_with_its_models_defaults():
    cfg = load_config("arch-latent-dim")
    assert (cfg.data.name, cfg.model.name, cfg.loss.recon_weight, cfg.loss.beta) == ("fontdigits", "cnn", 0.5, 0.5)
    cells = sweep_cells(cfg, sweep_axes(cfg))
    assert len(cells) == 14
    dims = [1, 4, 16, 128, 256, 1024, 2048]
    assert [(c.config.model.name, c.config.model.latent_dim) for c in cells] == [(n, d) for n in ("dense3", "cnn") for d in dims]
    for c in cells:
        assert model_keys(c.config) == (DENSE3 if c.config.model.name == "dense3" else CNN), c.name
        hand = (dense3_count if c.config.model.name == "dense3" else cnn_count)(c.config.model.latent_dim)
        assert count_parameters(build_model(c.config, MNIST)) == hand, c.name


def test_arch_loss_weights_sweeps_k1_by_k2_with_the_cnn_at_latent_16():
    cfg = load_config("arch-loss-weights")
    assert (cfg.data.name, cfg.model.name, cfg.model.latent_dim) == ("fontdigits", "cnn", 16)
    cells = sweep_cells(cfg, sweep_axes(cfg))
    points = [(c.config.loss.recon_weight, c.config.loss.beta) for c in cells]
    assert len(points) == 10 and len(set(points)) == 10
    assert (0.5, 0.5) in points
    assert {w for w, _ in points} == {0.5, 1.0} and {b for _, b in points} == {0.1, 0.25, 0.5, 1.0, 2.0}
    assert all(model_keys(c.config) == CNN for c in cells)


def test_fontdigits_cnn_is_the_cnn_on_28x28_digits():
    cfg = load_config("fontdigits-cnn")
    assert (cfg.data.name, cfg.model.name, cfg.model.latent_dim) == ("fontdigits", "cnn", 16)
    assert model_keys(cfg) == CNN


# ---------------------------------------------------------------------------------------------
# train.input_noise: the encoder sees x + noise, the loss reconstructs x.

NOISE_RUN = ["data.name=digits", "data.n=256", "model.name=ae", "model.hidden=[32]", "model.latent_dim=4",
             "train.steps=20", "train.batch_size=32"]  # fmt: skip


class LossSpy:
    """Wraps VAE.loss: records what each call got and recomputes the reconstruction term by hand
    (the autoencoder is deterministic, so the recomputation is exact) against the clean images and,
    for contrast, against what the encoder saw. The batches are kept as CPU copies, whatever device
    the model trains on."""

    def __init__(self):
        self.calls: list[dict] = []
        self.original = VAE.loss

    def __call__(self, model, x, step, loss, inputs=None, labels=None):
        terms = self.original(model, x, step, loss, inputs, labels)
        with torch.no_grad():
            seen = x if inputs is None else inputs
            x_hat = torch.sigmoid(model.decoder(model.posterior_params(seen)[0]))
            self.calls.append({
                "x": x.detach().cpu().clone(),
                "inputs": None if inputs is None else inputs.detach().cpu().clone(),
                "recon": terms["recon"].item(),
                "vs_clean": (x_hat - x).pow(2).flatten(1).sum(1).mean().item(),
                "vs_seen": (x_hat - seen).pow(2).flatten(1).sum(1).mean().item(),
            })  # fmt: skip
        return terms


def spied_train(monkeypatch, cfg) -> tuple:
    spy = LossSpy()
    monkeypatch.setattr(VAE, "loss", lambda self, *a, **k: spy(self, *a, **k))
    run = train(cfg, quiet=True)
    monkeypatch.setattr(VAE, "loss", spy.original)
    return run, spy.calls


def test_input_noise_feeds_noisy_images_to_the_encoder_and_measures_recon_against_the_clean_ones(monkeypatch):
    sigma = 0.3
    cfg = cfg_of(*NOISE_RUN, f"train.input_noise={sigma}")
    _, calls = spied_train(monkeypatch, cfg)
    assert len(calls) == 20
    data = load_data(cfg.data)
    first_batch = data.images[epoch_order(cfg.train.seed, 0, len(data))][:32]
    assert torch.equal(calls[0]["x"], first_batch)  # the target is the clean batch
    for c in calls:
        assert torch.equal(c["x"] * 16, (c["x"] * 16).round())  # digits are multiples of 1/16: clean
        noise = c["inputs"] - c["x"]
        assert abs(noise.mean().item()) < 0.03
        assert noise.std().item() == pytest.approx(sigma, rel=0.08)  # 2,048 draws per batch
        assert c["recon"] == pytest.approx(c["vs_clean"], rel=1e-5)
        assert abs(c["vs_seen"] - c["vs_clean"]) > 0.1 * c["vs_clean"]  # the noisy target would be far off
    later = [c["inputs"] - c["x"] for c in calls[8:10]]  # steps 8 and 9 (epoch 1) reuse no noise
    assert not torch.allclose(later[0], later[1])


def test_without_input_noise_the_encoder_sees_the_clean_images(monkeypatch):
    _, calls = spied_train(monkeypatch, cfg_of(*NOISE_RUN))
    assert len(calls) == 20 and all(c["inputs"] is None for c in calls)
    assert all(c["recon"] == pytest.approx(c["vs_clean"], rel=1e-5) for c in calls)


def test_input_noise_changes_training_and_stays_deterministic():
    # on the CPU: the two noisy runs are compared bitwise, which a GPU does not promise
    plain = train(cfg_of(*NOISE_RUN, "train.device=cpu"), quiet=True).model.state_dict()
    noisy_cfg = cfg_of(*NOISE_RUN, "train.input_noise=0.2", "train.device=cpu")
    noisy, again = train(noisy_cfg, quiet=True).model.state_dict(), train(noisy_cfg, quiet=True).model.state_dict()
    assert all(torch.equal(noisy[k], again[k]) for k in noisy)
    assert max((noisy[k] - plain[k]).abs().max().item() for k in noisy) > 1e-3


@pytest.mark.parametrize("value", [-1, -0.01, "inf", "nan"])
def test_a_negative_or_non_finite_input_noise_is_a_user_error(value):
    with pytest.raises(UserError, match="train.input_noise"):
        cfg_of(f"train.input_noise={value}")


def test_the_cli_refuses_a_negative_input_noise_in_one_line(tmp_path):
    r = cli("train", "--set", "train.input_noise=-1", "--out", tmp_path / "run")
    user_error(r, "train.input_noise", "-1")
    assert not (tmp_path / "run").exists()


def test_configs_differing_in_input_noise_do_not_share_a_vectorized_group():
    a, b = cfg_of(*NOISE_RUN), cfg_of(*NOISE_RUN, "train.input_noise=0.1")
    assert group_key(a) is not None and group_key(b) is not None
    assert group_key(a) != group_key(b)
    assert group_key(b) == group_key(cfg_of(*NOISE_RUN, "train.input_noise=0.1", "loss.recon_weight=2"))  # a weight may differ
    assert math.isclose(b.train.input_noise, 0.1) and b.to_dict()["train"]["input_noise"] == 0.1

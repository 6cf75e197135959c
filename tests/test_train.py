import importlib
import json

import pytest
import torch

from vaelab.checkpoint import Checkpoint
from vaelab.config import load_config
from vaelab.errors import TrainingDiverged
from vaelab.losses import loss_weights
from vaelab.runfolder import load_tensors
from vaelab.train import epoch_order, resume, schedule, train

train_mod = importlib.import_module("vaelab.train")  # the module (vaelab.train is also the function)

SMALL = {"data.n": 300, "train.steps": 30, "train.batch_size": 16, "sample.n": 4, "model.hidden": [32, 8]}


def weights(path):
    return load_tensors(path / "model.safetensors")[0]


def test_same_seed_same_weights_bitwise_other_seed_differs():
    cfg = load_config(overrides={**SMALL, "train.device": "cpu"})  # bitwise: a GPU need not reproduce itself
    a, b = train(cfg, quiet=True), train(cfg, quiet=True)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = train(cfg.override({"train.seed": 1}), quiet=True)
    assert not all(torch.equal(va, vc) for va, vc in zip(a.model.state_dict().values(), c.model.state_dict().values()))


def test_schedule_and_shuffle():
    cfg = load_config(overrides={"train.epochs": 3, "train.batch_size": 32})
    assert schedule(cfg, 20000) == (625, 1875)
    assert schedule(cfg, 100) == (4, 12)  # 32+32+32+4
    assert schedule(cfg, 97) == (3, 9)  # a last batch of 1 is dropped
    assert schedule(cfg.override({"train.steps": 7}), 100) == (4, 7)
    p = epoch_order(0, 2, 50)
    assert sorted(p.tolist()) == list(range(50))
    assert torch.equal(p, epoch_order(0, 2, 50)) and not torch.equal(p, epoch_order(0, 3, 50))


def test_run_folder_and_metrics(tmp_path):
    cfg = load_config(overrides={**SMALL, "loss.variability_weight": 0.1})
    run = train(cfg, out=tmp_path / "run", quiet=True)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.toml", "metrics.jsonl", "model.safetensors", "state.safetensors", "samples.png", "reconstructions.png", "report.html"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(30))
    for r in rows:  # every term logged at every step, and the total is their weighted sum
        assert r["loss"] == pytest.approx(r["recon"] + r["beta"] * r["kl"] + 0.1 * r["variability"], rel=1e-5)
    assert rows == [{k: v for k, v in r.items()} for r in run.history]


class Killed(Exception):
    pass


@pytest.mark.parametrize("extra", [{}, {"train.debias": True}])  # debias: the epoch's weights come back from the state
def test_resume_equals_an_uninterrupted_run_bitwise(tmp_path, monkeypatch, extra):
    overrides = {**SMALL, "train.steps": 50, "train.checkpoint_every": 10, "loss.variability_weight": 0.5, "train.device": "cpu", **extra}
    cfg = load_config(overrides=overrides)  # bitwise: on the CPU, as a GPU need not reproduce itself
    train(cfg, out=tmp_path / "full", quiet=True)

    real = Checkpoint.write

    def dying_write(self, run_dir):
        real(self, run_dir)
        if self.step == 20:
            raise Killed  # the process dies right after its second checkpoint

    monkeypatch.setattr(Checkpoint, "write", dying_write)
    with pytest.raises(Killed):
        train(cfg, out=tmp_path / "cut", quiet=True)
    monkeypatch.setattr(Checkpoint, "write", real)
    # the killed run had logged steps past its checkpoint? trim happens on resume
    run = resume(tmp_path / "cut", quiet=True)
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    full_rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert strip(run.history) == strip(full_rows)


def test_nan_stops_training_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from vaelab.models.vae import VAE

    real_loss = VAE.loss

    def poisoned(self, x, step=0, *args, **kwargs):
        terms = real_loss(self, x, step, *args, **kwargs)
        if step == 17:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(VAE, "loss", poisoned)
    cfg = load_config(overrides={**SMALL, "train.checkpoint_every": 5})
    with pytest.raises(TrainingDiverged, match="step 17.*step 15"):
        train(cfg, out=tmp_path / "run", quiet=True)
    _, meta = load_tensors(tmp_path / "run" / "model.safetensors")
    assert meta["step"] == "15"
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 17  # steps 0..16 were good and are kept


def test_kl_schedule_reaches_the_trainer():
    cfg = load_config(overrides={**SMALL, "loss.kl_schedule": "linear", "loss.warmup_steps": 20, "loss.beta": 2.0})
    betas = [r["beta"] for r in train(cfg, quiet=True).history]
    assert betas[0] == 0.0 and betas[10] == pytest.approx(1.0) and betas[25] == 2.0


def test_the_capacity_schedule_reaches_the_trainer_and_a_graph_s_refilled_weights():
    from vaelab.train import StepWeights

    cfg = load_config(overrides={**SMALL, "loss.capacity_max": 4.0, "loss.capacity_steps": 20, "loss.beta": 3.0})
    rows = train(cfg, quiet=True).history
    assert [rows[s]["capacity"] for s in (0, 10, 25)] == pytest.approx([0.0, 2.0, 4.0])
    assert all(r["loss"] == pytest.approx(r["recon"] + 3.0 * abs(r["kl"] - r["capacity"]), rel=1e-5) for r in rows)
    # with a device (a captured graph, a compiled loss) the moving weights are 0-d tensors, refilled in place
    weights = StepWeights(lambda step: loss_weights(cfg.loss, step), torch.device("cpu"))
    first = weights(10)
    assert torch.is_tensor(first.capacity) and first.capacity.item() == pytest.approx(2.0) and first.beta.item() == 3.0
    assert weights(15).capacity is first.capacity and first.capacity.item() == pytest.approx(3.0)


def test_device_auto_is_the_cpu_without_cuda():
    from vaelab.device import resolve_device  # moved out of vaelab.train

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert load_config(None).train.device == "auto"


def test_bf16_autocast_trains_and_learns_with_fp32_weights():
    cfg = load_config("chain-fc2", overrides={"data.n": 512, "train.steps": 150, "train.precision": "bf16", "train.device": "cpu"})
    run = train(cfg, quiet=True)
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    first = sum(h["loss"] for h in run.history[:10]) / 10
    last = sum(h["loss"] for h in run.history[-10:]) / 10
    assert last < 0.5 * first  # it learns: the points loss falls from ~145 to well under half
    fp32 = train(cfg.override({"train.precision": "fp32"}), quiet=True)
    last32 = sum(h["loss"] for h in fp32.history[-10:]) / 10
    assert abs(last - last32) < 0.1 * last32  # bf16 rounding changes the path, not where it goes


def test_compiled_loss_trains_like_the_eager_one():
    cfg = load_config("chain-fc1", overrides={"data.n": 256, "train.steps": 30, "train.device": "cpu"})
    eager = train(cfg, quiet=True)
    compiled = train(cfg.override({"train.compile": True}), quiet=True)
    assert len(compiled.history) == 30
    # Same initialisation and batches; the reparameterisation noise comes from inductor's own RNG
    # when compiled, so the two runs agree in distribution, not step by step.
    assert compiled.history[0]["loss"] == pytest.approx(eager.history[0]["loss"], rel=0.02)
    mean = lambda run: sum(h["loss"] for h in run.history[-10:]) / 10  # noqa: E731
    assert mean(compiled) == pytest.approx(mean(eager), rel=0.05)
    assert mean(compiled) < 0.8 * compiled.history[0]["loss"]  # and it learns


def test_a_compiled_architecture_is_compiled_once_per_process():
    """A chain's next generation or a sweep's next cell builds a new model of the same architecture,
    with another seed and other loss weights: torch.compile's code is reused, not compiled again
    (β reaches the compiled loss as a tensor, so its value is no constant of the code)."""
    from torch._dynamo.utils import counters

    cfg = load_config("chain-fc1", overrides={"data.n": 128, "train.steps": 3, "train.device": "cpu", "train.compile": True})
    train(cfg, quiet=True)
    compiled = counters["stats"]["unique_graphs"]
    assert compiled >= 1
    train(cfg.override({"train.seed": 1, "loss.beta": 2.5, "data.seed": 3}), quiet=True)
    assert counters["stats"]["unique_graphs"] == compiled


# ---------------------------------------------------------------------------------------------
# Divergence keeps a checkpoint that trains on; what the machine cannot hold is refused first.


@pytest.mark.parametrize("lr", [3.0, 1e6])
def test_the_checkpoint_kept_after_divergence_gives_a_finite_loss_where_training_resumes(tmp_path, lr):
    """A checkpoint at step c is kept only once the loss its weights give at step c (logged) is
    finite: recomputing that loss from the files, with the batch and RNG state of step c, is finite."""
    cfg = load_config("chain-fc1", overrides={"data.n": 300, "train.steps": 40, "train.lr": lr, "train.checkpoint_every": 1, "train.device": "cpu"})
    with pytest.raises(TrainingDiverged, match=r"diverged at step (\d+)") as e:
        train(cfg, out=tmp_path / "run", quiet=True)
    diverged = json.loads((tmp_path / "run" / "diverged.json").read_text())
    assert diverged["step"] == e.value.step and diverged["checkpoint"] < e.value.step
    if not diverged["checkpoint"]:
        assert not (tmp_path / "run" / "model.safetensors").exists()
        return
    from vaelab.checkpoint import load_state
    from vaelab.data import load_data

    data = load_data(cfg.data)
    model = train_mod.build_model(cfg, data.shape)
    optimizer = train_mod.make_optimizer(model, cfg.train.lr)
    step = load_state(tmp_path / "run", optimizer, model)
    assert step == diverged["checkpoint"]
    n, b = len(data), cfg.train.batch_size
    per_epoch, _ = schedule(cfg, n)
    epoch, i = divmod(step, per_epoch)
    batch = data.images[epoch_order(cfg.train.seed, epoch, n)][i * b : (i + 1) * b]
    assert torch.isfinite(model.loss(batch, step, loss_weights(cfg.loss, step))["loss"])  # the loss of step c, as training computed it


def test_a_run_that_diverged_says_so_in_every_verb_that_reads_it(tmp_path):
    from clihelp import cli, user_error

    d = tmp_path / "run"
    user_error(cli("train", "--preset", "chain-fc1", "--set", "data.n=300", "--set", "train.steps=20", "--set", "train.lr=1e6", "--set", "train.checkpoint_every=2", "--out", d, "--quiet"), "diverged")
    for verb in (["evaluate", d], ["sample", d, "--out", tmp_path / "s.png"], ["latent", d, "--n", "32"], ["reconstruct", d, "--out", tmp_path / "r.png"]):
        r = cli(*verb)
        assert r.rc == 0 or "diverged" in user_error(r), (verb, r.err)
    assert cli("report", d).rc == 0
    assert "diverged</th>" in (d / "report.html").read_text()


@pytest.mark.parametrize(
    "key,value,needle",
    [("model.hidden", "[100000000000]", "parameters"), ("sample.n", "99999999999999999999", "sample.n")],
)
def test_a_config_this_machine_cannot_hold_is_refused_before_anything_is_written(tmp_path, key, value, needle):
    from clihelp import cli, user_error

    d = tmp_path / "run"
    user_error(cli("train", "--preset", "chain-fc1", "--set", "data.n=300", "--set", f"{key}={value}", "--out", d, "--quiet"), needle, "GiB")
    assert not d.exists()


def test_check_resources_counts_parameters_without_allocating_them():
    from vaelab.models import build_model, parameter_count

    cfg = load_config(overrides={**SMALL})
    assert parameter_count(cfg, (1, 24, 24)) == sum(p.numel() for p in build_model(cfg, (1, 24, 24)).parameters())
    huge = load_config(overrides={**SMALL, "model.hidden": [10**11, 8]})
    assert parameter_count(huge, (1, 24, 24)) > 10**11  # counted on the meta device, instantly

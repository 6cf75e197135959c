"""The device a run computes on, checked on any machine: `train.device` resolution and its errors,
every model's step on a (fake) CUDA device, and checkpoints that cross devices.

A CUDA machine is stood in for in two ways: torch.cuda's queries are patched (to check what is
decided before any kernel runs), and PyTorch's FakeTensorMode runs a model on tensors that say
they live on cuda:0 without any data — it raises, as CUDA would, when an operation mixes devices.
The real GPU path is tests/test_gpu.py (skipped without CUDA).
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.func import functional_call

from clihelp import cli, user_error
from vaelab.checkpoint import load_run, trained_on
from vaelab.config import load_config
from vaelab.device import READING_BATCH, check_precision, describe, inference_layout, reading_device, resolve_device
from vaelab.errors import UserError
from vaelab.losses import loss_weights
from vaelab.models import MODELS, build_model
from vaelab.runfolder import load_tensors, read_toml, save_tensors, write_toml

TINY = ["--preset", "chain-fc1", "--set", "data.n=200", "--set", "train.steps=20", "--set", "train.checkpoint_every=10", "--set", "sample.n=4", "--quiet"]


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    """This machine as one with a single pre-Ampere GPU (compute capability 7.0): only torch.cuda's
    queries answer, so only what is decided before any CUDA kernel runs can be checked."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")


def test_auto_is_the_cpu_without_cuda_and_cuda_is_refused(no_cuda):
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="train.device=cuda:1"):
        resolve_device("cuda:1")
    assert reading_device("cuda:0") == torch.device("cpu")  # a GPU's run is read on the CPU
    assert describe(torch.device("cpu")) == "cpu"


def test_auto_is_the_gpu_and_a_missing_index_is_refused(one_gpu):
    assert resolve_device("auto") == torch.device("cuda", 0) == resolve_device("cuda") == resolve_device("cuda:0")
    with pytest.raises(UserError, match=r"cuda:7 but this machine has 1 CUDA device\(s\): cuda:0 to cuda:0"):
        resolve_device("cuda:7")
    assert reading_device("cuda:7") == torch.device("cpu")
    assert describe(torch.device("cuda")) == "cuda:0 (Tesla V100)"


def test_bf16_needs_an_ampere_gpu(one_gpu, monkeypatch):
    check_precision("bf16", torch.device("cpu"))  # CPU autocast has bfloat16 everywhere
    check_precision("fp32", torch.device("cuda", 0))
    with pytest.raises(UserError, match=r"bf16 but cuda:0 \(Tesla V100\) has no bfloat16"):
        check_precision("bf16", torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    check_precision("bf16", torch.device("cuda", 0))


def test_device_errors_are_one_line_before_anything_is_written(tmp_path, monkeypatch, one_gpu):
    r = cli("train", *TINY, "--set", "train.device=cuda:7", "--out", tmp_path / "a")
    user_error(r, "cuda:7", "1 CUDA device")
    r = cli("train", *TINY, "--set", "train.device=cuda", "--set", "train.precision=bf16", "--out", tmp_path / "b")
    user_error(r, "train.precision=bf16", "Tesla V100")
    r = cli("sweep", "--preset", "chain-fc1", "--set", "train.device=cuda:7", "--grid", "loss.beta=1,2", "--out", tmp_path / "c", "--quiet")
    user_error(r, "cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = cli("train", *TINY, "--set", "train.device=cuda", "--out", tmp_path / "d")
    user_error(r, "train.device=cuda", "no CUDA device", "train.device=cpu")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Every model's step on cuda:0, with FakeTensorMode standing in for the GPU.


def _fake_cuda(mode: FakeTensorMode, t: torch.Tensor) -> torch.Tensor:
    return FakeTensor(mode, t.detach().to("meta"), torch.device("cuda", 0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_models_loss_terms_and_samples_stay_on_the_batchs_device(name):
    """A term made on the CPU (a logged constant, a schedule's weight) would make the trainer's
    one batched read of the terms mix devices: every term must live where the batch does."""
    own = {f.name for f in dataclasses.fields(MODELS[name].params)}
    over = {"model.classes": 3, "model.batch_norm": name == "conv"}  # each only where the model takes it
    cfg = load_config(overrides={"model.name": name, **{k: v for k, v in over.items() if k.split(".")[1] in own}})
    model = build_model(cfg, (1, 16, 16)).eval()  # eval: the fake tensors hold no values to branch on
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    state = {k: _fake_cuda(mode, v) for k, v in [*model.named_parameters(), *model.named_buffers()]}
    with mode, torch.no_grad():
        x = torch.rand(4, 1, 16, 16, device="cuda")  # (B, C, H, W)
        labels = {"labels": torch.tensor([0, 1, 2, 0], device="cuda")} if model.n_classes else {}
        for step in (0, 10_000):  # before and after warm-ups
            terms = _loss(model, state, x, step, loss_weights(cfg.loss, step), labels)
            devices = {k: v.device for k, v in terms.items()}
            assert set(devices.values()) == {torch.device("cuda", 0)}, devices
            torch.stack([v.float() for v in terms.values()])  # the trainer's batched read: one device
        z = _fake_cuda(mode, torch.zeros(4, model.latent_dim))
        images = _decode(model, state, z, labels)
        assert images.device == torch.device("cuda", 0) and images.shape == (4, 1, 16, 16)


def test_the_disentangling_terms_stay_on_the_batchs_device():
    """β-TCVAE's decomposition, the capacity target and DIP's terms, all on, under fake CUDA: with
    float weights (one run) and with 0-d tensor weights on the device (a captured graph's)."""
    cfg = load_config(overrides={"model.name": "fc2", "loss.tc_weight": 2.0, "loss.tc_estimator": "mss", "loss.capacity_max": 5.0, "loss.capacity_steps": 10, "loss.dip": "ii"})
    model = build_model(cfg, (1, 16, 16)).eval()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    state = {k: _fake_cuda(mode, v) for k, v in [*model.named_parameters(), *model.named_buffers()]}
    with mode, torch.no_grad():
        x = torch.rand(4, 1, 16, 16, device="cuda")
        floats = loss_weights(cfg.loss, 5, 1000)
        tensors = floats._replace(beta=torch.tensor(1.0, device="cuda"), capacity=torch.tensor(2.5, device="cuda"))
        for weights in (floats, tensors):
            terms = _loss(model, state, x, 5, weights, {})
            assert {"mi", "tc", "dwkl", "capacity", "dip_offdiag", "dip_diag"} <= set(terms)
            assert {v.device for v in terms.values()} == {torch.device("cuda", 0)}, {k: v.device for k, v in terms.items()}


class _Call(torch.nn.Module):
    """functional_call reaches `forward`; this forwards to the model's `loss` or `decode`."""

    def __init__(self, model: torch.nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args, **kwargs):
        return getattr(self.model, self.method)(*args, **kwargs)


def _loss(model, state, x, step, weights, labels):
    wrapped = {f"model.{k}": v for k, v in state.items()}
    return functional_call(_Call(model, "loss"), wrapped, (x, step, weights), {**labels, "inputs": x + 0.1 * torch.randn_like(x)})


def _decode(model, state, z, labels):
    wrapped = {f"model.{k}": v for k, v in state.items()}
    return functional_call(_Call(model, "decode"), wrapped, (z,), labels)


# ---------------------------------------------------------------------------------------------
# Checkpoints across devices.


def _as_if_a_gpu_trained(run_dir) -> None:
    """Make a CPU run's folder what a GPU writes: config train.device=cuda, the device in both
    headers, and the CUDA generator's state beside the CPU's."""
    cfg = read_toml(run_dir / "config.toml")
    cfg["train"]["device"] = "cuda"
    write_toml(run_dir / "config.toml", cfg)
    for name in ("model.safetensors", "state.safetensors"):
        tensors, meta = load_tensors(run_dir / name)
        if name == "state.safetensors":
            tensors["rng.cuda"] = torch.zeros(16, dtype=torch.uint8)  # a Philox seed and offset
        save_tensors(run_dir / name, tensors, **{k: v for k, v in meta.items() if k not in ("format", "device")}, device="cuda:0 (NVIDIA H200)")


def test_a_gpu_trained_run_is_read_and_resumed_on_a_cpu_only_machine(tmp_path, no_cuda):
    run = tmp_path / "run"
    assert cli("train", *TINY, "--set", "train.steps=10", "--out", run).rc == 0
    assert trained_on(run) == "cpu"
    assert "<th>trained on</th>" in (run / "report.html").read_text()
    _as_if_a_gpu_trained(run)
    assert trained_on(run) == "cuda:0 (NVIDIA H200)"
    cfg, model = load_run(run)
    assert cfg.train.device == "cuda" and next(model.parameters()).device == torch.device("cpu")
    assert cli("sample", run, "--n", "4", "--out", tmp_path / "s.png").rc == 0
    assert cli("reconstruct", run, "--n", "4", "--out", tmp_path / "r.png").rc == 0
    assert cli("report", run).rc == 0
    assert "cuda:0 (NVIDIA H200)" in (run / "report.html").read_text()

    # continue it here: its stored device is refused in one line, `--set train.device=cpu` moves it
    user_error(cli("train", "--resume", run), "train.device=cuda", "no CUDA device")
    user_error(cli("train", "--resume", run, "--set", "loss.beta=2"), "--set train.device")
    cfg_file = read_toml(run / "config.toml")
    (run / "config.toml").write_text((run / "config.toml").read_text().replace("steps = 10", "steps = 20"))
    r = cli("train", "--resume", run, "--set", "train.device=cpu", "--quiet")
    assert r.rc == 0, r.err
    assert "trained 20 steps" in r.out  # the step count continues from the GPU's checkpoint
    assert read_toml(run / "config.toml")["train"]["device"] == "cuda" == cfg_file["train"]["device"]  # as it was started
    assert trained_on(run) == "cpu"  # the last checkpoint's device
    assert load_tensors(run / "state.safetensors")[0]["step"].item() == 20


def test_a_cpu_run_resumed_elsewhere_keeps_its_weights(tmp_path):
    """The resumed model starts from the checkpoint's weights on whatever device resumes it."""
    run = tmp_path / "run"
    assert cli("train", *TINY, "--set", "train.steps=10", "--out", run).rc == 0
    saved = load_tensors(run / "model.safetensors")[0]
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    from vaelab.train import resume

    first = resume(copy, quiet=True, device="auto")
    assert len(first.history) == 10  # nothing left to train: the checkpoint is the end
    for k, v in first.model.state_dict().items():
        assert torch.equal(v.cpu(), saved[k])


def test_inference_layout_reads_the_same_codes_and_gives_the_weights_back_contiguous():
    """Channels-last weights on the CPU while reading, the same encoder means to rounding, and
    every weight contiguous again after (a checkpoint written later stores it as it was)."""
    model = build_model(load_config(overrides={"model.name": "cnn", "model.latent_dim": 3}), (1, 28, 28)).eval()
    x = torch.rand(70, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model.posterior_params(x)[0]
        with inference_layout(model) as size:
            conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)  # one channel in: both layouts at once
            assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
            got = torch.cat([model.posterior_params(x[i : i + size])[0] for i in range(0, len(x), size)])
    assert size == READING_BATCH["cpu"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])

"""The captured training step (`train.cuda_graph`, `vaelab.train.GraphedStep`): training through it
equals training without it, to rounding, for one model and for a vectorized group.

On a CUDA machine the "on" runs capture real graphs. On the CPU, where nothing can be captured,
`graphed` is patched to say yes: the runs then take every other part of the graph path (the
fixed input tensors a replay copies into, β as a refilled device tensor, the capturable Adam, one
fixed-input step per batch shape), which must change nothing either.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from clihelp import cli, user_error
from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.errors import UserError
from vaelab.losses import LossWeights
from vaelab.train import GraphedStep, graphed, train
from vaelab.vectorized import train_group

CUDA = torch.cuda.is_available()
LOOPS = [importlib.import_module("vaelab.train"), importlib.import_module("vaelab.vectorized")]  # (vaelab.train is also the function)
# 100 images in batches of 32: three full batches and one of 4 per epoch (a second captured shape);
# a linear KL warm-up moves β every step; input noise draws inside the step.
BASE = {
    "data.n": 100,
    "data.size": 12,
    "train.batch_size": 32,
    "train.steps": 24,
    "train.checkpoint_every": 12,
    "model.hidden": [32, 16],
    "model.latent_dim": 4,
    "loss.kl_schedule": "linear",
    "loss.warmup_steps": 25,
    "train.input_noise": 0.05,
    "sample.n": 4,
}


@pytest.fixture
def capture(monkeypatch):
    """The override that turns the graph path on: train.cuda_graph=on on CUDA; on the CPU, `graphed`
    patched to True (with train.cuda_graph=auto, which on the CPU alone would stay off)."""
    if CUDA:
        return {"train.cuda_graph": "on"}
    for module in LOOPS:
        monkeypatch.setattr(module, "graphed", lambda cfg, device: True)
    return {}


def off(monkeypatch):
    for module in LOOPS:
        monkeypatch.setattr(module, "graphed", lambda cfg, device: False)


def close_histories(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(len(a)))
    assert a[0].keys() == b[0].keys()
    for key in a[0].keys() - {"time"}:
        torch.testing.assert_close(torch.tensor([r[key] for r in a]), torch.tensor([r[key] for r in b]), rtol=1e-4, atol=1e-5, msg=key)


def close_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k].float().cpu(), sb[k].float().cpu(), rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize(
    "over",
    [{}, {"model.name": "cvae", "data.name": "digits", "data.size": None}, {"train.precision": "bf16", "model.name": "conv", "model.channels": [2], "model.hidden": [8], "data.size": 8}],
    ids=["fc1", "cvae-labels", "conv-bf16"],
)
def test_a_captured_step_trains_as_the_plain_step(tmp_path, monkeypatch, capture, over):
    over = {k: v for k, v in {**BASE, **over}.items() if v is not None}
    graph = train(load_config(overrides={**over, **capture}), out=tmp_path / "graph", quiet=True, finish=False)
    off(monkeypatch)
    plain = train(load_config(overrides={**over, "train.cuda_graph": "off"}), out=tmp_path / "plain", quiet=True, finish=False)
    assert [r["beta"] for r in plain.history][:3] == pytest.approx([0.0, 0.04, 0.08])  # β moved each step, and the graph saw it
    close_histories(graph.history, plain.history)
    close_weights(graph.model, plain.model)


def test_a_captured_run_resumes_like_an_uninterrupted_one(tmp_path, capture):
    cfg = load_config(overrides={**BASE, **capture})
    whole = train(cfg, out=tmp_path / "whole", quiet=True, finish=False)
    train(cfg.override({"train.steps": 12}), out=tmp_path / "cut", quiet=True, finish=False)
    (tmp_path / "cut" / "config.toml").write_text((tmp_path / "whole" / "config.toml").read_text())
    resumed = train(cfg, out=tmp_path / "cut", resume=True, quiet=True, finish=False)
    close_histories(resumed.history, whole.history)
    close_weights(resumed.model, whole.model)


def test_a_captured_group_trains_as_the_plain_group(monkeypatch, capture):
    configs = [load_config(overrides={**BASE, **capture, "train.seed": s, "loss.beta": b, "train.lr": lr}) for s, b, lr in ((0, 1.0, 1e-3), (1, 4.0, 3e-3), (2, 0.5, 1e-3))]
    datas = [load_data(c.data) for c in configs]
    graph = train_group(configs, datas, [None] * 3, quiet=True, finish=False)
    off(monkeypatch)
    plain = train_group([c.override({"train.cuda_graph": "off"}) for c in configs], datas, [None] * 3, quiet=True, finish=False)
    for g, p in zip(graph, plain):
        close_histories(g.history, p.history)
        close_weights(g.model, p.model)


class CountingStep:
    """A stand-in step: records the batch sizes it is called with and returns their sum."""

    def __init__(self):
        self.calls = []

    def __call__(self, step, batch, labels, weights):
        self.calls.append(len(batch))
        return {"loss": batch.sum() * weights.beta}


def test_graphed_step_copies_each_batch_into_one_fixed_input_per_shape():
    inner = CountingStep()
    step = GraphedStep(inner, torch.device("cpu"))
    beta = torch.tensor(1.0)
    for i, n in enumerate((4, 4, 2, 4)):
        beta.fill_(i + 1.0)
        out = step(i, torch.full((n, 1, 2, 2), float(i)), None, LossWeights(recon_weight=1.0, beta=beta))
        assert out["loss"].item() == i * n * 4 * (i + 1.0)  # this step's batch and β, not the first's
    assert sorted(step.graphs) == [((2, 1, 2, 2), None), ((4, 1, 2, 2), None)]
    assert inner.calls == [4, 4, 2, 4]


def test_graphed_step_refuses_a_float_weight_that_changes():
    step = GraphedStep(CountingStep(), torch.device("cpu"))
    step(0, torch.ones(2, 1), None, LossWeights(recon_weight=1.0, beta=torch.tensor(1.0)))
    with pytest.raises(RuntimeError, match="recon_weight changed"):
        step(1, torch.ones(2, 1), None, LossWeights(recon_weight=2.0, beta=torch.tensor(1.0)))


@pytest.mark.parametrize(
    "over, device, why",
    [
        ({}, "cpu", "needs a CUDA device"),
        ({"model.name": "introvae", "model.latent_dim": 4}, "cuda", "model introvae"),
        ({"model.name": "vqvae", "model.hidden": None, "loss.kl_schedule": None, "loss.warmup_steps": None}, "cuda", "model vqvae"),  # None: BASE's key dropped (a vqvae takes no hidden widths, no KL schedule)
        ({"train.compile": True}, "cuda", "train.compile"),
    ],
)
def test_cuda_graph_on_where_it_cannot_be_is_refused_and_auto_stays_off(over, device, why):
    cfg = load_config(overrides={k: v for k, v in {**BASE, **over}.items() if v is not None})
    with pytest.raises(UserError, match=f"train.cuda_graph=on cannot be: .*{why}"):
        graphed(cfg.override({"train.cuda_graph": "on"}), torch.device(device))
    assert graphed(cfg, torch.device(device)) is False  # auto
    assert graphed(cfg.override({"train.cuda_graph": "off"}), torch.device(device)) is False


def test_auto_captures_a_plain_model_on_cuda_only():
    cfg = load_config(overrides=BASE)
    assert graphed(cfg, torch.device("cuda", 0)) is True  # decided by the device's type: no GPU needed
    assert graphed(cfg, torch.device("cpu")) is False


def test_cli_cuda_graph_on_a_cpu_run_is_one_line(tmp_path):
    r = cli("train", "--preset", "chain-fc1", "--set", "train.device=cpu", "--set", "train.cuda_graph=on", "--quiet", "--out", tmp_path / "run")
    user_error(r, "train.cuda_graph=on", "CUDA")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("strict", [False, True], ids=["auto", "on"])
def test_a_capture_that_fails_falls_back_to_the_plain_step_under_auto_and_raises_under_on(monkeypatch, strict):
    """The capture itself is stood in for by one that raises, as CUDA does for an operation a graph
    cannot hold: auto warns once and steps without a graph from then on; on raises."""
    inner = CountingStep()
    step = GraphedStep(inner, torch.device("cpu"), strict=strict)
    step.capture, step.warm = True, {((2, 1), None): GraphedStep.WARMUP}  # as on CUDA, past the warm-up steps

    def refuse(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(step, "_capture", refuse)
    batch = torch.ones(2, 1)
    if strict:
        with pytest.raises(RuntimeError, match="not permitted"):
            step(0, batch, None, LossWeights(beta=torch.tensor(2.0)))
        return
    with pytest.warns(RuntimeWarning, match="goes on without it"):
        assert step(0, batch, None, LossWeights(beta=torch.tensor(2.0)))["loss"].item() == 4.0
    assert step(1, batch * 3, None, LossWeights(beta=torch.tensor(1.0)))["loss"].item() == 6.0  # plain steps, no second attempt
    assert inner.calls == [2, 2] and step.graphs == {}

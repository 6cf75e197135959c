"""Checkpoints (vaelab.checkpoint): a checkpoint written and read back restores the weights, Adam's
moments, the RNG and the step exactly; a run folder loads as its config's model; and every file
that does not fit (another architecture, a damaged state, weights that are not finite, a header
without the image shape) is refused in one line. Tiny dense models on the CPU: no training runs."""

from __future__ import annotations

import pytest
import torch

from vaelab.checkpoint import load_extra, load_run, load_state, save_checkpoint, take_checkpoint, trained_on
from vaelab.config import load_config
from vaelab.errors import UserError
from vaelab.losses import loss_weights
from vaelab.models import build_model
from vaelab.run_report import checkpoint_facts
from vaelab.runfolder import load_tensors, prepare_out, save_tensors, write_toml

SHAPE = (1, 6, 6)
CFG = load_config(overrides=["model.name=fc1", "model.hidden=[7]", "model.latent_dim=3", "train.device=cpu"])


def trained(seed: int = 0, steps: int = 3):
    """A tiny fc1 and its Adam after a few steps on random images: moments that are not zero."""
    torch.manual_seed(seed)
    model = build_model(CFG, SHAPE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        loss = model.loss(torch.rand(4, *SHAPE), step, loss_weights(CFG.loss, step))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def run_folder(tmp_path, cfg=CFG):
    out = prepare_out(tmp_path / "run", "run")
    write_toml(out / "config.toml", cfg.to_dict())
    return out


def test_a_checkpoint_read_back_continues_exactly_where_it_was_taken(tmp_path):
    model, optimizer = trained()
    save_checkpoint(tmp_path, model, optimizer, 3, SHAPE, extra={"debias_weights": torch.arange(4.0)})
    after = torch.rand(5)  # what the saved run draws next

    fresh = build_model(CFG, SHAPE)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    torch.manual_seed(123)  # another RNG state, which the checkpoint must replace
    assert load_state(tmp_path, fresh_opt, fresh) == 3
    assert torch.equal(torch.rand(5), after)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    for p, q in zip(model.parameters(), fresh.parameters()):
        s, t = optimizer.state[p], fresh_opt.state[q]
        assert torch.equal(s["exp_avg"], t["exp_avg"]) and torch.equal(s["exp_avg_sq"], t["exp_avg_sq"]) and float(s["step"]) == float(t["step"]) == 3
    assert torch.equal(load_extra(tmp_path)["debias_weights"], torch.arange(4.0))


def test_a_checkpoint_taken_now_and_written_later_holds_the_moment_it_was_taken(tmp_path):
    model, optimizer = trained()
    held = take_checkpoint(model, optimizer, 3, SHAPE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # training goes on before the checkpoint is written
    held.write(tmp_path)
    tensors, meta = load_tensors(tmp_path / "model.safetensors")
    assert all(torch.equal(tensors[k], v) for k, v in before.items())
    assert meta["step"] == "3" and meta["image_shape"] == "1,6,6" and meta["device"] == "cpu"
    assert trained_on(tmp_path) == "cpu"
    assert checkpoint_facts(tmp_path / "model.safetensors")["figures"] == {}  # a plain run: no "after training" row in its report
    save_checkpoint(tmp_path, model, optimizer, 3, SHAPE, figures={"prior_nll": 1.25})
    assert checkpoint_facts(tmp_path / "model.safetensors")["figures"] == {"prior_nll": "1.25"}


def test_a_run_folder_loads_as_its_configs_model_in_eval_mode(tmp_path):
    model, optimizer = trained()
    out = run_folder(tmp_path)
    save_checkpoint(out, model, optimizer, 3, SHAPE)
    cfg, loaded = load_run(out)
    assert cfg == CFG and not loaded.training
    x = torch.rand(2, *SHAPE)
    model.eval()
    assert torch.equal(loaded(x), model(x))


def test_a_state_of_another_architecture_is_refused(tmp_path):
    model, optimizer = trained()
    save_checkpoint(tmp_path, model, optimizer, 3, SHAPE)
    other = build_model(CFG.override({"model.hidden": [9]}), SHAPE)
    with pytest.raises(UserError, match="does not match the model"):
        load_state(tmp_path, torch.optim.Adam(other.parameters()), other)


@pytest.mark.parametrize("step", [torch.tensor(1.5), torch.tensor(-1), torch.tensor([1, 2])])
def test_a_state_whose_step_is_not_one_integer_is_damaged(tmp_path, step):
    model, optimizer = trained()
    save_checkpoint(tmp_path, model, optimizer, 3, SHAPE)
    tensors, meta = load_tensors(tmp_path / "state.safetensors")
    save_tensors(tmp_path / "state.safetensors", {**tensors, "step": step}, **meta)
    with pytest.raises(UserError, match="its step is not one integer"):
        load_state(tmp_path, torch.optim.Adam(model.parameters()), model)


def test_weights_that_are_not_finite_are_refused(tmp_path):
    model, optimizer = trained()
    out = run_folder(tmp_path)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    save_checkpoint(out, model, optimizer, 3, SHAPE)
    with pytest.raises(UserError, match="NaN or infinite"):
        load_run(out)


def test_a_model_file_without_its_image_shape_is_refused_and_one_without_its_device_says_so(tmp_path):
    model, optimizer = trained()
    out = run_folder(tmp_path)
    save_tensors(out / "model.safetensors", model.state_dict(), step=3)
    with pytest.raises(UserError, match="does not record the image shape"):
        load_run(out)
    assert trained_on(out) == ""  # written before vaelab recorded the device

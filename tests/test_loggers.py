"""train.loggers: what a run, a resumed run and a sweep write to TensorBoard and MLflow, read back
with the tools' own readers (TensorBoard's EventAccumulator, MLflow's client) and compared with
the run folder."""

from __future__ import annotations

import importlib.util
import json
import typing

import numpy as np
import pytest

from clihelp import cli, one_thread, user_error  # noqa: F401  (one_thread: a module fixture)
from vaelab.checkpoint import Checkpoint
from vaelab.config import TrainLogger, load_config
from vaelab.data import test_data_config as embedding_test_set  # not collected as a test under this name
from vaelab.errors import UserError
from vaelab.evaluate import cached_dataset
from vaelab.latent import latent_means
from vaelab.loggers import EMBED_N, LOGGERS
from vaelab.train import resume, train

pytest.importorskip("tensorboard", reason="the tensorboard extra is part of `make test`")
pytest.importorskip("mlflow", reason="the mlflow extra is part of `make test`")
from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

SMALL = {"data.name": "points", "data.n": 64, "train.steps": 50, "train.batch_size": 16, "model.name": "fc1", "model.hidden": [16], "model.latent_dim": 3, "sample.n": 8, "train.device": "cpu"}
TERMS = ("loss", "recon", "kl")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One MLflow store (SQLite) for the module: creating one costs seconds."""
    folder = tmp_path_factory.mktemp("mlflow")
    return folder, f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def store(tracking, monkeypatch, request):
    """The module's MLflow store, an experiment of the test's own, and the store's client; the
    working folder is the store's, where MLflow puts a SQLite store's artifacts (./mlruns)."""
    folder, uri = tracking
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", request.node.name)
    return MlflowClient(uri)


def jsonl(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def mlflow_history(client, run_dir, key) -> dict[int, float]:
    """step → the last value MLflow holds for it."""
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    last = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        last[m.step] = m.value
    return last


def test_the_config_names_the_loggers_there_are():
    assert list(typing.get_args(TrainLogger)) == list(LOGGERS)


def test_tensorboard_holds_every_term_per_step_the_images_and_the_test_images_codes(tmp_path):
    cfg = load_config(overrides={**SMALL, "train.loggers": ["tensorboard"]})
    run = train(cfg, out=tmp_path / "run", quiet=True)
    acc = events(tmp_path / "run")
    rows = jsonl(tmp_path / "run")
    for term in TERMS:
        logged = acc.Scalars(f"train/{term}")
        assert [e.step for e in logged] == [r["step"] for r in rows] == list(range(50))
        assert np.allclose([e.value for e in logged], [r[term] for r in rows], rtol=1e-6)
    assert set(acc.Tags()["images"]) == {"samples", "reconstructions"}
    # the projector's tensors are the latent means of the dataset's first EMBED_N test images
    test = cached_dataset(embedding_test_set(cfg.data, EMBED_N, EMBED_N))
    expected = latent_means(run.model, test.images[:EMBED_N])
    (tsv,) = (tmp_path / "run" / "tensorboard").glob("*/latent_means/tensors.tsv")
    assert np.allclose(np.loadtxt(tsv), expected.numpy(), atol=1e-5)
    assert run.history == rows


def test_mlflow_holds_the_config_every_term_per_step_and_the_folder(tmp_path, store):
    cfg = load_config(overrides={**SMALL, "train.loggers": ["mlflow"], "train.lr": 0.002})
    train(cfg, out=tmp_path / "run", quiet=True)
    run_id = json.loads((tmp_path / "run" / "mlflow.json").read_text())["run_id"]
    run = store.get_run(run_id)
    assert run.info.status == "FINISHED" and store.get_experiment(run.info.experiment_id).name == "test_mlflow_holds_the_config_every_term_per_step_and_the_folder"
    assert run.data.params["train.lr"] == "0.002" and run.data.params["model.name"] == "fc1"
    assert run.info.run_name == str((tmp_path / "run").resolve()) and run.data.tags["vaelab.folder"] == str((tmp_path / "run").resolve())  # outside the working folder
    rows = jsonl(tmp_path / "run")
    for term in TERMS:
        assert mlflow_history(store, tmp_path / "run", term) == pytest.approx({r["step"]: r[term] for r in rows}, rel=1e-6)
    artifacts = {a.path for a in store.list_artifacts(run_id)}
    assert {"config.toml", "metrics.jsonl", "model.safetensors", "samples.png", "report.html"} <= artifacts


class Killed(Exception):
    pass


def test_a_resumed_run_continues_its_logs_without_the_steps_after_its_checkpoint(tmp_path, store, monkeypatch):
    cfg = load_config(overrides={**SMALL, "train.checkpoint_every": 10, "train.loggers": ["tensorboard", "mlflow"]})
    real = Checkpoint.write

    def dying_write(self, run_dir):
        real(self, run_dir)
        if self.step == 20:
            raise Killed  # after steps 20–29 were logged

    monkeypatch.setattr(Checkpoint, "write", dying_write)
    with pytest.raises(Killed):
        train(cfg, out=tmp_path / "run", quiet=True)
    assert [e.step for e in events(tmp_path / "run").Scalars("train/loss")] == list(range(30))
    monkeypatch.setattr(Checkpoint, "write", real)
    resume(tmp_path / "run", quiet=True)
    rows = jsonl(tmp_path / "run")
    logged = events(tmp_path / "run").Scalars("train/loss")
    assert [e.step for e in logged] == list(range(50))  # the first process's steps 20–29 purged
    assert np.allclose([e.value for e in logged], [r["loss"] for r in rows], rtol=1e-6)
    assert mlflow_history(store, tmp_path / "run", "loss") == pytest.approx({r["step"]: r["loss"] for r in rows}, rel=1e-6)
    experiment = store.get_experiment_by_name("test_a_resumed_run_continues_its_logs_without_the_steps_after_its_checkpoint")
    assert len(store.search_runs([experiment.experiment_id])) == 1  # one MLflow run, continued


def test_a_sweep_logs_each_cell_its_swept_keys_and_metrics(tmp_path, store):
    sets = ["data.n=64", "train.steps=20", "train.batch_size=32", "sweep.test_n=64", "model.hidden=[16,8]", "train.device=cpu", "sweep.metrics=[pmi,mcc]", "train.loggers=[tensorboard,mlflow]"]
    out = tmp_path / "sweep"
    r = cli("sweep", "--preset", "bias-robustness", *(a for s in sets for a in ("--set", s)), "--grid", "loss.beta=0.5,4", "--grid", "data.mu=0", "--out", out, "--quiet")
    assert r.rc == 0, r.err
    for cell, beta in (("cell-beta=0.5,mu=0", 0.5), ("cell-beta=4,mu=0", 4.0)):
        row = json.loads((out / cell / "row.json").read_text())
        acc = events(out / cell)
        assert acc.Scalars("hparam/mcc")[0].value == pytest.approx(row["mcc"], rel=1e-6)
        assert acc.Scalars("hparam/pmi_untrained")[0].value == pytest.approx(row["pmi_untrained"], rel=1e-6)
        run_id = json.loads((out / cell / "mlflow.json").read_text())["run_id"]
        data = store.get_run(run_id).data
        assert data.metrics["mcc"] == pytest.approx(row["mcc"]) and float(data.params["loss.beta"]) == beta


def test_a_missing_package_is_one_line_naming_the_extra_and_writes_nothing(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    user_error(cli("train", *sets, "--set", "train.loggers=[mlflow]", "--out", tmp_path / "run"), "train.loggers mlflow", "pip install 'vaelab[mlflow]'")
    assert not (tmp_path / "run").exists()
    user_error(cli("train", *sets, "--set", "train.loggers=[tensorboard,tensorboard]", "--out", tmp_path / "run"), "train.loggers", "twice")
    user_error(cli("train", *sets, "--set", "train.loggers=[wandb]", "--out", tmp_path / "run"), "train.loggers")
    with pytest.raises(UserError, match="train.loggers tensorboard mirror a run folder"):  # in memory: nothing to mirror
        train(load_config(overrides={**SMALL, "train.loggers": ["tensorboard"]}), quiet=True)


def test_without_loggers_a_run_folder_holds_none_of_their_files(tmp_path):
    train(load_config(overrides=SMALL), out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "mlflow.json").exists()

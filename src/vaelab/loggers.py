"""Training logged where users already look: TensorBoard and MLflow (`train.loggers`).

The run folder stays the record (metrics.jsonl, config.toml, the images, the report); a logger
mirrors it as training goes:

- `tensorboard`: event files in the run folder's `tensorboard/` (every loss term per step, the
  samples and reconstructions, the latent means of test images for the embedding projector, and a
  sweep cell's swept keys and metrics as hparams): `tensorboard --logdir <run or study folder>`.
- `mlflow`: a run in MLflow's tracking store (MLFLOW_TRACKING_URI, else MLflow's default, a
  SQLite file `mlflow.db` in the working directory), experiment MLFLOW_EXPERIMENT_NAME or
  "vaelab": the config as params, every loss term per step, the run folder's files as artifacts
  when training ends, and a sweep cell's metrics. Its run id is kept in the folder (`mlflow.json`),
  so a resumed run and its sweep row log to the same MLflow run.

Each needs its package, an optional extra: `pip install 'vaelab[tensorboard]'`, `'vaelab[mlflow]'`.
A logger is a class with `rows`, `finish`, `fail` and `cell`; LOGGERS names them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

from vaelab.errors import UserError
from vaelab.runfolder import atomic_write, record_written

EMBED_N = 500
"""test images whose latent means go to TensorBoard's embedding projector"""
TERMS_SKIPPED = ("step", "epoch", "time")
"""metrics.jsonl columns that are not loss terms"""
MLFLOW_FILE = "mlflow.json"
"""the run folder's record of its MLflow run (tracking URI and run id)"""
EXPERIMENT = "vaelab"
"""the MLflow experiment when MLFLOW_EXPERIMENT_NAME is not set"""


def settings(cfg) -> dict[str, str]:
    """Every config key (`vaelab.keys.config_keys`: the sections', the dataset's and the model's)
    → its value as text: strings as they are, the rest as TOML writes them."""
    from vaelab.keys import config_keys, toml_value

    return {k.name: k.value if isinstance(k.value, str) else toml_value(k.value) for k in config_keys(cfg)}


def image_hwc(path: Path):
    """A PNG as a float (H, W, C) array in [0, 1]."""
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return image[..., None] if image.ndim == 2 else image[..., :3]


class TensorBoard:
    """Event files in `run_dir/tensorboard`; a resumed run drops the events logged after its
    checkpoint (SummaryWriter's purge_step)."""

    def __init__(self, run_dir: Path, cfg, start: int):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = run_dir / "tensorboard"
        record_written(self.dir)  # the folder's own: cleared with it by --force
        self.writer = SummaryWriter(str(self.dir), purge_step=start if start > 0 else None)
        if start == 0:
            self.writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in settings(cfg).items()), 0)

    def rows(self, rows: list[dict]) -> None:
        for row in rows:
            for key, value in row.items():
                if key not in TERMS_SKIPPED:
                    self.writer.add_scalar(f"train/{key}", value, row["step"])
        self.writer.flush()

    def finish(self, run) -> None:
        step = run.history[-1]["step"] + 1 if run.history else 0
        for name in ("samples", "reconstructions"):
            if (run.dir / f"{name}.png").is_file():
                self.writer.add_image(name, image_hwc(run.dir / f"{name}.png"), step, dataformats="HWC")
        test = embedding_images(run.config)
        if test is not None:
            from vaelab.latent import latent_means

            codes = latent_means(run.model, test.images, test.labels if run.model.n_classes else None)  # (N, L)
            metadata = test.labels.tolist() if test.labels is not None else None
            self.writer.add_embedding(codes, metadata=metadata, label_img=test.images, global_step=step, tag="latent_means")
        self.writer.close()

    def fail(self) -> None:
        self.writer.close()

    @staticmethod
    def cell(run_dir: Path, settings: dict, metrics: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(run_dir / "tensorboard")) as writer:
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in settings.items()}
            writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")


class MLflow:
    """One MLflow run per run folder, through MlflowClient (no global active run: a vectorized
    group logs its members side by side)."""

    def __init__(self, run_dir: Path, cfg, start: int):
        self.client, self.run_id = mlflow_run(run_dir, resume=start > 0)
        if start > 0:
            self.client.update_run(self.run_id, "RUNNING")
        else:
            from mlflow.entities import Param

            params = [Param(k, v[:6000]) for k, v in settings(cfg).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])

    def rows(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, row["step"]) for row in rows for k, v in row.items() if k not in TERMS_SKIPPED]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a batch
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def finish(self, run) -> None:
        self.client.log_artifacts(self.run_id, str(run.dir))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")

    @staticmethod
    def cell(run_dir: Path, settings: dict, metrics: dict) -> None:
        from mlflow.entities import Metric

        client, run_id = mlflow_run(run_dir, resume=True)
        client.log_batch(run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()])


LOGGERS = {"tensorboard": (TensorBoard, "tensorboard"), "mlflow": (MLflow, "mlflow")}
"""train.loggers name → (its class, the package it needs)"""


def mlflow_run(run_dir: Path, resume: bool):
    """(client, run id) of the run folder's MLflow run: the one `mlflow.json` names when resuming
    (or when a sweep logs a cell's row), else a new one in the experiment."""
    from mlflow.tracking import MlflowClient

    record = run_dir / MLFLOW_FILE
    if resume and record.is_file():
        known = json.loads(record.read_text())
        return MlflowClient(known["tracking_uri"]), known["run_id"]
    client = MlflowClient()
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
    run = client.create_run(experiment_id, run_name=run_name(run_dir), tags={"vaelab.folder": str(run_dir.resolve())})
    atomic_write(record, json.dumps({"tracking_uri": client.tracking_uri, "run_id": run.info.run_id}))
    return client, run.info.run_id


def run_name(run_dir: Path) -> str:
    """The folder as the user named it: relative to the working folder when inside it."""
    relative = os.path.relpath(run_dir)
    return str(run_dir.resolve()) if relative.startswith("..") else relative


def embedding_images(cfg):
    """The first EMBED_N test images of the run's dataset (`vaelab.data.test_data_config`), or
    None where the dataset has no test images to draw."""
    from vaelab.data import test_data_config
    from vaelab.evaluate import cached_dataset

    test = cached_dataset(test_data_config(cfg.data, EMBED_N, EMBED_N))
    return test.subset(slice(0, EMBED_N)) if len(test) else None


def check_loggers(names, run_dir: Path | None) -> None:
    """Before training: a user error when loggers are asked for a run without a folder (they
    mirror it), or when a logger's package is missing."""
    if names and run_dir is None:
        raise UserError(f"train.loggers {', '.join(names)} mirror a run folder, and this run has none: give it one (--out, or out= in Python)")
    check_installed(names)


def check_installed(names) -> None:
    """A user error naming the extra to install for each logger whose package is missing."""
    for name in names:
        package = LOGGERS[name][1]
        if importlib.util.find_spec(package) is None:
            raise UserError(f"train.loggers {name} needs the {package} package: pip install 'vaelab[{name}]'")


class RunLoggers:
    """The loggers of one run folder, opened when training starts (at step `start`; > 0 resumes)."""

    def __init__(self, cfg, run_dir: Path | None, start: int = 0):
        check_loggers(cfg.train.loggers, run_dir)
        self.loggers = [LOGGERS[name][0](run_dir, cfg, start) for name in cfg.train.loggers]

    def rows(self, rows: list[dict]) -> None:
        """The steps just logged to metrics.jsonl."""
        for logger in self.loggers:
            logger.rows(rows)

    def finish(self, run) -> None:
        """Training ended: log what the folder now holds, and close."""
        for logger in self.loggers:
            logger.finish(run)

    def fail(self) -> None:
        """Training diverged: close, marked failed where the logger can say so."""
        for logger in self.loggers:
            logger.fail()


def log_cell(cfg, run_dir: Path, settings: dict, row: dict) -> None:
    """A sweep cell's swept keys and measured metrics (its numeric row entries) to its loggers."""
    check_installed(cfg.train.loggers)
    metrics = {k: float(v) for k, v in row.items() if k not in settings and k not in ("cell", "seed") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name in cfg.train.loggers:
        LOGGERS[name][0].cell(run_dir, settings, metrics)

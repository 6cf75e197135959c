"""Sweeps: a grid over any config keys, one training per cell × seed, measured and tabled.

    rows = run_sweep(load_config("bias-robustness"), out="runs/bias")
    rows = run_sweep(cfg, out, grid=["loss.beta=0.5,1,2", "data.mu=0:5:0.5"])

The grid is `sweep.grid` (a preset's) with `grid` entries over it, each "key=v1,v2,…" or
"key=start:stop:step" (stop included when it lies on the grid); "k1+k2=[a1,b1],[a2,b2]" sweeps
keys together (zipped). An entry may name a family, "tcvae: loss.tc_weight=1,2": the grid is then
the union of its families, each the product of its own entries and the unnamed ones (a study of
model families, each over its own hyperparameter; sweep.csv gets a `family` column;
`vaelab.experiments.grid` parses them). Cells that share an architecture, data size and schedule
train together as one vectorized model (`vaelab.vectorized`) unless `vectorize="off"`. After training, each cell's model is measured on a test set (`sweep.metrics`),
and so is an untrained model of the same seed (the `*_untrained` columns: the baseline).

sweep.csv gets one row per cell × seed and is rewritten after every finished group, so a killed
sweep resumes by training only the cells it lacks.

Layout of the output folder:

    config.toml  sweep.csv  report.html  <metric>.png …
    cell-beta=0.5,mu=2/           a run folder (config.toml, metrics.jsonl, model.safetensors, …)
    cell-beta=0.5,mu=2,seed=1/    with sweep.seeds > 1
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.checkpoint import load_run
from vaelab.config import Config
from vaelab.data import DATASETS, Dataset, load_data
from vaelab.data.stream import ImageStream
from vaelab.device import reading_device, training_device
from vaelab.errors import TrainingDiverged, UserError
from vaelab.evaluate import METRICS, MetricInputs, Setting, cached_dataset, refusals, test_config
from vaelab.experiments.backends import check_backend, check_visible, run_tasks, task_gpus
from vaelab.experiments.grid import MAX_CELLS, Axis, grid_keys, grid_points, grid_size, key_columns, parse_axis, sweep_axes, value_text  # noqa: F401  (parse_axis: the grid's entries, as the sweep takes them)
from vaelab.experiments.study import open_study
from vaelab.experiments.sweep_report import write_sweep_report
from vaelab.experiments.sweep_table import DIVERGED_COLUMN, SWEEP_TABLE, TRAIN_COLUMNS, columns, diverged_step, read_table, write_table
from vaelab.host_memory import keep_freed_host_memory
from vaelab.latent import latent_views
from vaelab.loggers import log_cell
from vaelab.metrics import feature_net
from vaelab.metrics.posterior import kl_per_dim
from vaelab.metrics.udr import udr
from vaelab.models import build_model, fit_to_data
from vaelab.runfolder import atomic_write
from vaelab.sample import batches
from vaelab.train import Run, check_resources, train
from vaelab.vectorized import group_key, group_size, train_group

UNKNOWN_N = 60_000
"""images assumed for memory planning when a dataset's size is not known before loading (all of a file)"""

# ---------------------------------------------------------------------------------------------
# The cells.


CELL_NAME_BYTES = 180
"""the longest grid point in a cell's folder name; a longer one is cut and told apart by a hash"""


def _fitted(point: str) -> str:
    """`point` as part of a folder name that every file system takes (255 bytes at most)."""
    if len(point.encode()) <= CELL_NAME_BYTES:
        return point
    digest = hashlib.sha256(point.encode()).hexdigest()[:12]
    return point.encode()[: CELL_NAME_BYTES - 13].decode(errors="ignore") + "~" + digest


def _short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each key (beta, mu), or the whole key where two would clash."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


@dataclass(frozen=True)
class Cell:
    """One grid point × seed: its name, swept values, seed and the config it trains."""

    name: str
    values: dict
    seed: int
    config: Config


def sweep_cells(cfg: Config, axes: list[Axis]) -> list[Cell]:
    """Every grid point × seed as a validated config; repeat r adds r to train.seed and data.seed.
    A family's cells carry it first in their names and in `values` ("family")."""
    short = _short_names(grid_keys(axes))
    cells = []
    for family, values in grid_points(axes):
        base = cfg.override(values)
        point = ",".join([family] * bool(family) + [f"{short[k]}={value_text(v)}" for k, v in values.items()]) or "single"
        values = {"family": family, **values} if family else values
        for r in range(cfg.sweep.seeds):
            c = base if r == 0 else base.override({"train.seed": base.train.seed + r, "data.seed": base.data.seed + r})
            name = f"cell-{_fitted(point)}" + (f",seed={r}" if cfg.sweep.seeds > 1 else "")
            cells.append(Cell(name, values, r, c))
    return cells


def measure(model, test: Dataset, cfg: Config) -> dict[str, float]:
    """The figures of `sweep.metrics` (vaelab.evaluate.METRICS) of a model on its test set."""
    sizes = dict(n=cfg.sweep.disentanglement_n, n_test=cfg.sweep.disentanglement_n // 2, n_votes=cfg.sweep.disentanglement_votes, n_votes_eval=cfg.sweep.disentanglement_votes // 2, n_variance=cfg.sweep.disentanglement_n, dci_classifier=cfg.sweep.dci_classifier)
    inputs = MetricInputs(model, test, cfg, train_data=lambda: cached_dataset(cfg.data), feature_net=lambda: _feature_net(cfg.data), seed=cfg.train.seed, sizes=sizes)
    out: dict[str, float] = {}
    for name in cfg.sweep.metrics:
        if METRICS[name].compute is None:  # compares the cells with each other: `add_udr`, after training
            continue
        figures = METRICS[name].compute(inputs)
        out.update({c: figures[c] for c in METRICS[name].sweep_columns})
    return out


@functools.lru_cache(maxsize=2)
def _feature_net(data_cfg):
    """The FID feature net of a training set (trained once, then cached on disk and here)."""
    data = cached_dataset(data_cfg)
    return feature_net(data.images, data.labels, source=data_cfg.name)


def check_metrics(cell: Cell) -> None:
    """The test set loads, and has what each metric needs (before anything is written)."""
    cfg = cell.config
    if not cfg.sweep.metrics:
        return
    test = cached_dataset(test_config(cfg))
    refused = refusals(cfg.sweep.metrics, Setting(cfg, test, labelled=load_data(cfg.data).labels is not None, seeds=cfg.sweep.seeds), "sweep.metrics")
    if refused:
        raise UserError(next(iter(refused.values())))


# ---------------------------------------------------------------------------------------------
# The sweep.


def run_sweep(
    config: Config,
    out: Path | str,
    *,
    grid: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    vectorize: str = "auto",
    yes: bool = False,
    backend: str = "local",
    address: str | None = None,
) -> list[dict]:
    """Run (or resume) a sweep into `out`; returns the rows of sweep.csv.

    Arguments:
        config: the base config; `sweep.*` shapes the sweep, the rest trains each cell.
        out: the sweep's folder.
        grid: "key=v1,v2,…" / "key=start:stop:step" entries over `sweep.grid`.
        resume: train only the cells `out`'s sweep.csv lacks (the config must equal the stored one).
        force: overwrite an existing sweep folder at `out`.
        vectorize: "auto" trains compatible cells together as one stacked model; "off" one by one.
        yes: allow more than 10,000 cells × seeds.
        backend: where the training groups run (`vaelab.experiments.backends.BACKENDS`: local, ray).
        address: the Ray cluster to join (backend ray; else RAY_ADDRESS, else a local Ray runtime).
    """
    if vectorize not in ("auto", "off"):
        raise UserError(f"--vectorize must be auto or off, got {vectorize!r}")
    axes = sweep_axes(config, grid)
    check_backend(backend, address)
    cfg = config.override({"sweep.grid": [a.entry for a in axes]}) if grid else config
    n_cells = grid_size(axes) * cfg.sweep.seeds
    if n_cells > MAX_CELLS and not yes:
        raise UserError(f"the sweep has {n_cells:,} cells × seeds (more than {MAX_CELLS:,}); pass --yes to run it")
    cells = sweep_cells(cfg, axes)
    for cell in {(c.config.model.name, c.config.data.name, c.config.data.params): c for c in cells}.values():  # each model and dataset the grid holds
        check_metrics(cell)
    for cell in cells:  # a device or precision this machine lacks is refused before anything is written
        training_device(cell.config.train)
    gpus = max(task_gpus(cell.config.train.device) for cell in cells) if backend == "ray" else 0
    datas0 = load_data(cells[0].config.data)
    for cell in {(c.config.model, c.config.sample.n, c.config.train.device): c for c in cells}.values():  # each model fits the data and this machine before any folder is written
        check_resources(fit_to_data(cell.config, datas0), datas0.shape, training_device(cell.config.train))
    out = Path(out)
    open_study(cfg, out, "sweep", resume=resume, force=force, inputs=tuple(p for c in cells for p in c.config.input_paths()))
    keys = key_columns(axes)
    header = columns(keys, cfg.sweep.metrics)
    rows = read_table(out / SWEEP_TABLE, keys) if resume else []
    known = {r["cell"] for r in rows}
    rows += [row for c in cells if c.name not in known and (row := _finished_row(out, c)) is not None]  # written by a task the driver did not hear back from
    done = {r["cell"] for r in rows}
    todo = [c for c in cells if c.name not in done]
    if any({"features", "labels"} & set(METRICS[m].needs) for m in cfg.sweep.metrics) and todo:
        _feature_net(cfg.data)  # trained (or loaded from the cache) once here, not by every task at once
    start = time.perf_counter()

    def finished(_: int, group_rows: list[dict]) -> None:
        rows.extend(group_rows)
        write_table(out / SWEEP_TABLE, _ordered(rows, cells), header)
        if not quiet:
            print(f"{len(rows)}/{len(cells)} cells done ({time.perf_counter() - start:.0f} s)", flush=True)

    config_bytes = (out / "config.toml").read_bytes()
    groups = plan_groups(todo, vectorize)
    quiet_tasks = quiet or backend != "local"  # progress bars from many workers would interleave
    tasks = [(g, out, quiet_tasks, config_bytes) for g in groups]
    run_tasks(run_group, tasks, finished, backend=backend, address=address, gpus=gpus)
    if "udr" in cfg.sweep.metrics:
        add_udr(rows, cells, out)
    write_table(out / SWEEP_TABLE, _ordered(rows, cells), header)  # rows that came back from the cells' folders, or none yet

    write_sweep_report(out)
    return _ordered(rows, cells)


def add_udr(rows: list[dict], cells: list[Cell], out: Path) -> None:
    """Fill each row's udr (and udr_untrained): the cell's model against the other seeds of its grid
    point (`vaelab.metrics.udr`), every one on the test images of the point's first seed. A
    diverged cell gets none and is left out of the others' comparisons; a point with fewer than
    two trained seeds gets none."""
    by_name = {r["cell"]: r for r in rows}
    points: dict[str, list[Cell]] = {}
    for c in cells:
        points.setdefault(c.name.rsplit(",seed=", 1)[0], []).append(c)
    for seeds in points.values():
        test = cached_dataset(test_config(seeds[0].config))
        device = reading_device(seeds[0].config.train.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            untrained = [_codes_and_kl(_untrained_model(c.config, test), test) for c in seeds]
        for c, score in zip(seeds, udr([u[0] for u in untrained], [u[1] for u in untrained])):
            by_name[c.name]["udr_untrained"] = float(score)
        trained = [c for c in seeds if diverged_step(by_name[c.name]) is None and (out / c.name / "model.safetensors").is_file()]
        if len(trained) < 2:
            continue
        figures = [_codes_and_kl(load_run(out / c.name)[1], test) for c in trained]
        for c, score in zip(trained, udr([f[0] for f in figures], [f[1] for f in figures])):
            by_name[c.name]["udr"] = float(score)


def _untrained_model(cfg: Config, test: Dataset):
    """The untrained model of `cfg`: the global RNG seeded with train.seed, then the model built
    (the callers fork the RNG around it)."""
    torch.manual_seed(cfg.train.seed)
    return build_model(fit_to_data(cfg, cached_dataset(cfg.data)), test.shape).to(reading_device(cfg.train.device)).eval()


@torch.no_grad()
def _codes_and_kl(model, test: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The latent means (N, L) of the test images and the KL per latent dim (L,)."""
    device = next(model.parameters()).device
    mu, logvar = zip(*(model.posterior_params(xb, None) for xb, _ in batches(test.images, None, 1024, device)))
    mu, logvar = torch.cat(mu).cpu(), torch.cat(logvar).cpu()
    return mu.double().numpy(), kl_per_dim(mu, logvar).numpy()


def _ordered(rows: list[dict], cells: list[Cell]) -> list[dict]:
    rank = {c.name: i for i, c in enumerate(cells)}
    return sorted(rows, key=lambda r: rank.get(r["cell"], len(rank)))


def plan_groups(cells: list[Cell], vectorize: str = "auto", device: torch.device | None = None) -> list[list[Cell]]:
    """Cells in training groups: with "auto", those sharing a `group_key` together, in chunks of
    `vaelab.vectorized.group_size` (what fits the training device's free memory and the machine's;
    at most CPU_GROUP on the CPU); everything else alone. `device`: the training device (the first
    cell's when None)."""
    if vectorize == "off" or not cells:
        return [[c] for c in cells]
    device = device or training_device(cells[0].config.train)
    by_key: dict[Any, list[Cell]] = {}
    alone = []
    for c in cells:
        key = group_key(c.config)
        (alone.append([c]) if key is None else by_key.setdefault(key, []).append(c))
    groups = []
    for members in by_key.values():
        cfg = members[0].config
        chunk = group_size(cfg, _shape(cfg.data), cfg.data.n or DATASETS[cfg.data.name].default_n or UNKNOWN_N, device)
        groups += [members[i : i + chunk] for i in range(0, len(members), chunk)]
    return groups + alone


@functools.lru_cache(maxsize=64)
def _shape(data_cfg) -> tuple[int, int, int]:
    """The image shape (C, H, W) of a dataset (from a handful of its images)."""
    return tuple(load_data(replace(data_cfg, n=min(data_cfg.n or 8, 8))).shape)


ROW_FILE = "row.json"
"""a finished cell's row of sweep.csv, written into its folder by the task that trained it"""


def run_group(group: list[Cell], out: Path, quiet: bool, config_bytes: bytes) -> list[dict]:
    """One task: train a group of cells into `out` (whose config.toml holds `config_bytes`), measure
    them, and write each cell's row into its folder; returns the rows."""
    check_visible(out, config_bytes)
    keep_freed_host_memory()  # a Ray worker is a process of its own: the vaelab command's setting (vaelab.host_memory)
    rows = [_row(c, r) for c, r in zip(group, _train(group, out, quiet))]
    for c, row in zip(group, rows):
        atomic_write(out / c.name / ROW_FILE, json.dumps(row))
        log_cell(c.config, out / c.name, c.values, row)
    return rows


def _finished_row(out: Path, cell: Cell) -> dict | None:
    path = out / cell.name / ROW_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _train(group: list[Cell], out: Path, quiet: bool) -> list[Run | TrainingDiverged]:
    for c in group:
        if (out / c.name).exists():
            shutil.rmtree(out / c.name)  # an unfinished cell a kill left behind
    datas = [load_data(c.config.data) for c in group]
    if len(group) == 1 or any(isinstance(d.images, ImageStream) for d in datas):  # streamed data: one model at a time
        return [_train_one(c, d, out, quiet) for c, d in zip(group, datas)]
    return train_group([c.config for c in group], datas, [out / c.name for c in group], quiet=quiet)


def _train_one(cell: Cell, data: Dataset, out: Path, quiet: bool) -> Run | TrainingDiverged:
    try:
        return train(cell.config, data, out=out / cell.name, quiet=quiet)
    except TrainingDiverged as e:
        return e


_UNTRAINED: dict = {}
"""untrained figures by what they depend on (see untrained_figures)"""


def untrained_figures(cfg: Config, test: Dataset) -> dict[str, float]:
    """The metrics of the untrained model of `cfg` (the baseline of every plot), measured once per
    process for cells that differ only in loss weights or training settings: an untrained model
    depends on the model, data, sampling and metric settings and on train.seed alone. Measured
    under a forked RNG, so the caller's random state is the same whether it was measured or reused."""
    key = (cfg.model, cfg.data, cfg.sample, cfg.sweep, cfg.train.seed, cfg.train.device)
    if key not in _UNTRAINED:
        device = reading_device(cfg.train.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            _UNTRAINED[key] = measure(_untrained_model(cfg, test), test, cfg)
    return dict(_UNTRAINED[key])


def _row(cell: Cell, result: Run | TrainingDiverged) -> dict:
    cfg = cell.config
    row = {"cell": cell.name, "seed": cell.seed, **cell.values}
    test = cached_dataset(test_config(cfg)) if cfg.sweep.metrics else None
    if test is not None:
        row.update({f"{k}_untrained": v for k, v in untrained_figures(cfg, test).items()})
    if isinstance(result, TrainingDiverged):
        print(f"{cell.name}: {result}", file=sys.stderr, flush=True)
        return {**row, DIVERGED_COLUMN: result.step}
    last = result.history[-100:]
    for col, term in zip(list(TRAIN_COLUMNS)[:3], ("loss", "recon", "kl")):
        if last and term in last[0]:
            row[col] = sum(r[term] for r in last) / len(last)
    row["train_seconds"] = result.seconds
    if test is not None:
        row.update(measure(result.model, test, cfg))
    if cfg.sweep.views and result.dir is not None:
        latent_views(result.dir, n=cfg.sweep.test_n)
    return row

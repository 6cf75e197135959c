"""The VAE chain study (docs/studies.md, the chain study): each VAE trained on the previous one's output.

    rows = run_chain(load_config("chain-conv"), out="runs/chain-conv")

Generation 0 is the original data D_0. VAE g trains on T_g (built from the data so far by
`chain.mode`) and generates D_{g+1}; every dataset D_g is measured against the set its generator
trained on (`*_train`) and against the original data (`*_orig`). One row per seed × generation goes
to chain.csv, rewritten after every generation, so a killed chain resumes at the first unfinished
generation: finished VAEs are reloaded and their (deterministic) samples redrawn, never retrained.

Layout of the output folder:

    config.toml  chain.csv  report.html  variability.png  metrics.png
    seed-0/gen-000/  samples.png  occupancy.png  metrics.json  [data.npz]  vae/ (VAE 0's run folder)
    seed-0/gen-001/  … the data VAE 0 generated, and vae/ = VAE 1
    seed-0/gen-G/    the last generated dataset (no VAE)
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vaelab.checkpoint import load_run
from vaelab.config import Config
from vaelab.data import DATASETS, Dataset, load_data
from vaelab.device import check_fits, training_device
from vaelab.errors import TrainingDiverged, UserError
from vaelab.evaluate import METRICS, NEEDS, MetricInputs, Setting
from vaelab.experiments.backends import check_backend, check_visible, run_tasks, task_gpus
from vaelab.experiments.chain_report import write_chain_report, write_compare_report
from vaelab.experiments.chain_table import CHAIN_TABLE, COLUMNS, POSTERIOR_COLUMNS, PRDC, TAIL_COLUMNS, VARIABILITY_PAIRS, read_table, write_table
from vaelab.experiments.study import open_study
from vaelab.images import make_grid, png_bytes, save_grid
from vaelab.metrics import knn_radii, mean_intensity, occupancy, occupancy_distance, prdc, variability
from vaelab.metrics.posterior import memorised
from vaelab.models import MODELS, class_labels, fit_to_data
from vaelab.runfolder import atomic_write, prepare_out, write_csv
from vaelab.sample import sample
from vaelab.train import check_resources, save_reconstructions, train
from vaelab.vectorized import group_key, group_size, train_group

# ---------------------------------------------------------------------------------------------
# Seeds: every random choice of repeat r, generation g has its own seed.


def _seed(base: int, r: int, g: int = 0, salt: int = 0) -> int:
    return base + 1_000_003 * salt + 10_007 * r + g


def _subset(data, n: int, seed: int):
    """n images (of a tensor or a Dataset) drawn without replacement (seeded), or all of them when n >= len."""
    if n >= len(data):
        return data
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.subset(index) if isinstance(data, Dataset) else data[index]


# ---------------------------------------------------------------------------------------------
# Data: the original set, held-out originals, and each generation's training set.


def original_data(cfg: Config, r: int) -> tuple[Dataset, Dataset]:
    """(D_0 for repeat r, held-out originals for the ELBO)."""
    spec = DATASETS[cfg.data.name]
    h = cfg.chain.holdout
    if spec.generative:
        original = load_data(replace(cfg.data, seed=_seed(cfg.data.seed, r)))
        heldout = load_data(replace(cfg.data, n=h, seed=_seed(cfg.data.seed, r, salt=1)))
        return original, heldout
    full = load_data(replace(cfg.data, n=0))
    n = cfg.data.n or len(full) - h
    if n < 2 or h + n > len(full):
        raise UserError(f"{cfg.data.name} holds {len(full)} images: not enough for data.n={cfg.data.n} plus chain.holdout={h}")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(_seed(cfg.data.seed, r)))
    return full.subset(order[h : h + n]), full.subset(order[:h])


def training_set(cfg: Config, r: int, g: int, datasets: list[Dataset]) -> Dataset:
    """T_g, the training set of VAE g, from D_0 … D_g (`datasets`) by `chain.mode`."""
    ch, original, latest = cfg.chain, datasets[0], datasets[-1]
    n = len(original)
    if g == 0 or ch.mode == "replace":
        return latest
    if ch.mode in ("mix", "fresh"):
        n_real = round(ch.real_fraction * n)
        if ch.mode == "mix":
            real = _subset(original, n_real, _seed(cfg.data.seed, r, g, salt=2))
        else:
            real = load_data(replace(cfg.data, n=max(n_real, 1), seed=_seed(cfg.data.seed, r, g, salt=3))).subset(slice(0, n_real))
        synthetic = _subset(latest, n - n_real, _seed(cfg.data.seed, r, g, salt=4))
        return Dataset.concat([real, synthetic])
    pool = Dataset.concat(datasets)
    if ch.mode == "accumulate":
        return pool
    return _subset(pool, ch.budget or n, _seed(cfg.data.seed, r, g, salt=5))  # accumulate-subsample


def generate(cfg: Config, model, n: int, r: int, g: int) -> Dataset:
    """D_{g+1}: n samples of VAE g with the config's δ and denoising, stored as 8-bit if asked; a
    conditional model draws every class in turn, and its images carry those labels."""
    s = cfg.sample
    labels = class_labels(model, n)
    images = sample(model, n, delta=s.delta, denoise=s.denoise, seed=_seed(s.seed, r, g), labels=labels, prior=s.prior)
    return Dataset((images * 255).round() / 255 if cfg.chain.quantize else images, labels, name=f"D_{g + 1}")


# ---------------------------------------------------------------------------------------------
# Metrics of one generation.


class Neighbourhoods:
    """The PRDC subset of a set and its k-NN radii, on `device` (where the distances are computed),
    kept for the few sets a chain measures again (the original in every generation, D_g as the
    next generation's training set)."""

    def __init__(self, m: int, k: int = 5, keep: int = 3, device: torch.device | None = None):
        self.m, self.k, self.keep, self.device = m, k, keep, device or torch.device("cpu")
        self.entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for t, sub, radii in self.entries:
            if t is images:
                return sub, radii
        sub = _subset(images, self.m, seed=11).to(self.device)  # the k-NN distances on the training device
        radii = knn_radii(sub.flatten(1).double(), self.k)
        self.entries = [(images, sub, radii), *self.entries][: self.keep]
        return sub, radii


def measure(cfg: Config, images: torch.Tensor, reference: torch.Tensor, original: torch.Tensor, heldout, model, neighbourhoods=None, tail_threshold: float | None = None) -> tuple[dict, dict]:
    """(the chain.csv metrics of dataset `images`, extra per-generation detail for metrics.json).

    Arguments:
        reference: the training set of the model that generated `images` (D_0 itself at g = 0).
        original: D_0.
        model: the generating model (None at g = 0): its negative ELBO, posterior diagnostics and
            likelihood bounds on the held-out originals.
        neighbourhoods: a `Neighbourhoods` cache shared across generations (a fresh one when None); every
            metric is computed on its device (the training device in a chain).
        tail_threshold: VAE 0's 99 % quantile of nll_iw (None: this model is VAE 0, its own).
    """
    neighbourhoods = neighbourhoods or Neighbourhoods(cfg.chain.metric_samples)
    on = lambda t: t.to(neighbourhoods.device)  # noqa: E731  (a no-op on the CPU)
    row = {
        "variability": variability(on(images), VARIABILITY_PAIRS, seed=0),
        "mean_intensity": mean_intensity(on(images)),
        "distribution_diff_train": occupancy_distance(on(images), on(reference)),
        "distribution_diff_orig": occupancy_distance(on(images), on(original)),
    }
    fake, fake_radii = neighbourhoods(images)
    for name, ref in (("train", reference), ("orig", original)):
        if name == "orig" and ref is reference:  # the generator trained on the original itself
            row.update({f"{k}_orig": row[f"{k}_train"] for k in PRDC})
            continue
        real, real_radii = neighbourhoods(ref)
        scores = prdc(real, fake, k=5, real_radii=real_radii, fake_radii=fake_radii)
        row.update({f"{k}_{name}": v for k, v in scores.items()})
    row["memorised"] = memorised(fake, neighbourhoods(reference)[0]) if model is not None else math.nan
    detail = {}
    measures = DATASETS[cfg.data.name].measures  # what this dataset adds (the points' block positions)
    if measures is not None:
        columns, detail = measures(cfg.data.params, on(images))
        row.update(columns)
    row.update(model_figures(cfg, model, heldout, tail_threshold, detail))
    return row, detail


MODEL_COLUMNS = ("neg_elbo", *POSTERIOR_COLUMNS, *TAIL_COLUMNS)
"""the columns measured of the generating model rather than of its data (empty at generation 0)"""


def model_figures(cfg: Config, model, heldout: Dataset, tail_threshold: float | None, detail: dict) -> dict[str, float]:
    """The generating model on the held-out originals (MODEL_COLUMNS; NaN where it has no such
    figure: none at generation 0, no posterior or likelihood for an autoencoder); its KL per latent
    dim goes into `detail`."""
    out = dict.fromkeys(MODEL_COLUMNS, math.nan)
    if model is None or MODELS[cfg.model.name].fitted:  # D_0 has no generator; a fitted Gaussian has no ELBO
        return out
    inputs = MetricInputs(model, heldout, cfg, k=max(1, cfg.chain.iw_samples))
    out.update(METRICS["neg_elbo"].compute(inputs))  # the registry's, on held-out originals
    if not NEEDS["elbo"].met(Setting(cfg, heldout, labelled=False)):
        return out
    figures, detail["kl_per_dim"] = inputs.posterior
    out.update(figures)
    if cfg.chain.iw_samples:
        nll = inputs.image_bounds["nll_iw"]
        out.update({c: inputs.bounds[c] for c in TAIL_COLUMNS if c in inputs.bounds})
        threshold = out["nll_iw_q99"] if tail_threshold is None else tail_threshold
        out["tail_share"] = float((nll > threshold).double().mean()) if math.isfinite(threshold) else math.nan
        detail.update(tails_by_factor(heldout, nll > threshold) if math.isfinite(threshold) else {})
    return out


FACTOR_VALUES = 64
"""a factor with at most this many distinct values gets its tail share per value in metrics.json"""


def tails_by_factor(heldout: Dataset, in_tail: torch.Tensor) -> dict[str, list[list[float]]]:
    """For each ground-truth factor of the held-out originals with few values (the points' block x
    and y): [value, share of the originals with that value in the tail] pairs, by value: which
    positions are lost first. {} for data without factors."""
    if heldout.factors is None:
        return {}
    out = {}
    for f, name in enumerate(heldout.factor_names):
        values = heldout.factors[:, f]
        levels = values.unique()  # sorted
        if len(levels) <= FACTOR_VALUES:
            out[f"tail_by_{name}"] = [[float(v), float(in_tail[values == v].double().mean())] for v in levels]
    return out


# ---------------------------------------------------------------------------------------------
# The chain.


def check_chain_config(cfg: Config) -> None:
    ch = cfg.chain
    if ch.mode == "fresh" and not DATASETS[cfg.data.name].generative:
        generative = ", ".join(sorted(k for k, v in DATASETS.items() if v.generative))
        raise UserError(f"chain.mode=fresh draws new real images each generation: dataset {cfg.data.name} cannot (use one of: {generative})")
    original, _ = original_data(cfg, 0)  # data.n + chain.holdout fit the dataset …
    check_resources(fit_to_data(cfg, original), original.shape, training_device(cfg.train))  # … and the model fits its images and this machine, before any folder is written
    n = ch.samples or len(original)
    check_fits(n * math.prod(original.shape) * 4 * 2, torch.device("cpu"), f"chain.samples = {n:,} images per generation")
    m = min(ch.metric_samples, max(n, len(original)))
    check_fits(m * m * 8 * 2, training_device(cfg.train), f"chain.metric_samples = {m:,}: the pixel distances of k-NN and memorisation ({m:,}² pairs)")


def run_chain(
    config: Config,
    out: Path | str,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    vectorize: str = "auto",
    backend: str = "local",
    address: str | None = None,
) -> list[dict]:
    """Run (or resume) a chain into `out`; returns the rows of chain.csv.

    Arguments:
        config: the whole config; `chain.*` shapes the chain, the rest trains each VAE.
        out: the chain's folder.
        resume: continue the chain in `out` (its stored config must equal `config`, except for a
            larger chain.generations, which extends a finished chain).
        force: overwrite an existing chain folder at `out`.
        vectorize: "auto" runs every seed in one task, generation by generation, each
            generation's VAEs trained as one vectorized group where the model allows; "off" one
            task per seed. The same choice gives the same chain.csv on either backend.
        backend: where the tasks run (`vaelab.experiments.backends.BACKENDS`: local, ray).
        address: the Ray cluster to join (backend ray; else RAY_ADDRESS, else a local Ray runtime).
    """
    if vectorize not in ("auto", "off"):
        raise UserError(f"--vectorize must be auto or off, got {vectorize!r}")
    cfg, out = config, Path(out)
    check_chain_config(cfg)
    check_backend(backend, address)
    training_device(cfg.train)  # a device or precision this machine lacks is refused before anything is written
    gpus = task_gpus(cfg.train.device) if backend == "ray" else 0
    open_study(cfg, out, "chain", resume=resume, force=force, inputs=cfg.input_paths(), growable=("chain.generations",))
    rows = all_rows(out) if resume else []
    start = time.perf_counter()

    def finished(_: int, seed_rows: list[dict]) -> None:
        seeds = {row["seed"] for row in seed_rows}
        rows[:] = [row for row in rows if row["seed"] not in seeds] + seed_rows
        write_table(out / CHAIN_TABLE, rows)

    config_bytes = (out / "config.toml").read_bytes()
    owns_table = backend == "local"  # one process: chain.csv itself is the resume point after every generation
    done = lambda r: [row for row in rows if row["seed"] == r]  # noqa: E731
    stacked = vectorize == "auto" and group_key(cfg) is not None  # a model that cannot stack keeps a task per seed
    seeds = [list(range(cfg.chain.seeds))] if stacked else [[r] for r in range(cfg.chain.seeds)]  # the seeds of each task
    tasks = [(cfg, out, {r: done(r) for r in task}, quiet or not owns_table, config_bytes, owns_table) for task in seeds]
    run_tasks(run_seeds, tasks, finished, backend=backend, address=address, gpus=gpus)
    write_chain_report(out, seconds=time.perf_counter() - start)
    return sorted(rows, key=lambda r: (r["seed"], r["generation"]))


def all_rows(out: Path) -> list[dict]:
    """The rows of a chain folder: its chain.csv, and any seed's newer rows (written by a task the
    driver did not hear back from)."""
    rows = {(r["seed"], r["generation"]): r for r in read_table(out / CHAIN_TABLE)}
    for table in sorted(out.glob(f"seed-*/{CHAIN_TABLE}")):
        rows.update({(r["seed"], r["generation"]): r for r in read_table(table)})
    return list(rows.values())


class Writer:
    """A chain's files, written on one background thread in the order they are handed over, while
    the next seed's samples are drawn and measured on the device. `wait` (before a generation's
    VAEs train) and `close` return once every write is done, and raise the first that failed: a
    generation trains only once every row before it is on disk, as without the thread."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaelab-chain-files")
        self.pending: list[Future] = []

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))

    def wait(self) -> None:
        """Wait for every write handed over; then raise the first that failed."""
        pending, self.pending = self.pending, []
        failed = [e for e in (f.exception() for f in pending) if e is not None]
        if failed:
            raise failed[0]

    def close(self, raising: bool = True) -> None:
        """Wait for every write and stop the thread; `raising=False` while another error is on its way."""
        try:
            self.wait()
        except Exception:
            if raising:
                raise
        finally:
            self.pool.shutdown(wait=True)


class SeedChain:
    """Repeat r of the chain in `out`/seed-r: its datasets so far, its rows, and what it writes
    after each generation. `rows` are the seed's finished rows (a resumed chain's)."""

    def __init__(self, cfg: Config, out: Path, r: int, rows: list[dict], owns_table: bool, device: torch.device, writer: Writer):
        self.cfg, self.out, self.r, self.owns_table, self.writer = cfg, out, r, owns_table, writer
        self.dir = out / f"seed-{r}"
        self.rows = list(rows)
        self.done = {row["generation"] for row in rows}
        self.original, self.heldout = original_data(cfg, r)
        self.n = cfg.chain.samples or len(self.original)
        self.datasets = [self.original]
        self.neighbourhoods = Neighbourhoods(cfg.chain.metric_samples, device=device)
        self.init: dict[str, torch.Tensor] | None = None
        """VAE g's starting weights (chain.init = finetune: VAE g−1's)"""
        if 0 not in self.done:
            self.record(0, self.original, self.original, None, 0)

    def vae_dir(self, g: int) -> Path:
        return self.dir / f"gen-{g:03d}" / "vae"

    def training_set(self, g: int) -> Dataset:
        return replace(training_set(self.cfg, self.r, g, self.datasets), name=f"chain T_{g}")

    def config(self, g: int) -> Config:
        """VAE g's config: its own train.seed."""
        return self.cfg.override({"train.seed": _seed(self.cfg.train.seed, self.r, g)})

    def record(self, g: int, images: Dataset, reference: Dataset, model, n_train: int) -> None:
        """Measure D_g here; its row, pictures and files go to the writer."""
        first = [r.get("nll_iw_q99", math.nan) for r in self.rows if r["generation"] == 1]  # VAE 0's tail, once measured
        row, detail = measure(self.cfg, images.images, reference.images, self.original.images, self.heldout, model, self.neighbourhoods, first[0] if first else None)
        row = {"seed": self.r, "generation": g, "n_train": n_train, **row}
        self.rows.append(row)
        self.writer.submit(self.write, g, images, row, detail, list(self.rows))

    def write(self, g: int, images: Dataset, row: dict, detail: dict, rows: list[dict]) -> None:
        """D_g's pictures and files, then the seed's rows up to it: its resume point, written last,
        so a generation with a row has all its files."""
        gen_dir = self.dir / f"gen-{g:03d}"
        save_grid(gen_dir / "samples.png", images.images[:64])
        atomic_write(gen_dir / "occupancy.png", png_bytes(make_grid(occupancy(images.images)[None].float(), scale=4)))
        atomic_write(gen_dir / "metrics.json", json.dumps({**row, **detail}, indent=1))
        if self.cfg.chain.save_data:
            buf = io.BytesIO()
            np.savez_compressed(buf, images=images.images.numpy(), **({"labels": images.labels.numpy()} if images.labels is not None else {}))
            atomic_write(gen_dir / "data.npz", buf.getvalue())
        write_table(self.dir / CHAIN_TABLE, rows)  # after every generation: the seed's resume point
        if self.owns_table:
            write_table(self.out / CHAIN_TABLE, all_rows(self.out))

    def advance(self, g: int, model, train_set: Dataset) -> None:
        """VAE g is trained (or reloaded): generate D_{g+1}, measure it unless it was, move on."""
        generated = generate(self.cfg, model, self.n, self.r, g)
        if g + 1 not in self.done:
            self.record(g + 1, generated, train_set, model, len(train_set))
        keep_all = self.cfg.chain.mode in ("accumulate", "accumulate-subsample")
        self.datasets = [*self.datasets, generated] if keep_all else [self.datasets[0], generated]
        self.init = {k: v.detach().clone() for k, v in model.state_dict().items()} if self.cfg.chain.init == "finetune" else None


def run_seeds(cfg: Config, out: Path, rows: dict[int, list[dict]], quiet: bool, config_bytes: bytes, owns_table: bool = False) -> list[dict]:
    """One task: run (or continue) the chains of the seeds in `rows` (seed → its finished rows) in
    `out` (whose config.toml holds `config_bytes`), generation by generation; returns their rows. The
    seeds' VAE g train together as one vectorized group where the model allows
    (`vaelab.vectorized`), each with its own data, initialisation, noise and shuffle. `owns_table` also
    rewrites the chain's chain.csv after every generation (only the one process that owns it may)."""
    check_visible(out, config_bytes)
    device = training_device(cfg.train)
    writer = Writer()
    try:
        chains = [SeedChain(cfg, out, r, seed_rows, owns_table, device, writer) for r, seed_rows in rows.items()]
        run_generations(cfg, chains, writer, device, quiet)
    except BaseException:
        writer.close(raising=False)  # what was handed over is written; the error on its way is the one reported
        raise
    writer.close()  # every file on disk (or the first failure raised) before the task returns
    return [row for c in chains for row in c.rows]


def run_generations(cfg: Config, chains: list[SeedChain], writer: Writer, device: torch.device, quiet: bool) -> None:
    """Generation by generation: every chain's VAE g trained (or reloaded), D_{g+1} drawn and measured."""
    for g in range(cfg.chain.generations):
        writer.wait()  # the rows so far are on disk before more training
        sets = [c.training_set(g) for c in chains]
        need = [g + 1 not in c.done for c in chains]  # finished before a kill: reload VAE g and redraw its (deterministic) samples
        for c, n in zip(chains, need):
            if n and c.vae_dir(g).exists():
                shutil.rmtree(c.vae_dir(g))  # an unfinished VAE a kill left behind, in whatever state
        trained = train_vaes(chains, sets, g, need, device, quiet)
        for c, model, train_set in zip(chains, trained, sets):
            if model is not None:
                finish_vae(c.vae_dir(g), model, train_set)
            c.advance(g, model if model is not None else load_run(c.vae_dir(g))[1], train_set)


def train_vaes(chains: list[SeedChain], sets: list[Dataset], g: int, need: list[bool], device: torch.device, quiet: bool) -> list:
    """Train VAE g of the chains that `need` it, on their training sets; returns the models (None
    where not needed). Chains whose models can stack (a vectorizable model, training sets of one
    size) train in vectorized groups of `group_size`, else one after another. A group with any
    chain in need trains whole, the others' members into no folder: a member's training depends on
    its group, so a chain resumed after a kill in the middle of a generation trains as it would have."""
    configs = [c.config(g) for c in chains]
    stack = len(chains) > 1 and group_key(configs[0]) is not None and len({(len(s), s.shape) for s in sets}) == 1
    size = group_size(configs[0], sets[0].shape, len(sets[0]), device) if stack else 1
    models: list = [None for _ in chains]
    for start in range(0, len(chains), size):
        group = range(start, min(start + size, len(chains)))
        if not any(need[i] for i in group):
            continue
        if len(group) == 1:
            (i,) = group
            models[i] = train(configs[i], sets[i], out=chains[i].vae_dir(g), force=True, quiet=quiet, init=chains[i].init, finish=False).model
            continue
        outs = [chains[i].vae_dir(g) if need[i] else None for i in group]
        runs = train_group([configs[i] for i in group], [sets[i] for i in group], outs, force=True, quiet=quiet, finish=False, init=[chains[i].init for i in group])
        failed = next((r for i, r in zip(group, runs) if need[i] and isinstance(r, TrainingDiverged)), None)
        if failed is not None:
            raise failed
        for i, r in zip(group, runs):
            models[i] = r.model if need[i] else None
    return models


def finish_vae(vae_dir: Path, model, train_set: Dataset) -> None:
    """A chain VAE's pictures, without the per-run report (`vaelab report DIR` builds it from the
    files), and without the optimizer state: a chain resumes per generation, never mid-VAE."""
    save_reconstructions(vae_dir, model, train_set.images, train_set.labels)
    (vae_dir / "state.safetensors").unlink(missing_ok=True)


def compare_chains(dirs: list[Path | str], out: Path | str, *, force: bool = False) -> Path:
    """Overlay several chains' curves in one report at `out`; returns the report's path."""
    tables = {}
    for d in map(Path, dirs):
        if not (d / CHAIN_TABLE).is_file() or not (d / "config.toml").is_file():
            raise UserError(f"{d} is not a chain folder (no chain.csv and config.toml); run `vaelab chain` first")
        label = d.name
        while label in tables:
            label += "'"
        tables[label] = read_table(d / CHAIN_TABLE)
    if len(tables) < 1:
        raise UserError("vaelab chain compare needs at least one chain folder")
    out = prepare_out(Path(out), "compare", force=force, inputs=dirs)
    rows = [{"chain": label, **row} for label, t in tables.items() for row in t]
    write_csv(out / "compare.csv", rows, ("chain", *COLUMNS))
    return write_compare_report(out, tables, [str(d) for d in dirs])

"""Training: one loop over in-memory batches, with checkpoints and exact resume.

    run = train(load_config("chain-conv"), out="runs/conv")

`run_loop` is the one loop skeleton: the batch order (`Batches`: a shuffle per epoch, streamed
chunks or debiased draws), the log with its NaN check (`MetricLog`), held checkpoints and the
start step of a resume. What a step does is handed in: one model (`ModelStep`) here, a stacked
group through vmap in `vaelab.vectorized`, either captured once as a CUDA graph (`GraphedStep`,
`train.cuda_graph`).

Batch i of epoch e is positions i·B … (i+1)·B of the epoch's order, a shuffle from a generator
seeded by (train.seed, e); the reparameterisation noise comes from the global torch RNG (seeded
by train.seed and saved in every checkpoint), so on the CPU a resumed run ends bitwise equal to
an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from vaelab.checkpoint import Checkpoint, load_extra, load_state, read_run_config, save_checkpoint, take_checkpoint
from vaelab.config import Config
from vaelab.data import Dataset, load_data
from vaelab.data.stream import ImageStream
from vaelab.debias import debias_weights, debiased_order
from vaelab.device import check_fits, training_device
from vaelab.errors import DIVERGED, TrainingDiverged, UserError
from vaelab.images import interleave_rows, save_grid
from vaelab.latent import latent_means
from vaelab.losses import STEP_WEIGHTS, LossWeights, loss_weights
from vaelab.loggers import RunLoggers, check_loggers
from vaelab.models import MODELS, VAE, build_model, fit_to_data, parameter_count
from vaelab.run_report import write_run_report
from vaelab.runfolder import append_jsonl, atomic_write, prepare_out, read_metrics, remove_temporary_files, require_kind, write_jsonl, write_toml
from vaelab.sample import AggregatePrior, reconstruct, sample


@dataclass
class Run:
    """What `train` returns: the config, the trained model, its data and its logged metrics."""

    config: Config
    model: VAE
    data: Dataset
    dir: Path | None
    history: list[dict] = field(default_factory=list)
    """one dict per step: step, epoch, loss and every named term"""
    seconds: float = 0.0
    """wall-clock seconds in the training loop, summed over resumes"""


def precision_context(precision: str, device: torch.device, graphed: bool = False):
    """torch.autocast in bfloat16 for "bf16" (matmuls and convolutions in bf16, the rest fp32),
    a no-op context for "fp32". A step captured as a CUDA graph (`graphed`) keeps no cache of
    cast weights: a cached cast made outside the graph would be read by every replay, stale."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=not graphed)


def schedule(cfg: Config, n: int) -> tuple[int, int]:
    """(steps per epoch, total steps). A final batch of one image is dropped (batch norm and the
    variability term need pairs)."""
    b = cfg.train.batch_size
    per_epoch = n // b if (n % b == 1 and n > 1) else math.ceil(n / b)
    total = cfg.train.steps or cfg.train.epochs * per_epoch
    return max(per_epoch, 1), total


def make_optimizer(model, lr: float, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam, with PyTorch's fused kernel where this build has it (CPU and CUDA in torch >= 2.4):
    one pass over each parameter instead of a chain of small ops, about 13% of a small model's
    step on the CPU. Deterministic like the plain one, but not bitwise equal to it. `model` is a
    module or a list of parameter tensors. `capturable` keeps its step count on the device, as a
    step captured in a CUDA graph needs."""
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else list(model)
    extra = {"capturable": True} if capturable else {}
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, **extra)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, **extra)


@torch.no_grad()
def latent_weights(model, x: torch.Tensor, y: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """The debiasing weights (N,) of the images x from the model's latent means (`vaelab.debias`)."""
    model.eval()
    try:
        return debias_weights(latent_means(model, x, y), smoothing)
    finally:
        model.train()


def check_resources(cfg: Config, shape: tuple[int, int, int], device: torch.device, members: int = 1) -> None:
    """Refuse, before anything is written or allocated, what this machine cannot hold: `members`
    models with their gradients and Adam's two moments on `device`, and sample.n images on the CPU."""
    params = parameter_count(cfg, shape)
    check_fits(members * params * 4 * 4, device, f"the model ({params:,} parameters with gradients and Adam's moments{f', × {members}' if members > 1 else ''})")
    check_fits(cfg.sample.n * math.prod(shape) * 4 * 2, torch.device("cpu"), f"sample.n = {cfg.sample.n:,} images of shape {tuple(shape)}")


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffle of epoch `epoch`: a permutation of range(n) that depends only on (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def graphed(cfg: Config, device: torch.device) -> bool:
    """Whether training captures its step as a CUDA graph (`train.cuda_graph`); `on` where it
    cannot be is a UserError naming why."""
    mode = cfg.train.cuda_graph
    why = (
        (device.type != "cuda" and f"it needs a CUDA device, and this run trains on {device.type}")
        or (not MODELS[cfg.model.name].graphable and f"model {cfg.model.name}'s step changes as it trains (a warm-up or a codebook set from the data)")
        or (cfg.train.compile and "train.compile=true compiles the step instead")
    )
    if mode == "on" and why:
        raise UserError(f"train.cuda_graph=on cannot be: {why}; use train.cuda_graph=auto or off")
    return mode != "off" and not why


def train(
    config: Config,
    data: Dataset | None = None,
    out: Path | str | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    finish: bool = True,
    init: dict[str, torch.Tensor] | None = None,
) -> Run:
    """Train the model `config` describes.

    Arguments:
        config: a validated Config (see `vaelab.config.load_config`).
        data: the training images; built from `config.data` when None.
        out: the run folder; None trains in memory only (no files, no checkpoints).
        resume: continue the run in `out` from its last checkpoint.
        force: overwrite an existing run folder at `out`.
        quiet: no progress bar.
        finish: write samples.png, reconstructions.png and report.html at the end.
        init: weights to start from (a state dict of the same architecture) instead of a fresh
            initialisation, e.g. to fine-tune; ignored when resuming from a checkpoint.
    Returns:
        a Run with the trained model (in eval mode) and the per-step history.
    """
    device = training_device(config.train)
    data = data if data is not None else load_data(config.data)
    cfg = fit_to_data(config, data)  # a conditional model's classes come from the labels
    run_dir = Path(out) if out is not None else None
    check_resources(cfg, data.shape, device)
    capture = graphed(cfg, device)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, data.shape).to(device)  # first: a config the data cannot fit writes nothing
    if init is not None:
        model.load_state_dict(init)
    check_loggers(cfg.train.loggers, run_dir)  # before the folder is written
    if run_dir is not None and not resume:
        prepare_out(run_dir, "run", force=force, inputs=cfg.input_paths())
        write_toml(run_dir / "config.toml", cfg.to_dict())
    if run_dir is not None and resume:
        require_kind(run_dir, "run")
        if not (run_dir / "state.safetensors").is_file() and (run_dir / "model.safetensors").is_file():
            raise UserError(f"{run_dir} has trained weights but no state.safetensors to resume from (a chain's finished VAE keeps none); train a new run instead")
        remove_temporary_files(run_dir)  # left by a killed process
        (run_dir / DIVERGED).unlink(missing_ok=True)  # the resumed run says again if it diverges

    optimizer = make_optimizer(model, cfg.train.lr, capturable=capture)
    step = 0
    history: list[dict] = []
    loop_state: dict[str, torch.Tensor] = {}  # the loop's own state in a checkpoint: the epoch's debiasing weights
    if resume and run_dir is not None and (run_dir / "state.safetensors").is_file():
        step = load_state(run_dir, optimizer, model, cfg.train.seed)
        loop_state = load_extra(run_dir)  # on the CPU, where the debiased draws are made
        history = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["step"] < step]
        write_jsonl(run_dir / "metrics.jsonl", history)  # drop rows logged after the checkpoint
    elif run_dir is not None:
        write_jsonl(run_dir / "metrics.jsonl", [])

    streamed = isinstance(data.images, ImageStream)  # on disk: each batch is read when it is due
    if streamed and cfg.train.debias:
        raise UserError("train.debias weighs every image each epoch, which streamed data (data.stream) cannot afford: set data.stream=off or train.debias=false")
    x = data.images if streamed else data.images.to(device)
    y = data.labels.to(device) if model.n_classes else None  # (N,) for a conditional model
    n = x.shape[0]
    per_epoch, total = schedule(cfg, n)
    if n < 2 and (cfg.loss.variability_weight > 0 or cfg.model.batch_norm):
        raise UserError(f"the dataset holds {n} image(s); batch norm and the variability term need at least 2")

    def orders(epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Epoch `epoch`'s order of the images, and what it adds to the log."""
        nonlocal loop_state
        if not cfg.train.debias:  # a shuffle, or chunk by chunk for streamed data (vaelab.data.stream)
            return (x.epoch_order(cfg.train.seed, epoch) if streamed else epoch_order(cfg.train.seed, epoch, n).to(device)), {}
        if int(loop_state.get("debias_epoch", -1)) != epoch:  # draws by the inverse density of the codes, weighed once per epoch
            loop_state = {"debias_weights": latent_weights(model, x, y, cfg.train.debias_smoothing), "debias_epoch": torch.tensor(epoch)}
        w = loop_state["debias_weights"]
        ess = 1.0 / w.double().pow(2).sum().float()  # how many distinct images the draws are worth
        return debiased_order(w, cfg.train.seed, epoch).to(device), {"debias_ess": ess.to(device)}

    autocast = precision_context(cfg.train.precision, device, graphed=capture)
    loss_fn = torch.compile(model.loss) if cfg.train.compile else model.loss
    stepper = ModelStep(model, optimizer, loss_fn, autocast, cfg.train.input_noise)
    batches = Batches(x, y, orders, cfg.train.batch_size, per_epoch, device)
    loggers = RunLoggers(cfg, run_dir, step)
    log = MetricLog([run_dir], [history], start=time.perf_counter() - (history[-1]["time"] if history else 0.0), last_good=[step], stop=True, loggers=[loggers])
    checkpoint = (lambda member, at: take_checkpoint(model, optimizer, at, data.shape, loop_state)) if run_dir is not None else None
    model.train()
    step = run_loop(
        GraphedStep(stepper, device, strict=cfg.train.cuda_graph == "on") if capture else stepper,
        batches,
        StepWeights(lambda at: loss_weights(cfg.loss, at, len(x)), device if capture or cfg.train.compile else None),
        log,
        start=step,
        total=total,
        checkpoint=checkpoint,
        checkpoint_every=cfg.train.checkpoint_every,
        bar=tqdm(total=total, initial=step, unit="step", disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True),
    )
    optimizer.zero_grad(set_to_none=True)  # a captured step's gradients live in the graph's memory: let it go
    if log.held[0] is not None:  # the last step's checkpoint, which no later step vouches for
        batch, labels = batches.last
        if not gives_finite_loss(model, batch, step, loss_weights(cfg.loss, step, len(x)), labels, autocast):
            log.diverged(0, step - 1, "the final weights give a non-finite loss")
        log.commit(0)
    figures = model.after_training(x, cfg.train.seed)  # a stage after the loop (a VQ-VAE fits its prior): what it measured
    if figures and run_dir is not None:
        save_checkpoint(run_dir, model, optimizer, step, data.shape, loop_state, figures)
    fit_sampling_prior(model, cfg, x, run_dir)
    seconds = time.perf_counter() - log.start
    model.eval()
    run = Run(cfg, model, data, run_dir, history, seconds)
    if run_dir is not None and finish:
        finish_run(run)
    loggers.finish(run)
    return run


LOG_EVERY = 50
"""steps between reads of the logged terms (one device sync each)"""


class Batches:
    """The batch order of the loop, for one model or a stacked group alike.

    `orders(epoch)` gives the epoch's order of the images, (N,) for one model or (M, N) for M
    members each over its own images (`images` then (M, N, C, H, W)), with the 0-d tensors the
    order adds to the log; batch i of an epoch is positions i·B … (i+1)·B of it. Streamed images
    (an `ImageStream`, one model) are read from disk batch by batch, with a CPU order."""

    def __init__(self, images, labels: torch.Tensor | None, orders, batch_size: int, per_epoch: int, device: torch.device):
        self.images, self.labels, self.orders = images, labels, orders
        self.batch_size, self.per_epoch, self.device = batch_size, per_epoch, device
        self.epoch, self.order, self.logged, self.members = -1, None, {}, None
        self.last: tuple[torch.Tensor, torch.Tensor | None] | None = None
        """the batch last handed out"""

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Batch `step`: images (B, C, H, W) or (M, B, C, H, W), labels (B,) or (M, B) or None."""
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            (self.order, self.logged), self.epoch = self.orders(epoch), epoch
            self.members = torch.arange(len(self.order), device=self.order.device)[:, None] if self.order.dim() == 2 else None  # (M, 1)
        index = self.order[..., i * self.batch_size : (i + 1) * self.batch_size]  # (B,) or (M, B)
        if self.members is not None:  # a stacked group: member m's batch from its own images
            self.last = self.images[self.members, index], None if self.labels is None else self.labels[self.members, index]
        else:
            self.last = self.images[index].to(self.device), None if self.labels is None else self.labels[index.to(self.labels.device)]
        return self.last


class StepWeights:
    """Each step's loss weights, `of(step)` (floats, or (M,) tensors for a group). With a `device`,
    the float weights that schedules move (`losses.STEP_WEIGHTS`: β, the capacity target) are
    handed over as 0-d tensors there, refilled each step, so a captured graph or a compiled loss
    reads each step's value instead of baking one in."""

    def __init__(self, of, device: torch.device | None = None):
        self.of = of
        self.moving = {name: torch.zeros((), device=device) for name in STEP_WEIGHTS} if device is not None else None

    def __call__(self, step: int) -> LossWeights:
        weights = self.of(step)
        if self.moving is None or torch.is_tensor(weights.beta):
            return weights
        return weights._replace(**{name: t.fill_(getattr(weights, name)) for name, t in self.moving.items()})


class ModelStep:
    """One optimizer step of one model: its loss (under autocast) with the step's loss weights,
    backward, Adam; returns the named terms."""

    def __init__(self, model, optimizer, loss_fn, autocast, input_noise: float):
        self.model, self.optimizer, self.loss_fn, self.autocast, self.input_noise = model, optimizer, loss_fn, autocast, input_noise

    def __call__(self, step: int, batch: torch.Tensor, labels: torch.Tensor | None, weights: LossWeights) -> dict[str, torch.Tensor]:
        with self.autocast:
            inputs = batch + self.input_noise * torch.randn_like(batch) if self.input_noise > 0 else None  # a denoising VAE: noisy inputs, clean targets
            terms = self.loss_fn(batch, step, weights, inputs=inputs, labels=labels)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        return terms


class GraphedStep:
    """A training step (`ModelStep`, or a vectorized group's) captured as a CUDA graph once per
    batch shape and replayed: one launch per step instead of one per kernel.

    Each batch shape (the last batch of an epoch may be smaller) first runs WARMUP plain steps on a
    side stream (they allocate Adam's state, cuBLAS's workspaces and autograd's buffers, which a
    capture must find in place), then is captured on fixed input tensors, on the run's device
    and side stream, every shape's graph in one memory pool. A replay copies the batch, its labels
    and the tensor weights into the fixed inputs and returns the step's terms, which the next
    replay overwrites. Weights given as floats are constants of the graph: a changed one is an
    error, never a silently stale value. The reparameterisation noise is drawn inside the graph
    from the device's generator, which replays advance as the plain steps do. Off CUDA it runs the
    same fixed-input path without a graph (how the CPU tests check it).

    A capture that fails (an operation CUDA graphs do not allow) raises with `strict`
    (train.cuda_graph=on); under `auto` it warns once and training goes on with plain steps (a
    capture records kernels and runs none, so the weights are those of the step before)."""

    WARMUP = 3

    def __init__(self, step, device: torch.device, strict: bool = False):
        self.step, self.device, self.strict = step, device, strict
        self.capture = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.capture else None  # warm-up steps and captures run here
        self.warm: dict[tuple, int] = {}
        """plain steps run so far, per batch shape"""
        self.graphs: dict[tuple, tuple] = {}
        self.failed = False

    def __call__(self, step: int, batch: torch.Tensor, labels: torch.Tensor | None, weights: LossWeights) -> dict[str, torch.Tensor]:
        if self.failed:
            return self.step(step, batch, labels, weights)
        key = (tuple(batch.shape), None if labels is None else tuple(labels.shape))
        if key not in self.graphs:
            if self.capture and self.warm.get(key, 0) < self.WARMUP:
                self.warm[key] = self.warm.get(key, 0) + 1
                return self._on_side_stream(step, batch, labels, weights)
            try:
                self.graphs[key] = self._capture(step, batch, labels, weights)
            except RuntimeError as e:
                if self.strict:
                    raise
                warnings.warn(
                    f"vaelab: capturing the training step as a CUDA graph failed ({str(e).splitlines()[0][:200]}); training goes on without it. "
                    "Should anything misbehave later in this process, run again with train.cuda_graph=off",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.failed = True
                return self.step(step, batch, labels, weights)
        graph, inputs, terms = self.graphs[key]
        fixed_batch, fixed_labels, fixed_weights = inputs
        fixed_batch.copy_(batch)
        if labels is not None:
            fixed_labels.copy_(labels)
        for k, v, fixed in zip(weights._fields, weights, fixed_weights):
            if torch.is_tensor(v):
                fixed.copy_(v)
            elif v != fixed:
                raise RuntimeError(f"the loss weight {k} changed from {fixed} to {v} in a captured step: hand it over as a tensor")
        if graph is None:  # no capture: the step itself, on the fixed inputs
            return self.step(step, fixed_batch, fixed_labels, fixed_weights)
        graph.replay()
        return terms

    def _on_side_stream(self, *args) -> dict[str, torch.Tensor]:
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            terms = self.step(*args)
        main.wait_stream(self.stream)
        return terms

    def _capture(self, step: int, batch, labels, weights) -> tuple:
        inputs = (batch.clone(), None if labels is None else labels.clone(), LossWeights(*(v.clone() if torch.is_tensor(v) else v for v in weights)))
        if not self.capture:
            return None, inputs, None
        graph = torch.cuda.CUDAGraph()
        pool = next((g.pool() for g, _, _ in self.graphs.values()), None)  # the first shape's graph's memory, shared
        torch.cuda.synchronize(self.device)
        # torch.cuda.graph's steps, on this run's device and stream, with the stream restored however the capture ends
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            graph.capture_begin(*(() if pool is None else (pool,)))
            try:
                terms = self.step(step, *inputs)
            finally:
                graph.capture_end()
        return graph, inputs, terms


def run_loop(stepper, batches: Batches, weights, log: "MetricLog", *, start: int, total: int, checkpoint, checkpoint_every: int, bar) -> int:
    """The training loop of one model and of a stacked group: from step `start` to `total`, each
    step's batch from `batches`, its loss weights from `weights(step)`, one `stepper` call, the
    terms logged; every LOG_EVERY steps the log is read (a NaN/Inf loss caught there), and every
    `checkpoint_every` steps `checkpoint(member, step)` is taken and held until the loss of the
    next step vouches for it. Returns the step it stopped at."""
    step = start
    while step < total and not log.all_diverged():
        batch, labels = batches(step)
        terms = stepper(step, batch, labels, weights(step))
        log.add(step, step // batches.per_epoch, {**terms, **batches.logged})  # detached on the device: read (one copy) when flushed
        step += 1
        bar.update(1)
        due = checkpoint is not None and (step % checkpoint_every == 0 or step == total)
        if step % LOG_EVERY == 0 or due:
            log.flush_check()
            bar.set_postfix(loss=f"{log.last_loss():.3f}")
        if due:  # written once the loss of the step after it is read and finite
            log.hold(step, checkpoint)
    bar.close()
    log.flush_check()
    return step


class MetricLog:
    """Per-step loss terms of M members (one model: M = 1), kept as detached tensors and read in
    one copy every LOG_EVERY steps.

    Reading them is also where a NaN/Inf loss is caught: the member's good rows are written to
    its metrics.jsonl, DIVERGED records the step, and no checkpoint of it is written past the last
    good one; with `stop` (one model) training stops there with a TrainingDiverged, else the other
    members go on (they share no parameters). A checkpoint taken at step c is `held` until the
    loss of step c (the first its weights give) is read: written if it is finite, dropped if not,
    so the checkpoint kept is one that trains on."""

    def __init__(self, dirs: list[Path | None], rows: list[list[dict]], start: float, last_good: list[int], stop: bool = False, loggers: list[RunLoggers] | None = None):
        self.dirs, self.rows, self.start, self.last_good, self.stop = dirs, rows, start, last_good, stop
        self.loggers = loggers
        self.pending: list[tuple[int, int, float, list[str], torch.Tensor]] = []
        self.held: list[Checkpoint | None] = [None for _ in dirs]
        self.failures: list[TrainingDiverged | None] = [None for _ in dirs]

    def add(self, step: int, epoch: int, terms: dict[str, torch.Tensor]) -> None:
        device = terms["loss"].device  # a term made elsewhere (a constant on the CPU) joins it there
        values = torch.stack([t.detach().float().to(device) for t in terms.values()]).reshape(len(terms), -1)  # (K, M)
        self.pending.append((step, epoch, time.perf_counter() - self.start, list(terms), values))

    def flush_check(self) -> None:
        """Move pending steps into each member's rows (and metrics.jsonl); a NaN/Inf loss marks
        the member diverged (`diverged`)."""
        if not self.pending:
            return
        values = torch.stack([p[4] for p in self.pending]).tolist()  # (S, K, M): one copy from the device
        pending, self.pending = self.pending, []
        for m, run_dir in enumerate(self.dirs):
            if self.failures[m] is not None:
                continue
            new, bad = [], None
            for (step, epoch, t, keys, _), vals in zip(pending, values):
                row = {"step": step, "epoch": epoch, **{k: v[m] for k, v in zip(keys, vals)}, "time": round(t, 4)}
                if not math.isfinite(row["loss"]):
                    bad = row
                    break
                new.append(row)
            if run_dir is not None:
                append_jsonl(run_dir / "metrics.jsonl", new)
            if self.loggers:
                self.loggers[m].rows(new)
            self.rows[m] += new
            if self.held[m] is not None and any(row["step"] == self.held[m].step for row in new):
                self.commit(m)
            if bad is not None:
                self.diverged(m, bad["step"], f"the loss is {bad['loss']}")

    def hold(self, step: int, checkpoint) -> None:
        """Take each live member's checkpoint at `step` (`checkpoint(member, step)`) and hold it."""
        for m in range(len(self.dirs)):
            if self.failures[m] is None and self.dirs[m] is not None:
                self.held[m] = checkpoint(m, step)

    def commit(self, m: int) -> None:
        """Write member m's held checkpoint."""
        self.held[m].write(self.dirs[m])
        self.last_good[m], self.held[m] = self.held[m].step, None

    def diverged(self, m: int, step: int, what: str) -> None:
        """Record in member m's folder (DIVERGED) that its training diverged at `step`; raise with `stop`."""
        run_dir, good = self.dirs[m], self.last_good[m]
        kept = f"; the last good checkpoint (step {good}) is kept in {run_dir}" if run_dir and good else ""
        if run_dir is not None:
            atomic_write(run_dir / DIVERGED, json.dumps({"step": step, "what": what, "checkpoint": good}))
        self.held[m] = None
        if self.loggers:
            self.loggers[m].fail()
        self.failures[m] = TrainingDiverged(f"training diverged at step {step}: {what}{kept} (try a lower train.lr)", step)
        if self.stop:
            raise self.failures[m]

    def all_diverged(self) -> bool:
        return all(f is not None for f in self.failures)

    def last_loss(self) -> float:
        """The last logged loss, averaged over the members still training (for the progress bar)."""
        last = [rows[-1]["loss"] for rows, f in zip(self.rows, self.failures) if rows and f is None]
        return sum(last) / len(last) if last else math.nan


def gives_finite_loss(model, batch: torch.Tensor, step: int, weights: LossWeights, labels: torch.Tensor | None, autocast) -> bool:
    """Whether the model's weights are finite and give a finite loss on `batch`: the check of the
    last step's checkpoint, which no later logged loss vouches for. Computed without gradients, in
    eval mode (no batch-norm or codebook statistics move) and under a forked RNG, so nothing the
    run goes on with changes."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return False
    devices = [batch.device] if batch.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices), autocast:
        model.eval()
        try:
            loss = model.loss(batch, step, weights, labels=labels)["loss"]
        finally:
            model.train()
    return bool(torch.isfinite(loss))


AGGREGATE_FIT_CAP = 50_000
"""the aggregate prior is fitted to the codes of at most this many training images (a seeded subset)"""


def fit_sampling_prior(model, cfg: Config, images, run_dir: Path | None) -> None:
    """sample.prior = aggregate: fit the mixture to the training images' latent means, attach it to
    the model (`model.aggregate_prior`) and write it into the run folder (prior.safetensors)."""
    if cfg.sample.prior != "aggregate":
        return
    codes = latent_means(model, images)  # (N, L) on the CPU
    if len(codes) > AGGREGATE_FIT_CAP:
        codes = codes[torch.randperm(len(codes), generator=torch.Generator().manual_seed(cfg.train.seed))[:AGGREGATE_FIT_CAP]]
    model.aggregate_prior = AggregatePrior.fit(codes, cfg.sample.prior_components, cfg.train.seed)
    if run_dir is not None:
        model.aggregate_prior.save(run_dir)


def finish_run(run: Run) -> None:
    """Write samples.png, reconstructions.png, loss.png and report.html into the run folder."""
    s, k = run.config.sample, run.model.n_classes
    labels = torch.arange(k).repeat_interleave(8) if k else None  # a conditional model: one row of 8 per class
    images = sample(run.model, len(labels) if k else s.n, delta=s.delta, denoise=s.denoise, seed=s.seed, labels=labels, prior=s.prior)
    save_grid(run.dir / "samples.png", images, nrow=8 if k else None)
    save_reconstructions(run.dir, run.model, run.data.images, run.data.labels)
    write_run_report(run.dir)


def save_reconstructions(run_dir: Path, model, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """reconstructions.png: the first 16 images, each row of 8 above its reconstructions."""
    inputs = images[:16]
    out = reconstruct(model, inputs, labels[:16] if labels is not None else None)
    save_grid(run_dir / "reconstructions.png", interleave_rows(inputs, out, 8), nrow=8)


def resume(run_dir: Path | str, *, quiet: bool = False, device: str | None = None) -> Run:
    """Continue the run in `run_dir` from its last checkpoint, with the config it stored; `device`
    (auto, cpu, cuda, cuda:N) moves it to another device than its `train.device`."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if device is not None:  # config.toml keeps the device it was started with
        cfg = cfg.override({"train.device": device})
    return train(cfg, out=run_dir, resume=True, quiet=quiet)

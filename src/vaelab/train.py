"""Training: one plain loop over in-memory batches, with checkpoints and exact resume.

    run = train(load_config("chain-conv"), out="runs/conv")

Batches are slices of the data tensor after one shuffle per epoch; the shuffle of epoch e comes
from a generator seeded by (train.seed, e), and the reparameterisation noise from the global
torch RNG (seeded by train.seed and saved in every checkpoint), so on the CPU a resumed run ends
bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
import time
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
from vaelab.models import VAE, build_model, fit_to_data, parameter_count
from vaelab.runfolder import append_jsonl, atomic_write, prepare_out, read_metrics, remove_temporary_files, require_kind, write_jsonl, write_toml


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


def precision_context(precision: str, device: torch.device):
    """torch.autocast in bfloat16 for "bf16" (matmuls and convolutions in bf16, the rest fp32),
    a no-op context for "fp32"."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def schedule(cfg: Config, n: int) -> tuple[int, int]:
    """(steps per epoch, total steps). A final batch of one image is dropped (batch norm and the
    variability term need pairs)."""
    b = cfg.train.batch_size
    per_epoch = n // b if (n % b == 1 and n > 1) else math.ceil(n / b)
    total = cfg.train.steps or cfg.train.epochs * per_epoch
    return max(per_epoch, 1), total


def make_optimizer(model, lr: float) -> torch.optim.Optimizer:
    """Adam, with PyTorch's fused kernel where this build has it (CPU and CUDA in torch >= 2.4):
    one pass over each parameter instead of a chain of small ops, about 13% of a small model's
    step on the CPU. Deterministic like the plain one, but not bitwise equal to it. `model` is a
    module or a list of parameter tensors."""
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else list(model)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def latent_weights(model, x: torch.Tensor, y: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """The debiasing weights (N,) of the images x from the model's latent means (`vaelab.debias`)."""
    from vaelab.latent import latent_means

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
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, data.shape).to(device)  # first: a config the data cannot fit writes nothing
    if init is not None:
        model.load_state_dict(init)
    if run_dir is not None and not resume:
        prepare_out(run_dir, "run", force=force, inputs=cfg.input_paths())
        write_toml(run_dir / "config.toml", cfg.to_dict())
    if run_dir is not None and resume:
        require_kind(run_dir, "run")
        if not (run_dir / "state.safetensors").is_file() and (run_dir / "model.safetensors").is_file():
            raise UserError(f"{run_dir} has trained weights but no state.safetensors to resume from (a chain's finished VAE keeps none); train a new run instead")
        remove_temporary_files(run_dir)  # left by a killed process
        (run_dir / DIVERGED).unlink(missing_ok=True)  # the resumed run says again if it diverges

    optimizer = make_optimizer(model, cfg.train.lr)
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
    n, b = x.shape[0], cfg.train.batch_size
    per_epoch, total = schedule(cfg, n)
    if n < 2 and (cfg.loss.variability_weight > 0 or cfg.model.batch_norm):
        raise UserError(f"the dataset holds {n} image(s); batch norm and the variability term need at least 2")
    bar = tqdm(total=total, initial=step, unit="step", disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    log = MetricLog(run_dir, history, start=time.perf_counter() - (history[-1]["time"] if history else 0.0), last_good=step)
    shuffled, shuffled_y, shuffled_epoch = None, None, -1
    autocast = precision_context(cfg.train.precision, device)
    loss_fn = torch.compile(model.loss) if cfg.train.compile else model.loss
    model.train()
    while step < total:
        epoch, i = divmod(step, per_epoch)
        if epoch != shuffled_epoch:
            if cfg.train.debias:  # draws by the inverse density of the codes, weighed once per epoch
                if int(loop_state.get("debias_epoch", -1)) != epoch:
                    loop_state = {"debias_weights": latent_weights(model, x, y, cfg.train.debias_smoothing), "debias_epoch": torch.tensor(epoch)}
                order = debiased_order(loop_state["debias_weights"], cfg.train.seed, epoch).to(device)
                ess = (1.0 / loop_state["debias_weights"].double().pow(2).sum().float()).to(device)  # how many distinct images the draws are worth
            elif streamed:  # chunk by chunk (vaelab.data.stream)
                order = x.epoch_order(cfg.train.seed, epoch)
            else:
                order = epoch_order(cfg.train.seed, epoch, n).to(device)
            shuffled, shuffled_epoch = (order if streamed else x[order]), epoch
            shuffled_y = y[order.to(y.device)] if y is not None else None
        batch = x[shuffled[i * b : (i + 1) * b]].to(device) if streamed else shuffled[i * b : (i + 1) * b]  # (B, C, H, W)
        cond = {} if y is None else {"labels": shuffled_y[i * b : (i + 1) * b]}  # (B,)

        with autocast:
            if cfg.train.input_noise > 0:  # a denoising VAE: noisy inputs, clean targets
                terms = loss_fn(batch, step, inputs=batch + cfg.train.input_noise * torch.randn_like(batch), **cond)
            else:
                terms = loss_fn(batch, step, **cond)
        if cfg.train.debias:  # logged with the terms: the epoch's effective sample size
            terms["debias_ess"] = ess
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        log.add(step, epoch, terms)  # detached tensors on the device: read (one copy) when flushed
        step += 1

        bar.update(1)
        checkpoint = run_dir is not None and (step % cfg.train.checkpoint_every == 0 or step == total)
        if step % LOG_EVERY == 0 or checkpoint:
            log.flush_check()
            bar.set_postfix(loss=f"{log.rows[-1]['loss']:.3f}")
        if checkpoint:  # written once the loss of the step after it is read and finite
            log.held = take_checkpoint(model, optimizer, step, data.shape, loop_state)
    bar.close()
    log.flush_check()
    if log.held is not None:  # the last step's checkpoint, which no later step vouches for
        if not gives_finite_loss(model, batch, step, cond, autocast):
            log.diverged(step - 1, "the final weights give a non-finite loss")
        log.commit()
    if model.after_training(x, cfg.train.seed) and run_dir is not None:  # a stage after the loop (a VQ-VAE's prior)
        save_checkpoint(run_dir, model, optimizer, step, data.shape, loop_state)
    seconds = time.perf_counter() - log.start
    model.eval()
    run = Run(cfg, model, data, run_dir, history, seconds)
    if run_dir is not None and finish:
        finish_run(run)
    return run


LOG_EVERY = 50
"""steps between reads of the logged terms (one device sync each)"""


class MetricLog:
    """Per-step loss terms, kept as detached tensors and read in one go every LOG_EVERY steps.

    Reading them is also where a NaN/Inf loss is caught: training stops with the step named, the
    good rows are written to metrics.jsonl, and no checkpoint is written past the last good one.
    A checkpoint taken at step c is `held` until the loss of step c (the first its weights give)
    is read: written if it is finite, dropped if not, so the checkpoint kept is one that trains on.
    """

    def __init__(self, run_dir: Path | None, rows: list[dict], start: float, last_good: int):
        self.run_dir, self.rows, self.start, self.last_good = run_dir, rows, start, last_good
        self.pending: list[tuple[int, int, float, list[str], list[torch.Tensor]]] = []
        self.held: Checkpoint | None = None

    def add(self, step: int, epoch: int, terms: dict[str, torch.Tensor]) -> None:
        self.pending.append((step, epoch, time.perf_counter() - self.start, list(terms), [t.detach() for t in terms.values()]))

    def flush_check(self) -> None:
        """Move pending steps into rows (and metrics.jsonl); raise TrainingDiverged on NaN/Inf."""
        if not self.pending:
            return
        values = gather([v for p in self.pending for v in p[4]])
        new, bad = [], None
        for step, epoch, t, keys, _ in self.pending:
            vals, values = values[: len(keys)], values[len(keys) :]
            row = {"step": step, "epoch": epoch, **dict(zip(keys, vals)), "time": round(t, 4)}
            if not math.isfinite(row["loss"]):
                bad = row
                break
            new.append(row)
        self.pending.clear()
        if self.run_dir is not None:
            append_jsonl(self.run_dir / "metrics.jsonl", new)
        self.rows += new
        if self.held is not None and any(row["step"] == self.held.step for row in new):
            self.commit()
        if bad is not None:
            self.diverged(bad["step"], f"the loss is {bad['loss']}")

    def commit(self) -> None:
        """Write the held checkpoint."""
        self.held.write(self.run_dir)
        self.last_good, self.held = self.held.step, None

    def diverged(self, step: int, what: str) -> None:
        """Record in the run folder (DIVERGED) that training diverged at `step`, and raise."""
        kept = f"; the last good checkpoint (step {self.last_good}) is kept in {self.run_dir}" if self.run_dir and self.last_good else ""
        if self.run_dir is not None:
            atomic_write(self.run_dir / DIVERGED, json.dumps({"step": step, "what": what, "checkpoint": self.last_good}))
        raise TrainingDiverged(f"training diverged at step {step}: {what}{kept} (try a lower train.lr)", step)


def gives_finite_loss(model, batch: torch.Tensor, step: int, cond: dict, autocast) -> bool:
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
            loss = model.loss(batch, step, **cond)["loss"]
        finally:
            model.train()
    return bool(torch.isfinite(loss))


def gather(values: list[torch.Tensor]) -> list[float]:
    """Logged 0-d (or (M,)) tensors → their values as Python lists, in one copy from the device.

    A term that lives elsewhere (a constant made on the CPU) is moved to the first term's device,
    so terms of mixed devices are read together rather than one sync each."""
    device = values[0].device
    return torch.stack([v.detach().float().to(device) for v in values]).tolist()


def finish_run(run: Run) -> None:
    """Write samples.png, reconstructions.png, loss.png and report.html into the run folder."""
    from vaelab.images import save_grid
    from vaelab.report import write_run_report
    from vaelab.sample import sample

    s, k = run.config.sample, run.model.n_classes
    labels = torch.arange(k).repeat_interleave(8) if k else None  # a conditional model: one row of 8 per class
    images = sample(run.model, len(labels) if k else s.n, delta=s.delta, denoise=s.denoise, seed=s.seed, labels=labels)
    save_grid(run.dir / "samples.png", images, nrow=8 if k else None)
    save_reconstructions(run.dir, run.model, run.data.images, run.data.labels)
    write_run_report(run.dir)


def save_reconstructions(run_dir: Path, model, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """reconstructions.png: the first 16 images, each row of 8 above its reconstructions."""
    from vaelab.images import interleave_rows, save_grid
    from vaelab.sample import reconstruct

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

"""Vectorized training: many models of one architecture trained at once as one stacked model.

    runs = train_group([cfg_a, cfg_b, …], [data_a, data_b, …], ["runs/a", "runs/b", …])

The members' parameters are stacked along a leading model axis (`torch.func.stack_module_state`)
and one `torch.func.vmap` of the ordinary model's `loss` runs them all: every Linear becomes one
batched matmul, every convolution one grouped convolution. There is no second copy of any
architecture: the model file is the same one `train` uses.

Each member keeps what makes it itself: its initialisation (built under its own `train.seed`, as
`train` builds it), its own images and shuffle order (`epoch_order(seed, epoch)`), its own loss
weights (β, recon and variability weights, as 0-d tensors) and its own learning rate (a stacked
Adam with one rate per member). The reparameterisation noise is drawn independently per member
(`vmap(randomness="different")`), so a member's training is the same in distribution as training
it alone, not bitwise. A member whose loss turns NaN/Inf stops counting; the others go on.

Members must share the architecture, the image shape, the number of images and the schedule
(`group_key`). Batch norm is not vectorized (its running statistics are per-call state).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from vaelab.checkpoint import save_checkpoint
from vaelab.config import Config
from vaelab.data import Dataset
from vaelab.device import training_device
from vaelab.errors import DIVERGED, TrainingDiverged, UserError
from vaelab.models import MODELS, build_model, fit_to_data
from vaelab.runfolder import append_jsonl, atomic_write, prepare_out, write_jsonl, write_toml
from vaelab.train import LOG_EVERY, Run, epoch_order, finish_run, precision_context, schedule

WEIGHTS = ("recon_weight", "beta", "variability_weight")
"""loss settings that may differ between members (as tensors); every other loss key must match"""


def group_key(cfg: Config) -> tuple | None:
    """What configs must share to train in one group; None when `cfg` cannot be vectorized."""
    if cfg.model.batch_norm or cfg.train.debias or not MODELS[cfg.model.name].vectorizable:
        return None
    d, t, s = cfg.to_dict(), cfg.train, cfg.loss
    return (
        tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d["model"].items())),
        cfg.data.name,
        cfg.data.n,
        cfg.data.path,
        t.epochs if not t.steps else 0,
        t.steps,
        t.batch_size,
        t.device,
        t.precision,
        t.input_noise,
        s.kl_schedule,
        s.warmup_steps,
    )


class StackedAdam:
    """Adam (Kingma & Ba 2015) over stacked parameters (M, …) with one learning rate per member.

    It runs torch's Adam (the fused kernel where this build has it: one pass per parameter, as
    `train` uses). With one learning rate for all it is exactly that optimizer. With several, it
    steps at lr = 1 and rescales each member's update: p ← p_old + lr_m·(p − p_old), which is
    Adam at lr_m because Adam's moments do not depend on the learning rate."""

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor):
        from vaelab.train import make_optimizer

        self.params = params
        same = bool((lr == lr[0]).all())
        self.optimizer = make_optimizer(params, float(lr[0]) if same else 1.0)
        self.scale = None if same else [lr.to(p).view(-1, *[1] * (p.dim() - 1)) for p in params]  # (M, 1, …)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.params, grads):
            p.grad = g.contiguous()  # vmap's weight gradients come transposed; the fused kernel (torch 2.13, CPU) misreads such strides
        before = [p.clone() for p in self.params] if self.scale else None
        self.optimizer.step()
        if before is not None:
            for p, old, lr in zip(self.params, before, self.scale):
                p.sub_(old).mul_(lr).add_(old)

    def member_state(self, i: int) -> list[dict[str, torch.Tensor]]:
        """Member i's moments in torch.optim.Adam's state layout, one dict per parameter."""
        out = []
        for p in self.params:
            st = self.optimizer.state[p]
            out.append({"step": st["step"].detach().clone().float().cpu().reshape(()), "exp_avg": st["exp_avg"][i].clone(), "exp_avg_sq": st["exp_avg_sq"][i].clone()})
        return out


class _LossOf(nn.Module):
    """Calls the wrapped model's `loss`, so `functional_call` (which calls forward) reaches it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, step: int, weights: dict, noise: float, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.model.loss(x, step, weights, inputs=x + noise * torch.randn_like(x) if noise > 0 else None, labels=labels)


def train_group(
    configs: list[Config],
    datas: list[Dataset],
    outs: list[Path | str | None],
    *,
    force: bool = False,
    quiet: bool = False,
    finish: bool = True,
) -> list[Run | TrainingDiverged]:
    """Train every member of a group at once.

    Arguments:
        configs: one Config per member, all with the same `group_key`.
        datas: each member's training images; same shape and count for all.
        outs: each member's run folder (config.toml, metrics.jsonl, model.safetensors,
            state.safetensors, and with `finish` its images and report.html), or None.
        force: overwrite existing run folders.
        quiet: no progress bar.
        finish: write each member's samples, reconstructions and report at the end.
    Returns:
        per member, a Run (model in eval mode, history; `seconds` is the member's share of the
        group's time) or the TrainingDiverged that stopped it.
    """
    keys = {group_key(c) for c in configs}
    if None in keys or len(keys) != 1:
        raise ValueError("train_group needs configs with one common group_key (see vaelab.vectorized.group_key)")
    shapes = {(len(d), d.shape) for d in datas}
    if len(shapes) != 1:
        raise UserError(f"a vectorized group needs the same number and shape of images in every member, got {sorted(shapes)}")
    configs = [fit_to_data(c, d) for c, d in zip(configs, datas)]  # a conditional model's classes
    cfg0, n_members = configs[0], len(configs)
    device = training_device(cfg0.train)
    models = []
    for cfg, data in zip(configs, datas):
        torch.manual_seed(cfg.train.seed)  # the same initialisation `train` would give this member
        models.append(build_model(cfg, data.shape))
    dirs = [Path(o) if o is not None else None for o in outs]
    for cfg, d in zip(configs, dirs):
        if d is not None:
            prepare_out(d, "run", force=force, inputs=cfg.input_paths())
            write_toml(d / "config.toml", cfg.to_dict())
            write_jsonl(d / "metrics.jsonl", [])

    stacked, buffers = stack_module_state([_LossOf(m) for m in models])  # each (M, …)
    params = {k: v.detach().to(device).requires_grad_() for k, v in stacked.items()}
    buffers = {k: v.to(device) for k, v in buffers.items()}
    base = copy.deepcopy(_LossOf(models[0])).to("meta")
    weights = {w: torch.tensor([getattr(c.loss, w) for c in configs], device=device) for w in WEIGHTS}  # (M,) each
    adam = StackedAdam(list(params.values()), torch.tensor([c.train.lr for c in configs]))

    images = [d.images.to(device) for d in datas]
    labels = [d.labels.to(device) for d in datas] if models[0].n_classes else None  # a conditional model's
    n, b = len(datas[0]), cfg0.train.batch_size
    per_epoch, total = schedule(cfg0, n)
    torch.manual_seed(cfg0.train.seed)
    step_fn = vmap(
        lambda p, bu, x, w, step, y: functional_call(base, (p, bu), (x, step, w, cfg0.train.input_noise, y)),
        in_dims=(0, 0, 0, 0, None, 0 if labels else None),
        randomness="different",
    )
    autocast = precision_context(cfg0.train.precision, device)  # (train.compile applies to single runs only)
    log = _GroupLog(dirs, time.perf_counter())
    bar = tqdm(total=total, unit="step", disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True, desc=f"{n_members} models")
    shuffled, shuffled_y, shuffled_epoch, step = None, None, -1, 0
    while step < total:
        epoch, i = divmod(step, per_epoch)
        if epoch != shuffled_epoch:
            orders = [epoch_order(c.train.seed, epoch, n).to(device) for c in configs]
            shuffled, shuffled_epoch = torch.stack([x[o] for x, o in zip(images, orders)]), epoch  # (M, N, C, H, W)
            shuffled_y = torch.stack([y[o] for y, o in zip(labels, orders)]) if labels else None  # (M, N)
        batch = shuffled[:, i * b : (i + 1) * b]  # (M, B, C, H, W)
        batch_y = shuffled_y[:, i * b : (i + 1) * b] if labels else None  # (M, B)
        with autocast:
            terms = step_fn(params, buffers, batch, weights, step, batch_y)  # name → (M,)
        grads = torch.autograd.grad(terms["loss"].sum(), list(params.values()))
        adam.step(list(grads))
        log.add(step, epoch, terms)
        step += 1
        bar.update(1)
        if step % LOG_EVERY == 0 or step == total:
            log.flush()
    bar.close()
    seconds = time.perf_counter() - log.start

    results: list[Run | TrainingDiverged] = []
    for i, (cfg, model, data, d) in enumerate(zip(configs, models, datas, dirs)):
        if log.diverged[i] is not None:
            results.append(log.diverged[i])
            continue
        model.to(device).load_state_dict({k[len("model.") :]: v[i].detach() for k, v in params.items()})
        if d is not None:
            optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
            for p, state in zip(model.parameters(), adam.member_state(i)):
                optimizer.state[p] = state
            save_checkpoint(d, model, optimizer, total, data.shape)
        model.eval()
        run = Run(cfg, model, data, d, log.rows[i], seconds / n_members)  # each member's share of the time
        if d is not None and finish:
            finish_run(run)
        results.append(run)
    return results


class _GroupLog:
    """Per-member rows of the logged terms, read from the stacked tensors every LOG_EVERY steps.

    A member whose loss is NaN/Inf is marked diverged at that step (its later rows are dropped);
    the others are unaffected, since members share no parameters."""

    def __init__(self, dirs: list[Path | None], start: float):
        self.dirs, self.start = dirs, start
        self.rows: list[list[dict]] = [[] for _ in dirs]
        self.diverged: list[TrainingDiverged | None] = [None for _ in dirs]
        self.pending: list[tuple[int, int, float, list[str], torch.Tensor]] = []

    def add(self, step: int, epoch: int, terms: dict[str, torch.Tensor]) -> None:
        values = torch.stack([t.detach().float() for t in terms.values()])  # (K, M)
        self.pending.append((step, epoch, time.perf_counter() - self.start, list(terms), values))

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack([p[4] for p in self.pending]).tolist()  # (S, K, M)
        for i, d in enumerate(self.dirs):
            if self.diverged[i] is not None:
                continue
            new = []
            for (step, epoch, t, keys, _), vals in zip(self.pending, values):
                row = {"step": step, "epoch": epoch, **{k: v[i] for k, v in zip(keys, vals)}, "time": round(t, 4)}
                if not math.isfinite(row["loss"]):
                    self.diverged[i] = TrainingDiverged(f"training diverged at step {step}: the loss is {row['loss']} (try a lower train.lr)", step)
                    if d is not None:
                        atomic_write(d / DIVERGED, json.dumps({"step": step, "what": f"the loss is {row['loss']}", "checkpoint": 0}))
                    break
                new.append(row)
            if d is not None:
                append_jsonl(d / "metrics.jsonl", new)
            self.rows[i] += new
        self.pending.clear()

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

This file holds only the stacked step (`GroupStep`) and its optimizer; the loop around it, with
its batch order, log, NaN check and checkpoints (each member's, in its own folder), is
`vaelab.train.run_loop`, the one single runs use, captured as a CUDA graph the same way.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from vaelab.checkpoint import take_checkpoint
from vaelab.config import Config
from vaelab.data import Dataset
from vaelab.device import free_memory, training_device
from vaelab.errors import TrainingDiverged, UserError
from vaelab.loggers import RunLoggers, check_loggers
from vaelab.losses import LossWeights, kl_weight, loss_weights
from vaelab.models import MODELS, build_model, fit_to_data, parameter_count, step_bytes
from vaelab.runfolder import prepare_out, write_jsonl, write_toml
from vaelab.train import Batches, GraphedStep, MetricLog, Run, epoch_order, finish_run, fit_sampling_prior, graphed, make_optimizer, precision_context, run_loop, schedule

GROUP_SHARE = 0.5
"""share of the training device's free memory (and of the machine's) one vectorized group may take"""
CPU_GROUP = 16
"""members per vectorized group at most on the CPU: beyond it a 2-core CPU gains nothing, and a
smaller group is a finer resume point; a GPU's groups are sized by its memory alone"""

def group_key(cfg: Config) -> tuple | None:
    """What configs must share to train in one group; None when `cfg` cannot be vectorized."""
    if cfg.model.batch_norm or cfg.train.debias or cfg.train.compile or not MODELS[cfg.model.name].vectorizable:
        return None  # (train.compile compiles a single run's loss: such a run trains alone)
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
        t.cuda_graph,
        t.input_noise,
        s.kl_schedule,
        s.warmup_steps,
    )


def member_bytes(cfg: Config, shape: tuple[int, int, int], n: int) -> tuple[int, int]:
    """(device bytes, host bytes) one member of a vectorized group of `cfg`'s model takes, training
    on n images of `shape`: on the device its images (stacked once), its weights with their
    gradients and Adam's two moments, and one step's tensors (`vaelab.models.step_bytes`, traced on
    the meta device); on the host its images, as loaded."""
    if MODELS[cfg.model.name].conditional:  # classes come from the labels, maybe not read yet; the size hardly depends on them
        cfg = cfg.override({"model.classes": max(cfg.model.params.classes, 1)})
    images = n * math.prod(shape) * 4
    return images + parameter_count(cfg, shape) * 4 * 4 + step_bytes(cfg, shape, cfg.train.batch_size), images


def group_size(cfg: Config, shape: tuple[int, int, int], n: int, device: torch.device) -> int:
    """How many members like `cfg` (n images of `shape`) one group may hold: those that fit
    GROUP_SHARE of `device`'s free memory and of the machine's, at most CPU_GROUP on the CPU, at least 1."""
    on_device, on_host = member_bytes(cfg, shape, n)
    size = min(GROUP_SHARE * free_memory(device) // on_device, GROUP_SHARE * free_memory(torch.device("cpu")) // on_host)
    if device.type == "cpu":
        size = min(size, CPU_GROUP)
    return max(1, int(size))


class StackedAdam:
    """Adam (Kingma & Ba 2015) over stacked parameters (M, …) with one learning rate per member.

    It runs torch's Adam (the fused kernel where this build has it: one pass per parameter, as
    `train` uses). With one learning rate for all it is exactly that optimizer. With several, it
    steps at lr = 1 and rescales each member's update: p ← p_old + lr_m·(p − p_old), which is
    Adam at lr_m because Adam's moments do not depend on the learning rate."""

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor, capturable: bool = False):
        self.params = params
        same = bool((lr == lr[0]).all())
        self.optimizer = make_optimizer(params, float(lr[0]) if same else 1.0, capturable)
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


class LossForward(nn.Module):
    """Calls the wrapped model's `loss`, so `functional_call` (which calls forward) reaches it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, step: int, weights: LossWeights, noise: float, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.model.loss(x, step, weights, inputs=x + noise * torch.randn_like(x) if noise > 0 else None, labels=labels)


class GroupStep:
    """One optimizer step of a stacked group: every member's loss in one vmap (each member its
    own batch, weights and noise), one backward, the stacked Adam; returns the terms, each (M,).

    `params` and `buffers` hold the members' stacked tensors (M, …); `member(i)` gives member i
    back as an ordinary model and optimizer (for its checkpoints and its Run)."""

    def __init__(self, models: list[nn.Module], configs: list[Config], device: torch.device, capturable: bool = False):
        stacked, buffers = stack_module_state([LossForward(m) for m in models])  # each (M, …)
        self.models, self.configs = models, configs
        self.params = {k: v.detach().to(device).requires_grad_() for k, v in stacked.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.adam = StackedAdam(list(self.params.values()), torch.tensor([c.train.lr for c in configs]), capturable)
        self.autocast = precision_context(configs[0].train.precision, device, graphed=capturable)
        base, noise = copy.deepcopy(LossForward(models[0])).to("meta"), configs[0].train.input_noise
        self.losses = vmap(
            lambda p, bu, x, w, step, y: functional_call(base, (p, bu), (x, step, w, noise, y)),
            in_dims=(0, 0, 0, weight_dims(group_weights(configs, device)(0)), None, 0 if models[0].n_classes else None),
            randomness="different",
        )

    def __call__(self, step: int, batch: torch.Tensor, labels: torch.Tensor | None, weights: LossWeights) -> dict[str, torch.Tensor]:
        with self.autocast:
            terms = self.losses(self.params, self.buffers, batch, weights, step, labels)  # name → (M,)
        grads = torch.autograd.grad(terms["loss"].sum(), list(self.params.values()))
        self.adam.step(list(grads))
        return terms

    @torch.no_grad()
    def finite_losses(self, step: int, batch: torch.Tensor, labels: torch.Tensor | None, weights: LossWeights) -> list[bool]:
        """Per member, whether its weights give a finite loss on `batch`: the check of the final
        checkpoints (`vaelab.train.gives_finite_loss` for one model), under a forked RNG."""
        device = batch.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), self.autocast:
            loss = self.losses(self.params, self.buffers, batch, weights, step, labels)["loss"]  # (M,)
        return torch.isfinite(loss).tolist()

    def member(self, i: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Member i as a model on the group's device with its trained weights, and an Adam holding its moments."""
        device = next(iter(self.params.values())).device
        model = self.models[i].to(device)
        model.load_state_dict({k[len("model.") :]: v[i].detach() for k, v in self.params.items()})
        optimizer = torch.optim.Adam(model.parameters(), lr=self.configs[i].train.lr)
        for p, state in zip(model.parameters(), self.adam.member_state(i)):
            optimizer.state[p] = state
        return model, optimizer


OPTIONAL_TERMS = (("capacity_on", "capacity"), ("dip_offdiag", "dip_diag", "dip_ii"), ("tc_weight", "dataset_size", "tc_mss"))
"""LossWeights fields that switch a term on (the first of each tuple) with the fields it reads: a
group stacks them only when some member uses the term; else they stay the float default 0 and no
member computes it (nor logs it)"""


def group_weights(configs: list[Config], device: torch.device, dataset_size: int = 0):
    """step → each member's loss weights at that step (`losses.loss_weights`), (M,) tensors on
    `device`: the KL schedule, which members share (`group_key`), applied to each member's β, and
    each member's capacity target on its own ramp. A term no member uses (`OPTIONAL_TERMS`) keeps
    its float 0. `dataset_size`: the members' training sets' size."""
    at_zero = [loss_weights(c.loss, 0, dataset_size) for c in configs]
    unused = {f for fields in OPTIONAL_TERMS if not any(getattr(w, fields[0]) for w in at_zero) for f in fields}
    fixed = LossWeights(*(0.0 if f in unused else torch.tensor(column, device=device) for f, column in zip(LossWeights._fields, zip(*at_zero))))  # (M,) each
    beta = torch.tensor([c.loss.beta for c in configs], device=device)
    schedule = configs[0].loss  # the KL schedule the members share
    moving = {"beta": lambda step: beta * kl_weight(schedule.kl_schedule, step, 1.0, schedule.warmup_steps)}
    if "capacity" not in unused:
        capacity_max = torch.tensor([c.loss.capacity_max for c in configs], device=device)
        ramp = torch.tensor([float(max(c.loss.capacity_steps, 1)) for c in configs], device=device)  # (a member without a capacity has capacity_max 0)
        moving["capacity"] = lambda step: capacity_max * (step / ramp).clamp(max=1.0)
    return lambda step: fixed._replace(**{name: of(step) for name, of in moving.items()})


def weight_dims(weights: LossWeights) -> LossWeights:
    """vmap's in_dims for a group's weights: 0 for each stacked (M,) tensor, None for a float."""
    return LossWeights(*(0 if torch.is_tensor(v) else None for v in weights))


def train_group(
    configs: list[Config],
    datas: list[Dataset],
    outs: list[Path | str | None],
    *,
    force: bool = False,
    quiet: bool = False,
    finish: bool = True,
    init: list[dict[str, torch.Tensor] | None] | None = None,
) -> list[Run | TrainingDiverged]:
    """Train every member of a group at once, in `train`'s loop (`vaelab.train.run_loop`).

    Arguments:
        configs: one Config per member, all with the same `group_key`.
        datas: each member's training images; same shape and count for all.
        outs: each member's run folder (config.toml, metrics.jsonl, model.safetensors,
            state.safetensors, and with `finish` its images and report.html), or None.
        force: overwrite existing run folders.
        quiet: no progress bar.
        finish: write each member's samples, reconstructions and report at the end.
        init: per member, weights to start from (a state dict, e.g. a chain's previous VAE to
            fine-tune) instead of its fresh initialisation, or None.
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
    capture = graphed(cfg0, device)
    models = []
    for cfg, data, start in zip(configs, datas, init or [None] * n_members):
        torch.manual_seed(cfg.train.seed)  # the same initialisation `train` would give this member
        models.append(build_model(cfg, data.shape))
        if start is not None:
            models[-1].load_state_dict(start)
    dirs = [Path(o) if o is not None else None for o in outs]
    for cfg, d in zip(configs, dirs):
        check_loggers(cfg.train.loggers, d)  # before any folder is written
    for cfg, d in zip(configs, dirs):
        if d is not None:
            prepare_out(d, "run", force=force, inputs=cfg.input_paths())
            write_toml(d / "config.toml", cfg.to_dict())
            write_jsonl(d / "metrics.jsonl", [])

    stepper = GroupStep(models, configs, device, capturable=capture)
    images = torch.empty((n_members, *datas[0].images.shape), device=device)  # (M, N, C, H, W)
    for m, d in enumerate(datas):
        images[m].copy_(d.images)  # member by member: no second host copy of them all
    labels = torch.stack([d.labels.to(device) for d in datas]) if models[0].n_classes else None  # (M, N) a conditional model's
    n = len(datas[0])
    per_epoch, total = schedule(cfg0, n)
    orders = lambda epoch: (torch.stack([epoch_order(c.train.seed, epoch, n) for c in configs]).to(device), {})  # (M, N)
    torch.manual_seed(cfg0.train.seed)
    loggers = [RunLoggers(cfg, d) for cfg, d in zip(configs, dirs)]
    log = MetricLog(dirs, [[] for _ in dirs], time.perf_counter(), [0 for _ in dirs], loggers=loggers)
    shape = datas[0].shape

    def checkpoint(i: int, step: int):
        return take_checkpoint(*stepper.member(i), step, shape)

    batches = Batches(images, labels, orders, cfg0.train.batch_size, per_epoch, device)
    weights = group_weights(configs, device, n)
    run_loop(
        GraphedStep(stepper, device, strict=cfg0.train.cuda_graph == "on") if capture else stepper,
        batches,
        weights,
        log,
        start=0,
        total=total,
        checkpoint=checkpoint if any(d is not None for d in dirs) else None,
        checkpoint_every=cfg0.train.checkpoint_every,
        bar=tqdm(total=total, unit="step", disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True, desc=f"{n_members} models"),
    )
    for p in stepper.params.values():
        p.grad = None  # a captured step's gradients live in the graph's memory: let it go
    if any(held is not None for held in log.held):  # the final checkpoints, which no later step vouches for
        batch, labels = batches.last
        finite = stepper.finite_losses(total, batch, labels, weights(total))
        for i, held in enumerate(log.held):
            if held is not None and not finite[i]:
                log.diverged(i, total - 1, "the final weights give a non-finite loss")
            elif held is not None:
                log.commit(i)
    seconds = time.perf_counter() - log.start

    results: list[Run | TrainingDiverged] = []
    for i, (cfg, data, d) in enumerate(zip(configs, datas, dirs)):
        if log.failures[i] is not None:
            results.append(log.failures[i])
            continue
        model, _ = stepper.member(i)
        model.eval()
        fit_sampling_prior(model, cfg, data.images, d)
        run = Run(cfg, model, data, d, log.rows[i], seconds / n_members)  # each member's share of the time
        if d is not None and finish:
            finish_run(run)
        loggers[i].finish(run)
        results.append(run)
    return results

"""Training throughput: vaelab's trainer against a minimal hand-written PyTorch loop (CPU or GPU).

What it measures
    `--model mlp` (the default): the 576-256-8 dense VAE (`fc1`, hidden [256], latent 8) on
    20,000 `points` images (24x24), batch 128, 3 epochs (157 steps per epoch; the last batch of
    each epoch holds 32 images), on the CPU (or the `--device` given).

    `--model conv`: vaelab's `conv` model as the chain study has it (channels [32], kernel 3, no
    pooling, hidden [115], latent 8: Conv2d(1->32, 3x3) -> ReLU -> flatten 32*22*22 -> 115 -> ReLU
    -> 16 = (mu, log sigma^2); decoder 8 -> 115 -> ReLU -> 32*22*22 -> ReLU -> ConvTranspose2d(32->1,
    3x3), 3,581,343 weights) on the same 20,000 images (kept as (N, 1, 24, 24)), batch 128,
    1 epoch per run by default (a conv step costs about 20x the mlp's on the CPU).

    `--model cnn`: vaelab's `cnn` model (the MNIST study's CNN VAE: 5x5 convs of 16 and 32
    channels, 2x2 pooling, dense 64, latent 16) on 20,000 `fontdigits` images (28x28), batch 128,
    3 epochs: the GPU target's case (issue 16).

    `--reference` chooses the other side: `loop` (the default, mlp and conv only) the hand-written
    loop below; `dataloader` the loop most users write, on vaelab's own network (the same
    initialisation) with batches from a shuffling `torch.utils.data.DataLoader` over the CPU
    images, each moved to the device (its weights then differ from vaelab's: other shuffles);
    `fp32` vaelab itself at fp32, so that `--precision bf16` (vaelab's side under bf16 autocast)
    is measured against it. The script also prints the model's FLOPs per image (forward and
    backward, torch.utils.flop_counter) and, on a GPU whose peak `_device.PEAK_TFLOPS` knows,
    vaelab's samples/s as a share of what that arithmetic allows.

    Either model is trained two ways in one process, both on the same device (`--device`: cpu,
    the default, cuda, cuda:N or auto = cuda:0 where there is one, else cpu):

    * vaelab: `vaelab.train.train(cfg, data, out=None, quiet=True)` (in memory, no files), with
      the data built once by `vaelab.data.load_data` and `train.device` = `--device` (vaelab copies
      the images to the device inside the call, before its loop);
    * hand-written: the same architecture as plain `nn.Sequential`s (layer for layer, so the
      parameter shapes and count match vaelab's model: checked, and the count printed), the same
      loss (squared error of sigmoid(logits) against x summed over pixels, batch mean, + the
      closed-form Gaussian KL summed over latent dims, batch mean), Adam lr 1e-3, one shuffle per
      epoch by indexing the whole tensor (the same permutations as vaelab's), batches as slices,
      the same number of steps and the same `torch.manual_seed`. Inside the timed call, before its
      loop, it moves the images and the model to the device once, as vaelab does; each epoch's
      permutation is drawn on the CPU (vaelab's seeded CPU generator) and moved to the device.

    Both start from the same seed and consume the RNG in the same order. The hand-written loop uses
    plain `torch.optim.Adam`; vaelab uses Adam's fused kernel (the same update in one pass per
    parameter), so the weights agree to rounding only: the warm-up round prints the largest
    parameter difference (mlp: about 5e-3 after 471 steps; 0 with plain Adam on both sides).

    After one warm-up round of each, the two alternate (vaelab, then hand-written) for `--rounds`
    rounds with the same torch thread count. Each round prints samples/s (images processed ÷
    seconds) for both, timed two ways: the whole call (model construction, optimizer, the move to
    the device, loop) and the loop only (vaelab's `run.seconds`; the same span of the hand-written
    function). On the CPU the two differ by well under 1%; the ratio uses the whole call. The line
    before the last is `row: vaelab=...; reference=...` (the medians, for bench/all.py's table),
    the last is `ratio: X.XX`: median vaelab samples/s ÷ median hand-written samples/s (whole
    call). Target (issue 7): >= 1.0 for both models.

    On a GPU both timings wait for the device: vaelab's loop ends by reading its logged losses
    (a copy to the host, which waits for every queued kernel), and the hand-written loop calls
    `torch.cuda.synchronize` before it takes its end time. The warm-up round absorbs CUDA's
    start-up (context, kernels, cuBLAS handles). The header then names the GPU, and a `machine:`
    line names it for bench/all.py's table; the parameter difference is taken on the CPU.

    The timings are wall-clock: on a small machine other busy processes (the load average is
    printed before and after) move single rounds by far more than the gap being measured, and
    with every core in use one busy neighbour stalls all of torch's threads. Use more rounds, or
    `--threads 1`, when the machine is not quiet.

How to run (from the repository root)
    .venv/bin/python bench/train_throughput.py             # mlp: 9 rounds of 3 epochs each
    .venv/bin/python bench/train_throughput.py --rounds 11
    .venv/bin/python bench/train_throughput.py --threads 1
    .venv/bin/python bench/train_throughput.py --model conv   # conv: 5 rounds of 1 epoch each
    .venv/bin/python bench/train_throughput.py --device cuda  # both sides on the GPU (also cuda:N, auto)
    .venv/bin/python bench/train_throughput.py --model cnn --reference dataloader --device cuda   # the GPU target: >= 5
    .venv/bin/python bench/train_throughput.py --model cnn --precision bf16 --reference fp32 --device cuda   # bf16 >= fp32
    .venv/bin/python bench/train_throughput.py --quick     # smoke check: 1 round of 1 epoch on 2,000 images (conv: 512)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.device import describe
from vaelab.losses import loss_weights
from vaelab.models import build_model
from vaelab.train import train

from _device import add_device, peak_flops, resolved, synchronize

N, BATCH, HIDDEN, LATENT, LR, SEED = 20000, 128, 256, 8, 1e-3, 0
CONV_CHANNELS, CONV_KERNEL, CONV_HIDDEN = 32, 3, 115  # the conv model: the chain study's
QUICK_N = {"mlp": 2000, "conv": 512, "cnn": 1024}  # images per run with --quick
DEFAULTS = {"mlp": (9, 3), "conv": (5, 1), "cnn": (3, 3)}  # (rounds, epochs) per model


ARCHS = {
    "mlp": {"data.name": "points", "model.name": "fc1", "model.hidden": [HIDDEN], "model.latent_dim": LATENT},
    "conv": {
        "data.name": "points",
        "model.name": "conv",
        "model.channels": [CONV_CHANNELS],
        "model.kernel": CONV_KERNEL,
        "model.pool": False,
        "model.hidden": [CONV_HIDDEN],
        "model.latent_dim": LATENT,
    },
    "cnn": {"data.name": "fontdigits", "model.name": "cnn"},  # the MNIST study's CNN VAE as vaelab ships it, on 28x28 digits
}
"""each --model's data and architecture"""


def make_config(epochs: int, model: str = "mlp", n: int = N, device: str = "cpu", precision: str = "fp32"):
    return load_config(
        overrides={
            "data.n": n,
            **ARCHS[model],
            "train.batch_size": BATCH,
            "train.epochs": epochs,
            "train.device": device,
            "train.precision": precision,
            "train.lr": LR,
            "train.seed": SEED,
        }
    )


HAND_MODELS = ("mlp", "conv")
"""the models `hand_model` writes out layer for layer"""


def hand_model(model: str, shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) of the hand-written VAE: the same layers as vaelab's fc1 or conv."""
    if model == "mlp":
        d = shape[0] * shape[1] * shape[2]
        encoder = nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))
        decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, d))
        return encoder, decoder
    c, h, w = shape[0], shape[1] - CONV_KERNEL + 1, shape[2] - CONV_KERNEL + 1  # 1, 22, 22
    encoder = nn.Sequential(
        nn.Conv2d(c, CONV_CHANNELS, CONV_KERNEL), nn.ReLU(), nn.Flatten(),
        nn.Linear(CONV_CHANNELS * h * w, CONV_HIDDEN), nn.ReLU(), nn.Linear(CONV_HIDDEN, 2 * LATENT),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(LATENT, CONV_HIDDEN), nn.ReLU(), nn.Linear(CONV_HIDDEN, CONV_CHANNELS * h * w), nn.ReLU(),
        nn.Unflatten(1, (CONV_CHANNELS, h, w)), nn.ConvTranspose2d(CONV_CHANNELS, c, CONV_KERNEL),
    )  # fmt: skip
    return encoder, decoder


def run_dataloader(cfg, images: torch.Tensor, epochs: int, device: torch.device) -> tuple[float, float, int, list[torch.Tensor]]:
    """(whole-call seconds, loop seconds, steps, trained parameters) for the loop most users write:
    vaelab's own network (`build_model`, the same initialisation), the images in a
    `torch.utils.data.DataLoader(TensorDataset(...), shuffle=True)` on the CPU, each batch moved to
    `device`, the same loss written out, plain Adam. Its shuffles are the DataLoader's own."""
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    model = build_model(cfg, tuple(images.shape[1:])).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(images), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(SEED))
    steps = 0
    loop_start = time.perf_counter()
    for _ in range(epochs):
        for (batch,) in loader:
            batch = batch.to(device)  # (B, C, H, W)
            mu, logvar = model.encoder(batch).chunk(2, dim=1)  # (B, L), (B, L)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            recon = (torch.sigmoid(model.decoder(z)) - batch).pow(2).flatten(1).sum(1).mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            (recon + kl).backward()
            optimizer.step()
            steps += 1
    synchronize(device)
    end = time.perf_counter()
    return end - t0, end - loop_start, steps, [p.detach() for p in model.parameters()]


def flops_per_sample(cfg, shape: tuple[int, int, int], batch: int = 8) -> float:
    """FLOPs of one image through a training step of vaelab's model (forward and backward, as
    torch.utils.flop_counter counts matmuls and convolutions; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(SEED)
    model = build_model(cfg, shape)
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(torch.rand(batch, *shape), 0, loss_weights(cfg.loss, 0))["loss"].backward()
    return counter.get_total_flops() / batch


def run_vaelab(cfg, data) -> tuple[float, float, int, list[torch.Tensor]]:
    """(whole-call seconds, loop seconds, steps, trained parameters) for one vaelab run."""
    t0 = time.perf_counter()
    run = train(cfg, data, out=None, quiet=True)
    whole = time.perf_counter() - t0
    return whole, run.seconds, len(run.history), [p.detach() for p in run.model.parameters()]


def run_hand(
    images: torch.Tensor, epochs: int, model: str = "mlp", device: torch.device = torch.device("cpu")
) -> tuple[float, float, int, list[torch.Tensor]]:
    """(whole-call seconds, loop seconds, steps, trained parameters on `device`) for one
    hand-written run; `images` on the CPU, moved to `device` once (inside the timed call)."""
    t0 = time.perf_counter()
    torch.manual_seed(SEED)  # also seeds CUDA's generator (randn_like on the device)
    # mlp: (N, 576); conv: the (N, 1, 24, 24) images as they are; on the device, like vaelab's
    x = (images.reshape(images.shape[0], -1) if model == "mlp" else images).to(device)
    n = x.shape[0]
    encoder, decoder = hand_model(model, tuple(images.shape[1:]))  # built on the CPU (the same init as vaelab's) ...
    encoder, decoder = encoder.to(device), decoder.to(device)  # ... then moved, as vaelab moves its model
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=LR)
    per_epoch = math.ceil(n / BATCH)
    steps = 0
    loop_start = time.perf_counter()
    for epoch in range(epochs):
        # the same permutation as vaelab.train.epoch_order, so both loops see the same batches:
        # drawn by a CPU generator (one on the CPU cannot draw CUDA tensors), then moved like vaelab's
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch)).to(device)
        shuffled = x[order]  # on the device
        for i in range(per_epoch):
            batch = shuffled[i * BATCH : (i + 1) * BATCH]  # mlp (B, 576); conv (B, 1, 24, 24)
            mu, logvar = encoder(batch).chunk(2, dim=1)  # (B, 8), (B, 8)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = decoder(z)  # the shape of batch
            recon = (torch.sigmoid(logits) - batch).pow(2).flatten(1).sum(1).mean()  # flatten(1): a no-op for mlp
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
            loss = recon + kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    synchronize(device)  # the queued kernels are part of the loop
    end = time.perf_counter()
    return end - t0, end - loop_start, steps, [p.detach() for p in params]


def main() -> None:
    ap = argparse.ArgumentParser(
        description="vaelab's trainer vs a hand-written PyTorch loop, both on one device: samples/s and their ratio."
    )
    ap.add_argument("--model", choices=tuple(ARCHS), default="mlp", help="mlp: fc1 576-256-8 (default); conv: the chain study's conv VAE; cnn: the MNIST study's CNN VAE on fontdigits 28x28")
    ap.add_argument("--reference", choices=("loop", "dataloader", "fp32"), default="loop", help="loop: a hand-written loop slicing one tensor, layer for layer (mlp, conv; default); dataloader: the loop most users write, batches from a DataLoader; fp32: vaelab itself at fp32 (to compare --precision bf16)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="vaelab's train.precision (default fp32)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds after the warm-up round (default: mlp 9, conv 5)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per training run (default: mlp 3, conv 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both sides (default: torch's default)")
    add_device(ap, "both sides")
    ap.add_argument("--quick", action="store_true", help="smoke check: 1 round of 1 epoch on 2,000 images (conv: 512)")
    args = ap.parse_args()
    device = resolved(ap, args.device)  # the hand-written side's device; vaelab resolves train.device the same way
    default_rounds, default_epochs = DEFAULTS[args.model]
    rounds = args.rounds if args.rounds is not None else default_rounds
    epochs = args.epochs if args.epochs is not None else default_epochs
    rounds, epochs, n = (1, 1, QUICK_N[args.model]) if args.quick else (rounds, epochs, N)
    if rounds < 1 or epochs < 1 or args.threads < 0:
        ap.error("--rounds and --epochs must be >= 1, --threads >= 0")
    if args.reference == "loop" and args.model not in HAND_MODELS:
        ap.error(f"--reference loop has a layer-for-layer twin of {', '.join(HAND_MODELS)} only; use --reference dataloader for --model {args.model}")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()  # fixed for the whole process: the same for both sides

    cfg = make_config(epochs, args.model, n, args.device, args.precision)
    data = load_data(cfg.data)
    reference = {
        "loop": lambda: run_hand(images, epochs, args.model, device),
        "dataloader": lambda: run_dataloader(cfg, images, epochs, device),
        "fp32": lambda: run_vaelab(cfg.override({"train.precision": "fp32"}), data),
    }[args.reference]
    names = {"loop": "hand-written loop", "dataloader": "DataLoader loop", "fp32": "vaelab fp32"}
    images = data.images
    samples = epochs * images.shape[0]
    expected_steps = epochs * math.ceil(images.shape[0] / BATCH)
    arch = {
        "mlp": f"fc1 576-{HIDDEN}-{LATENT} VAE",
        "conv": f"conv VAE (Conv2d 1->{CONV_CHANNELS} {CONV_KERNEL}x{CONV_KERNEL}, {CONV_HIDDEN}, latent {LATENT}; transposed-conv decoder)",
        "cnn": "cnn VAE (5x5 convs of 16 and 32 channels, 2x2 pooling, dense 64)",
    }[args.model]
    print(
        f"{arch}, {images.shape[0]} {cfg.data.name} images {tuple(images.shape[1:])}, batch {BATCH}, "
        f"{epochs} epoch(s) = {expected_steps} steps = {samples} samples per run; vaelab {args.precision} against the {names[args.reference]}"
    )
    flops = flops_per_sample(cfg, tuple(images.shape[1:]))
    if device.type == "cuda":
        print(f"machine: {describe(device)}")  # for bench/all.py's table
    where = "CPU" if device.type == "cpu" else describe(device)
    print(f"torch {torch.__version__}, {where}, {threads} CPU thread(s) on {os.cpu_count()} core(s); "
          f"{rounds} timed round(s) after 1 warm-up round")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("samples/s: 'whole' times the whole call, 'loop' only the training loop (vaelab: run.seconds)")
    print(f"{'round':>7}  {'vaelab whole':>12}  {'vaelab loop':>11}  {'hand whole':>10}  {'hand loop':>9}  {'ratio':>5}")

    results: dict[str, list[tuple[float, float]]] = {"vaelab": [], "hand": []}
    max_diff = 0.0
    for r in range(rounds + 1):
        vw, vl, vs, vp = run_vaelab(cfg, data)
        hw, hl, hs, hp = reference()
        if vs != expected_steps or hs != expected_steps:
            raise SystemExit(f"step counts differ: vaelab {vs}, hand-written {hs}, expected {expected_steps}")
        if r == 0:
            if [p.shape for p in vp] != [p.shape for p in hp]:
                raise SystemExit("the two models have different parameter shapes")
            n_vaelab, n_hand = sum(p.numel() for p in vp), sum(p.numel() for p in hp)
            print(f"parameters: vaelab {n_vaelab:,}, hand-written {n_hand:,} (the same {len(vp)} tensors, shape for shape)")
            max_diff = max((a.cpu() - b.cpu()).abs().max().item() for a, b in zip(vp, hp))  # compared on the CPU
        v, h = (samples / vw, samples / vl), (samples / hw, samples / hl)
        label = "warm-up" if r == 0 else str(r)
        print(f"{label:>7}  {v[0]:12.0f}  {v[1]:11.0f}  {h[0]:10.0f}  {h[1]:9.0f}  {v[0] / h[0]:5.2f}")
        if r > 0:
            results["vaelab"].append(v)
            results["hand"].append(h)

    med = {k: tuple(statistics.median(s[j] for s in v) for j in range(2)) for k, v in results.items()}
    paired = statistics.median(a[0] / b[0] for a, b in zip(results["vaelab"], results["hand"]))
    print(f"{'median':>7}  {med['vaelab'][0]:12.0f}  {med['vaelab'][1]:11.0f}  {med['hand'][0]:10.0f}  {med['hand'][1]:9.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.reference == "loop":
        print(f"same training: largest |vaelab - hand-written| over the trained parameters = {max_diff:.3g}")
    peak = peak_flops(device, args.precision)
    share = f"{100 * med['vaelab'][0] * flops / peak:.2f} % of {describe(device)}'s {args.precision} peak ({peak / 1e12:,.0f} TFLOP/s)" if peak else "the device's peak is not known here"
    print(f"arithmetic: {flops / 1e6:.1f} MFLOP per image (forward and backward); vaelab's samples/s use {share}")
    print(f"median samples/s: vaelab {med['vaelab'][0]:.0f} (loop only {med['vaelab'][1]:.0f}), "
          f"hand-written {med['hand'][0]:.0f} (loop only {med['hand'][1]:.0f})")
    print(f"loop-only ratio: {med['vaelab'][1] / med['hand'][1]:.2f}; median of per-round ratios: {paired:.2f}")
    print("ratio = median vaelab samples/s / median hand-written samples/s, whole call:")
    print(f"row: vaelab={med['vaelab'][0]:,.0f} samples/s; reference={med['hand'][0]:,.0f} samples/s ({names[args.reference]})")
    print(f"ratio: {med['vaelab'][0] / med['hand'][0]:.2f}")


if __name__ == "__main__":
    main()

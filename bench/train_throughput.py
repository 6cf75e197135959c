"""Training throughput: vaelab's trainer against a minimal hand-written PyTorch loop (CPU).

What it measures
    The 576-256-8 dense VAE (`fc1`, hidden [256], latent 8) on 20,000 `points` images (24x24),
    batch 128, 3 epochs (157 steps per epoch; the last batch of each epoch holds 32 images), on
    the CPU, trained two ways in one process:

    * vaelab: `vaelab.train.train(cfg, data, out=None, quiet=True)` (in memory, no files), with
      the data built once by `vaelab.data.load_data`;
    * hand-written: the same architecture as plain `nn.Sequential`s, the same loss (squared error
      of sigmoid(logits) against x summed over pixels, batch mean, + the closed-form Gaussian KL
      summed over latent dims, batch mean), Adam lr 1e-3, one shuffle per epoch by indexing the
      whole tensor (the same permutations as vaelab's), batches as slices, the same number of
      steps and the same `torch.manual_seed`.

    Both start from the same seed and consume the RNG in the same order. The hand-written loop uses
    plain `torch.optim.Adam`; vaelab uses Adam's fused kernel (the same update in one pass per
    parameter), so the weights agree to rounding only: the warm-up round prints the largest
    parameter difference (about 5e-3 after 471 steps; 0 with plain Adam on both sides).

    After one warm-up round of each, the two alternate (vaelab, then hand-written) for `--rounds`
    rounds with the same torch thread count. Each round prints samples/s (images processed ÷
    seconds) for both, timed two ways: the whole call (model construction, optimizer, loop) and
    the loop only (vaelab's `run.seconds`; the same span of the hand-written function). The two
    differ by well under 1%; the ratio uses the whole call. The last line is `ratio: X.XX`:
    median vaelab samples/s ÷ median hand-written samples/s (whole call). Target: >= 0.95.

    The timings are wall-clock: on a small machine other busy processes (the load average is
    printed before and after) move single rounds by far more than the gap being measured, and
    with every core in use one busy neighbour stalls all of torch's threads. Use more rounds, or
    `--threads 1`, when the machine is not quiet.

How to run (from the repository root)
    .venv/bin/python bench/train_throughput.py             # 9 rounds of 3 epochs each
    .venv/bin/python bench/train_throughput.py --rounds 11
    .venv/bin/python bench/train_throughput.py --threads 1
    .venv/bin/python bench/train_throughput.py --quick     # smoke check: 2 rounds of 1 epoch
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
from torch import nn

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.train import train

N, BATCH, HIDDEN, LATENT, LR, SEED = 20000, 128, 256, 8, 1e-3, 0


def make_config(epochs: int):
    return load_config(
        overrides={
            "data.name": "points",
            "data.n": N,
            "model.name": "fc1",
            "model.hidden": [HIDDEN],
            "model.latent_dim": LATENT,
            "train.batch_size": BATCH,
            "train.epochs": epochs,
            "train.device": "cpu",
            "train.lr": LR,
            "train.seed": SEED,
        }
    )


def run_vaelab(cfg, data) -> tuple[float, float, int, list[torch.Tensor]]:
    """(whole-call seconds, loop seconds, steps, trained parameters) for one vaelab run."""
    t0 = time.perf_counter()
    run = train(cfg, data, out=None, quiet=True)
    whole = time.perf_counter() - t0
    return whole, run.seconds, len(run.history), [p.detach() for p in run.model.parameters()]


def run_hand(images: torch.Tensor, epochs: int) -> tuple[float, float, int, list[torch.Tensor]]:
    """(whole-call seconds, loop seconds, steps, trained parameters) for one hand-written run."""
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    x = images.reshape(images.shape[0], -1)  # (N, 576), a view
    n, d = x.shape
    encoder = nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))
    decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, d))
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=LR)
    per_epoch = math.ceil(n / BATCH)
    steps = 0
    loop_start = time.perf_counter()
    for epoch in range(epochs):
        # the same permutation as vaelab.train.epoch_order, so both loops see the same batches
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))
        shuffled = x[order]
        for i in range(per_epoch):
            batch = shuffled[i * BATCH : (i + 1) * BATCH]  # (B, 576)
            mu, logvar = encoder(batch).chunk(2, dim=1)  # (B, 8), (B, 8)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = decoder(z)  # (B, 576)
            recon = (torch.sigmoid(logits) - batch).pow(2).sum(1).mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
            loss = recon + kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    end = time.perf_counter()
    return end - t0, end - loop_start, steps, [p.detach() for p in params]


def main() -> None:
    ap = argparse.ArgumentParser(
        description="vaelab's trainer vs a hand-written PyTorch loop: samples/s and their ratio (CPU)."
    )
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds after the warm-up round (default 9)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per training run (default 3)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both sides (default: torch's default)")
    ap.add_argument("--quick", action="store_true", help="smoke check: at most 2 rounds of 1 epoch")
    args = ap.parse_args()
    rounds, epochs = (min(args.rounds, 2), 1) if args.quick else (args.rounds, args.epochs)
    if rounds < 1 or epochs < 1 or args.threads < 0:
        ap.error("--rounds and --epochs must be >= 1, --threads >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()  # fixed for the whole process: the same for both sides

    cfg = make_config(epochs)
    data = load_data(cfg.data)
    images = data.images
    samples = epochs * images.shape[0]
    expected_steps = epochs * math.ceil(images.shape[0] / BATCH)
    print(
        f"fc1 576-{HIDDEN}-{LATENT} VAE, {images.shape[0]} points images {tuple(images.shape[1:])}, batch {BATCH}, "
        f"{epochs} epoch(s) = {expected_steps} steps = {samples} samples per run"
    )
    print(f"torch {torch.__version__}, CPU, {threads} thread(s) on {os.cpu_count()} core(s); "
          f"{rounds} timed round(s) after 1 warm-up round")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("samples/s: 'whole' times the whole call, 'loop' only the training loop (vaelab: run.seconds)")
    print(f"{'round':>7}  {'vaelab whole':>12}  {'vaelab loop':>11}  {'hand whole':>10}  {'hand loop':>9}  {'ratio':>5}")

    results: dict[str, list[tuple[float, float]]] = {"vaelab": [], "hand": []}
    max_diff = 0.0
    for r in range(rounds + 1):
        vw, vl, vs, vp = run_vaelab(cfg, data)
        hw, hl, hs, hp = run_hand(images, epochs)
        if vs != expected_steps or hs != expected_steps:
            raise SystemExit(f"step counts differ: vaelab {vs}, hand-written {hs}, expected {expected_steps}")
        if r == 0:
            if [p.shape for p in vp] != [p.shape for p in hp]:
                raise SystemExit("the two models have different parameter shapes")
            max_diff = max((a - b).abs().max().item() for a, b in zip(vp, hp))
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
    print(f"same training: largest |vaelab - hand-written| over the trained parameters = {max_diff:.3g}")
    print(f"median samples/s: vaelab {med['vaelab'][0]:.0f} (loop only {med['vaelab'][1]:.0f}), "
          f"hand-written {med['hand'][0]:.0f} (loop only {med['hand'][1]:.0f})")
    print(f"loop-only ratio: {med['vaelab'][1] / med['hand'][1]:.2f}; median of per-round ratios: {paired:.2f}")
    print("ratio = median vaelab samples/s / median hand-written samples/s, whole call:")
    print(f"ratio: {med['vaelab'][0] / med['hand'][0]:.2f}")


if __name__ == "__main__":
    main()

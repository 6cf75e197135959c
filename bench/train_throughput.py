"""Training throughput: vaelab's trainer against a minimal hand-written PyTorch loop (CPU).

What it measures
    The 576-256-8 dense VAE (`fc1`, hidden [256], latent 8) on 20,000 `points` images (24x24),
    batch 128, 3 epochs (157 steps per epoch, the last batch of each epoch holds 32 images), on
    the CPU, trained two ways in one process:

    * vaelab: `vaelab.train.train(cfg, data, out=None, quiet=True)` (in memory, no files);
    * hand-written: the same architecture as plain `nn.Sequential`s, the same loss (summed
      squared error of sigmoid(logits) against x, batch mean, + closed-form Gaussian KL summed
      over latent dims, batch mean), Adam lr 1e-3, one shuffle per epoch by indexing the whole
      tensor, batches as slices, the same number of steps and the same `torch.manual_seed`.

    After one warm-up round of each, the two alternate for `--rounds` rounds with the same torch
    thread count. Each round prints samples/s (images processed ÷ seconds) for both, timed two
    ways: the whole call (model construction, optimizer, loop and all) and the loop only (vaelab's
    `run.seconds`; the same span in the hand-written loop). The ratio uses the whole call.
    The last line is `ratio: X.XX` = median vaelab samples/s ÷ median hand-written samples/s
    (whole call). Target: >= 0.95.

How to run (from the repository root)
    .venv/bin/python bench/train_throughput.py             # 5 rounds, 3 epochs
    .venv/bin/python bench/train_throughput.py --rounds 9
    .venv/bin/python bench/train_throughput.py --quick     # smoke check: 2 rounds, 1 epoch
"""

from __future__ import annotations

import argparse
import math
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


def run_vaelab(cfg, data) -> tuple[float, float, int]:
    """(whole-call seconds, loop seconds, steps) for one vaelab training run."""
    t0 = time.perf_counter()
    run = train(cfg, data, out=None, quiet=True)
    whole = time.perf_counter() - t0
    return whole, run.seconds, len(run.history)


def run_hand(images: torch.Tensor, epochs: int) -> tuple[float, float, int]:
    """(whole-call seconds, loop seconds, steps) for one hand-written training run."""
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
        shuffled = x[torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))]
        for i in range(per_epoch):
            batch = shuffled[i * BATCH : (i + 1) * BATCH]
            mu, logvar = encoder(batch).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = decoder(z)
            recon = (torch.sigmoid(logits) - batch).pow(2).sum(1).mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
            loss = recon + kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    end = time.perf_counter()
    return end - t0, end - loop_start, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per training run (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 2 rounds of 1 epoch")
    args = ap.parse_args()
    rounds, epochs = (min(args.rounds, 2), 1) if args.quick else (args.rounds, args.epochs)
    if rounds < 1 or epochs < 1:
        ap.error("--rounds and --epochs must be >= 1")

    cfg = make_config(epochs)
    data = load_data(cfg.data)
    images = data.images
    samples = epochs * images.shape[0]
    expected_steps = epochs * math.ceil(images.shape[0] / BATCH)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    print(
        f"fc1 576-{HIDDEN}-{LATENT} VAE, {images.shape[0]} points images {tuple(images.shape[1:])}, batch {BATCH}, "
        f"{epochs} epoch(s) = {expected_steps} steps = {samples} samples per run"
    )
    print(f"torch {torch.__version__}, CPU, {threads} thread(s); {rounds} timed round(s) after 1 warm-up round")
    print("samples/s: 'whole' times the whole call, 'loop' only the training loop (vaelab: run.seconds)")

    results: dict[str, list[tuple[float, float]]] = {"vaelab": [], "hand": []}
    header = f"{'round':>7}  {'vaelab whole':>12}  {'vaelab loop':>11}  {'hand whole':>10}  {'hand loop':>9}  {'ratio':>5}"
    print(header)
    for r in range(rounds + 1):
        vw, vl, vs = run_vaelab(cfg, data)
        hw, hl, hs = run_hand(images, epochs)
        if vs != expected_steps or hs != expected_steps:
            raise SystemExit(f"step counts differ: vaelab {vs}, hand-written {hs}, expected {expected_steps}")
        v, h = (samples / vw, samples / vl), (samples / hw, samples / hl)
        label = "warm-up" if r == 0 else str(r)
        print(f"{label:>7}  {v[0]:12.0f}  {v[1]:11.0f}  {h[0]:10.0f}  {h[1]:9.0f}  {v[0] / h[0]:5.2f}")
        if r > 0:
            results["vaelab"].append(v)
            results["hand"].append(h)

    med = {k: tuple(statistics.median(s[j] for s in v) for j in range(2)) for k, v in results.items()}
    print(f"{'median':>7}  {med['vaelab'][0]:12.0f}  {med['vaelab'][1]:11.0f}  {med['hand'][0]:10.0f}  {med['hand'][1]:9.0f}")
    print(f"median samples/s: vaelab {med['vaelab'][0]:.0f} (loop only {med['vaelab'][1]:.0f}), "
          f"hand-written {med['hand'][0]:.0f} (loop only {med['hand'][1]:.0f})")
    print(f"loop-only ratio: {med['vaelab'][1] / med['hand'][1]:.2f}; the ratio below uses the whole call")
    print(f"ratio: {med['vaelab'][0] / med['hand'][0]:.2f}")


if __name__ == "__main__":
    main()

"""Chain throughput: `vaelab chain` against a minimal hand-written loop doing the same work (CPU or GPU).

What it measures
    A short chain-study chain (the `chain-conv` preset with 3 generations, 5,000 `points` images,
    2 epochs per VAE, the preset's batch 32, Adam 1e-3, 2,000 held-out originals, 2,000 images per
    set for precision/recall/density/coverage), run two ways in one process, both training on the
    same device (`--device`: cpu, the default, cuda, cuda:N or auto = cuda:0 where there is one,
    else cpu):

    * vaelab: `vaelab.experiments.chain.run_chain(cfg, out=<fresh temporary folder>, force=True,
      quiet=True)` -- the real command path: each VAE's run folder (config, metrics.jsonl,
      safetensors checkpoint, samples/reconstructions/loss pictures, report.html), every
      generation's samples.png, occupancy.png and metrics.json, chain.csv, and the chain's report
      (variability.png, metrics.png, report.html), with `train.device` = `--device`. The whole
      call is timed.
    * hand-written: the same work in plain torch/numpy, writing no files: the original 5,000 images
      and the 2,000 held-out ones (`vaelab.data.load_data`, for the data only), then per generation
      a fresh conv VAE (Conv2d(1->32, 3x3) -> ReLU -> flatten 22*22*32 -> 115 -> ReLU -> 16 = (mu,
      log sigma^2); decoder 8 -> 115 -> ReLU -> 22*22*32 -> ReLU -> ConvTranspose2d(32->1, 3x3)),
      Adam 1e-3, batch 32, 2 epochs of summed squared error + KL per sample; 5,000 images drawn
      from N(0, I), decoded and quantized to 8 bits; and every metric vaelab's chain computes for
      every dataset D_0 ... D_3: variability (10,000 random pairs), mean intensity, occupancy
      distance to the training set and to the original, precision/recall/density/coverage (k = 5)
      against both, the block-centre marginals with their TV distance to the true binomials and
      their means, the negative ELBO of the generating VAE on the held-out originals, its posterior
      diagnostics there (active units, KL term, the Gaussian fit's KL, MMD, I(x; z)), its
      importance-weighted bound with chain.iw_samples samples (mean, quantiles, the share past
      VAE 0's 99 % quantile), and the data's memorisation of its training set.
      Where vaelab computes, so does it: each VAE trains on the device (its training set moved
      there once, before the loop; each epoch's permutation drawn on the CPU and moved), the prior
      draws are made on the CPU and decoded on the device, the images come back to the CPU, the
      held-out ELBO runs on the device with its noise drawn on the CPU, and every other metric is
      computed on the CPU, as vaelab's chain computes them on its (CPU) datasets.

    Both use the seeds vaelab's chain uses (data, held-out data, initialisation, shuffles,
    reparameterisation noise, prior draws, metric subsets). vaelab trains with Adam's fused kernel
    and the hand-written loop with plain Adam, so weights and metrics agree to rounding, not bit
    for bit; the warm-up round prints the largest difference over all chain.csv metrics (about
    0.02 after 3 generations; 1e-15 with plain Adam on both sides). vaelab also keeps the k-NN
    radii of sets it measures again, where the hand-written loop recomputes them.

    After one warm-up round of each, the two alternate (vaelab, then hand-written) for `--rounds`
    rounds with the same torch thread count. Each round prints the seconds of the whole chain for
    both, the seconds spent inside the training loops (vaelab: the last `time` of each VAE's
    metrics.jsonl; the same span in the hand-written loop), their throughput in images trained per
    second (generations x epochs x 5,000 / whole seconds) and the load average. The last line is
    `ratio: X.XX`: median vaelab throughput / median hand-written throughput (= median hand-written
    seconds / median vaelab seconds), after a `row: vaelab=...; reference=...` line with the two
    medians for bench/all.py's table. Target: >= 1.0.

    On a GPU both whole-chain times wait for the device (`torch.cuda.synchronize` before each end
    time; both sides also copy every generated set back to the CPU), the hand-written loop time
    too. vaelab's loop time is its trainer's logged `time` of the last step, taken when that step
    was queued, so on a GPU it can read short by the queued work (the ratio uses the whole chain).
    The header then names the GPU, and a `machine:` line names it for bench/all.py's table.

    The timings are wall-clock: on a small machine other busy processes move single rounds by far
    more than the gap being measured (the load average is printed before, during and after), and
    with every core in use one busy neighbour stalls all of torch's threads (on the 2-core
    development machine, while a background job kept both cores busy, a training step took over
    10x longer with 2 threads than with 1). Use more rounds, or `--threads 1`, when the machine is
    not quiet.

How to run (from the repository root)
    .venv/bin/python bench/chain.py                # 3 rounds of a 3-generation, 2-epoch chain
    .venv/bin/python bench/chain.py --rounds 5
    .venv/bin/python bench/chain.py --threads 1
    .venv/bin/python bench/chain.py --device cuda  # both sides train on the GPU (also cuda:N, auto)
    .venv/bin/python bench/chain.py --quick        # smoke check: 1 round (no warm-up) of 1 generation,
                                                   # 1 epoch, 256 images, 100 per metric set and held out
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.device import describe
from vaelab.experiments.chain import run_chain
from vaelab.experiments.chain_table import METRICS
from vaelab.runfolder import read_jsonl

from _device import add_device, resolved, synchronize

N, GENERATIONS, EPOCHS = 5000, 3, 2
# The architecture and the metric constants of the chain study (models/conv.py, experiments/chain.py);
# main() checks the config agrees.
CHANNELS, KERNEL, HIDDEN, LATENT, K_NN, PAIRS, SUBSET_SEED = 32, 3, 115, 8, 5, 10_000, 11


QUICK = {"data.n": 256, "chain.holdout": 100, "chain.metric_samples": 100}  # --quick: a tiny chain


def make_config(generations: int, epochs: int, quick: bool = False, device: str = "cpu"):
    return load_config(
        "chain-conv",
        overrides={
            "chain.generations": generations,
            "data.n": N,
            "train.epochs": epochs,
            "train.device": device,
            **(QUICK if quick else {}),
        },
    )


# ---------------------------------------------------------------------------------------------
# vaelab


def run_vaelab(cfg, out: Path, device: torch.device = torch.device("cpu")) -> tuple[float, float, list[dict]]:
    """(whole-call seconds, seconds inside the training loops, chain.csv rows) of one vaelab chain
    (on `device`: the device cfg's train.device resolves to)."""
    t0 = time.perf_counter()
    rows = run_chain(cfg, out=out, force=True, quiet=True)
    synchronize(device)  # (its samples' copies to the CPU have waited already)
    whole = time.perf_counter() - t0
    # outside the timed span: each VAE's loop time, as its trainer logged it
    loops = sum(read_jsonl(f)[-1]["time"] for f in sorted(out.glob("seed-0/gen-*/vae/metrics.jsonl")))
    return whole, loops, rows


# ---------------------------------------------------------------------------------------------
# hand-written: the same work in plain torch / numpy


def subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if n >= images.shape[0]:
        return images
    return images[torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]


def occupancy(images: torch.Tensor) -> torch.Tensor:
    total = images.double().sum(0)
    peak = total.max()
    return total / peak if peak > 0 else total


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, float]:
    real, fake = real.flatten(1).double(), fake.flatten(1).double()
    r_real = torch.cdist(real, real).kthvalue(k + 1, dim=1).values  # k-th neighbour, not itself
    r_fake = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    d = torch.cdist(real, fake)  # (N, M)
    inside_real = d <= r_real[:, None]
    return {
        "precision": inside_real.any(0).double().mean().item(),
        "recall": (d <= r_fake[None, :]).any(1).double().mean().item(),
        "density": (inside_real.sum(0).double() / k).mean().item(),
        "coverage": (d.min(1).values <= r_real).double().mean().item(),
    }


def binomial_pmf(n: int, p: float) -> np.ndarray:
    return np.array([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])


def measure(cfg, images, reference, original, heldout, vae, device: torch.device = torch.device("cpu"), tail_threshold: float | None = None) -> dict[str, float]:
    """Every chain.csv metric of dataset `images` (generated from `reference` by the given VAE).

    The sets (images, reference, original, heldout) are on the CPU, and so are the metrics, as in
    vaelab's chain; only the ELBO runs on the VAE's `device` (vaelab.evaluate.neg_elbo)."""
    m, p = cfg.chain.metric_samples, cfg.data.params
    n = images.shape[0]
    flat = images.flatten(1).double()
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, n, (PAIRS,), generator=g)
    j = (i + torch.randint(1, n, (PAIRS,), generator=g)) % n  # another image than i
    occ = occupancy(images)
    row = {
        "variability": (flat[i] - flat[j]).norm(dim=1).mean().item(),
        "mean_intensity": flat.mean().item(),
        "distribution_diff_train": (occ - occupancy(reference)).norm().item(),
        "distribution_diff_orig": (occ - occupancy(original)).norm().item(),
    }
    fake = subset(images, m, SUBSET_SEED)
    for name, ref in (("train", reference), ("orig", original)):
        row.update({f"{k}_{name}": v for k, v in prdc(subset(ref, m, SUBSET_SEED), fake, K_NN).items()})

    # block centres: the block x block window with the most mass (ties: fewer dark in-image pixels)
    lo = (p.block - 1) // 2
    pad = (lo, p.block - 1 - lo) * 2
    mass = images.double().sum(1, keepdim=True)
    box = F.avg_pool2d(F.pad(mass, pad), p.block, stride=1) * p.block**2
    area = F.avg_pool2d(F.pad(torch.ones_like(mass[:1]), pad), p.block, stride=1) * p.block**2
    best = ((1 + 1e-3) * box - 1e-3 * area).flatten(1).argmax(1)
    xs, ys = (best % images.shape[-1]).numpy(), (best // images.shape[-1]).numpy()
    hx = np.bincount(xs, minlength=p.size)[: p.size] / len(xs)
    hy = np.bincount(ys, minlength=p.size)[: p.size] / len(ys)
    k = np.arange(p.size)
    row["x_tv"] = 0.5 * float(np.abs(hx - binomial_pmf(p.size - 1, p.p_x)).sum())
    row["y_tv"] = 0.5 * float(np.abs(hy - binomial_pmf(p.size - 1, p.p_y)).sum())
    row["x_mean"], row["y_mean"] = float(hx @ k), float(hy @ k)

    row["neg_elbo"] = math.nan
    if vae is not None:  # (encoder, decoder): one z per held-out image, noise from a private generator
        encoder, decoder = vae
        g = torch.Generator().manual_seed(0)  # on the CPU, as vaelab's: its draws are moved to the device
        recon = kl = 0.0
        with torch.no_grad():
            for xb in heldout.split(1024):  # vaelab's evaluation batch: the same noise draws
                xb = xb.to(device)
                mu, logvar = encoder(xb).chunk(2, dim=1)
                z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g).to(device)
                recon += (torch.sigmoid(decoder(z)) - xb).pow(2).flatten(1).sum(1).mean().item() * len(xb)
                kl += 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean().item() * len(xb)
        row["neg_elbo"] = (recon + kl) / len(heldout)
    row.update(model_diagnostics(cfg, vae, heldout, device, tail_threshold))
    row["memorised"] = math.nan if vae is None else memorisation(fake.to(device), subset(reference, m, SUBSET_SEED).to(device))
    return row


def model_diagnostics(cfg, vae, heldout: torch.Tensor, device: torch.device, tail_threshold: float | None) -> dict[str, float]:
    """The generating VAE's posterior diagnostics and importance-weighted likelihood of the
    held-out originals (NaN at generation 0), written out here as plain torch."""
    names = ("active_units", "posterior_kl", "aggregate_kl", "aggregate_mmd", "mutual_info", "nll_iw", "nll_iw_q50", "nll_iw_q90", "nll_iw_q99", "tail_share")
    if vae is None:
        return dict.fromkeys(names, math.nan)
    encoder, decoder = vae
    with torch.no_grad():
        mu, logvar = torch.cat([encoder(xb.to(device)) for xb in heldout.split(1024)]).double().cpu().chunk(2, dim=1)  # (N, 8) each
    n, latent = mu.shape
    g = torch.Generator().manual_seed(0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=torch.float64)
    prior = torch.randn(mu.shape, generator=g, dtype=torch.float64)
    kernel = lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * latent))  # noqa: E731
    off_diagonal = lambda k: (k.sum() - k.diagonal().sum()) / (len(k) * (len(k) - 1))  # noqa: E731
    log_q = torch.distributions.Normal(mu[None], torch.exp(0.5 * logvar)[None]).log_prob(z[:, None]).sum(-1)  # (N, N): log q(z_i | x_j)
    fit = torch.distributions.MultivariateNormal(mu.mean(0), torch.cov(mu.T))
    row = {
        "active_units": float((mu.var(0) > 0.01).sum()),
        "posterior_kl": float((0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0).sum()),
        "aggregate_kl": float(torch.distributions.kl_divergence(fit, torch.distributions.MultivariateNormal(torch.zeros(latent, dtype=torch.float64), torch.eye(latent, dtype=torch.float64)))),
        "aggregate_mmd": float(off_diagonal(kernel(z, z)) + off_diagonal(kernel(prior, prior)) - 2 * kernel(z, prior).mean()),
        "mutual_info": float(log_q.diagonal().mean() - (torch.logsumexp(log_q, 1) - math.log(n)).mean()),
    }
    k, nll = cfg.chain.iw_samples, []
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for xb in heldout.split(256):  # vaelab's batches of the bound: the same noise draws
            xb = xb.to(device)
            mu_b, logvar_b = encoder(xb).chunk(2, dim=1)
            std = torch.exp(0.5 * logvar_b)
            zb = mu_b + std * torch.randn((k, *mu_b.shape), generator=g).to(device)  # (k, B, 8)
            x_hat = torch.sigmoid(decoder(zb.flatten(0, 1))).view(k, *xb.shape)
            log_px = -((x_hat - xb).pow(2).flatten(2).sum(2) + 0.5 * xb[0].numel() * math.log(math.pi))  # σ² = ½
            normal = torch.distributions.Normal
            log_w = log_px + normal(0.0, 1.0).log_prob(zb).sum(-1) - normal(mu_b, std).log_prob(zb).sum(-1)
            nll.append(-(torch.logsumexp(log_w, 0) - math.log(k)).cpu())
    nll = torch.cat(nll)
    row["nll_iw"] = sum(part.sum().item() for part in nll.split(256)) / len(nll)
    for q in (50, 90, 99):
        row[f"nll_iw_q{q}"] = float(torch.quantile(nll.double(), q / 100))
    threshold = row["nll_iw_q99"] if tail_threshold is None else tail_threshold
    row["tail_share"] = float((nll > threshold).double().mean())
    return row


def memorisation(images: torch.Tensor, train: torch.Tensor) -> float:
    """Share of (image, training image) pairs where the image is nearer the training set than the
    training image is to its nearest other (a tie a half), from the whole distance matrices."""
    x, t = images.flatten(1).double(), train.flatten(1).double()
    own = (torch.cdist(t, t) + torch.diag(torch.full((len(t),), math.inf, dtype=torch.float64, device=t.device))).min(1).values  # (M,)
    near = torch.cdist(x, t).min(1).values  # (N,)
    return float(((own[None] > near[:, None]).double() + 0.5 * (own[None] == near[:, None]).double()).mean())


def train_vae(
    x: torch.Tensor, seed: int, epochs: int, batch: int, lr: float, device: torch.device = torch.device("cpu")
) -> tuple[nn.Module, nn.Module, float]:
    """(encoder, decoder, loop seconds): a fresh conv VAE trained on `device` on x (N, 1, H, W),
    which is on the CPU and moved to the device once, before the loop."""
    torch.manual_seed(seed)  # also seeds CUDA's generator (randn_like on the device)
    h = x.shape[-1] - KERNEL + 1  # 22
    encoder = nn.Sequential(
        nn.Conv2d(1, CHANNELS, KERNEL), nn.ReLU(), nn.Flatten(),
        nn.Linear(CHANNELS * h * h, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CHANNELS * h * h), nn.ReLU(),
        nn.Unflatten(1, (CHANNELS, h, h)), nn.ConvTranspose2d(CHANNELS, 1, KERNEL),
    )  # fmt: skip
    encoder, decoder = encoder.to(device), decoder.to(device)  # built on the CPU and moved, as vaelab's model
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
    x = x.to(device)  # the training set on the device, as vaelab's trainer puts it
    n = x.shape[0]
    start = time.perf_counter()
    for epoch in range(epochs):
        # the same permutation as vaelab.train.epoch_order: drawn by a CPU generator, then moved
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).to(device)
        shuffled = x[order]
        for i in range(math.ceil(n / batch)):
            xb = shuffled[i * batch : (i + 1) * batch]  # (B, 1, 24, 24)
            mu, logvar = encoder(xb).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            recon = (torch.sigmoid(decoder(z)) - xb).pow(2).flatten(1).sum(1).mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            (recon + kl).backward()
            optimizer.step()
    synchronize(device)  # the queued kernels are part of the loop
    return encoder, decoder, time.perf_counter() - start


def run_hand(cfg, device: torch.device = torch.device("cpu")) -> tuple[float, float, list[dict]]:
    """(whole seconds, seconds inside the training loops, rows) of one hand-written chain whose
    VAEs train (and decode, and take the ELBO) on `device`; its datasets stay on the CPU."""
    t0 = time.perf_counter()
    t, s, ch = cfg.train, cfg.sample, cfg.chain
    # the seeds of vaelab's chain for repeat 0 (experiments/chain.py: _seed(base, r=0, g, salt))
    original = load_data(cfg.data).images  # (5000, 1, 24, 24), on the CPU
    heldout = load_data(replace(cfg.data, n=ch.holdout, seed=cfg.data.seed + 1_000_003)).images
    rows = [{"generation": 0, "n_train": 0, **measure(cfg, original, original, original, heldout, None)}]
    current, loops = original, 0.0
    for g in range(ch.generations):
        encoder, decoder, loop = train_vae(current, t.seed + g, t.epochs, t.batch_size, t.lr, device)
        loops += loop
        with torch.no_grad():
            # drawn on the CPU (vaelab's prior_sample), decoded on the device, back to the CPU (vaelab's sample)
            z = torch.randn(current.shape[0], LATENT, generator=torch.Generator().manual_seed(s.seed + g))
            # decoded in vaelab's chunks of 4096, so both draw the same images bit for bit
            images = torch.cat([torch.sigmoid(decoder(zb.to(device))).cpu() for zb in z.split(4096)])
        images = (images * 255).round() / 255  # 8-bit, as the study stored them
        row = measure(cfg, images, current, original, heldout, (encoder, decoder), device, rows[1]["nll_iw_q99"] if g else None)
        rows.append({"generation": g + 1, "n_train": current.shape[0], **row})
        current = images
    synchronize(device)
    return time.perf_counter() - t0, loops, rows


# ---------------------------------------------------------------------------------------------


def largest_difference(a: list[dict], b: list[dict]) -> tuple[float, str]:
    """Largest |a - b| over every metric of every generation (NaN = NaN), and where it is."""
    if [r["generation"] for r in a] != [r["generation"] for r in b]:
        raise SystemExit(f"generations differ: {[r['generation'] for r in a]} vs {[r['generation'] for r in b]}")
    worst, where = 0.0, "-"
    for ra, rb in zip(a, b):
        for k in ("n_train", *METRICS):
            x, y = float(ra[k]), float(rb[k])
            if math.isnan(x) and math.isnan(y):
                continue
            d = abs(x - y) if not (math.isnan(x) or math.isnan(y)) else math.inf
            if d > worst:
                worst, where = d, f"{k} at generation {ra['generation']}"
    return worst, where


def main() -> None:
    ap = argparse.ArgumentParser(
        description="vaelab chain vs a hand-written loop doing the same work, both on one device: images trained/s and their ratio."
    )
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up round (default 3)")
    ap.add_argument("--generations", type=int, default=GENERATIONS, help=f"VAEs in the chain (default {GENERATIONS})")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs per VAE (default {EPOCHS})")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both sides (default: torch's default)")
    add_device(ap, "both sides")
    ap.add_argument("--quick", action="store_true", help="smoke check: 1 round (no warm-up) of 1 generation, 1 epoch, 256 images")
    args = ap.parse_args()
    device = resolved(ap, args.device)  # the hand-written side's device; vaelab resolves train.device the same way
    rounds, gens, epochs = (1, 1, 1) if args.quick else (args.rounds, args.generations, args.epochs)
    warmups = 0 if args.quick else 1
    if rounds < 1 or gens < 1 or epochs < 1 or args.threads < 0:
        ap.error("--rounds, --generations and --epochs must be >= 1, --threads >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()  # fixed for the whole process: the same for both sides

    cfg = make_config(gens, epochs, args.quick, args.device)
    m, p, ch, n = cfg.model, cfg.model.params, cfg.chain, cfg.data.n
    expected = (m.name, p.channels, p.kernel, p.hidden, p.decoder_widths, m.latent_dim, p.pool, p.batch_norm, m.likelihood)
    if expected != ("conv", (CHANNELS,), KERNEL, (HIDDEN,), (HIDDEN,), LATENT, False, False, "gaussian"):
        raise SystemExit(f"the chain-conv preset no longer matches the hand-written model: {expected}")
    if (cfg.loss.beta, cfg.loss.recon_weight, cfg.loss.variability_weight, cfg.loss.kl_schedule) != (1.0, 1.0, 0.0, "constant"):
        raise SystemExit(f"the chain-conv preset's loss is no longer recon + KL: {cfg.loss}")
    plain = (ch.mode, ch.init, ch.seeds, ch.samples, ch.quantize, cfg.sample.delta, cfg.sample.denoise)
    if plain != ("replace", "scratch", 1, 0, True, 0.0, 0.0):
        raise SystemExit(f"the chain-conv preset's chain is no longer the plain one: {ch}, {cfg.sample}")
    if n % cfg.train.batch_size == 1:
        raise SystemExit("vaelab drops a last batch of one image; the hand-written loop does not")
    images = gens * epochs * n
    print(
        f"chain-conv chain: {gens} generation(s) x {epochs} epoch(s) x {n} points images, batch {cfg.train.batch_size} "
        f"= {images} images trained per chain; metrics on D_0..D_{gens} ({ch.metric_samples} per set for PRDC, "
        f"{ch.holdout} held out for the ELBO)"
    )
    if device.type == "cuda":
        print(f"machine: {describe(device)}")  # for bench/all.py's table
    where = "CPU" if device.type == "cpu" else f"training on {describe(device)}"
    print(f"torch {torch.__version__}, {where}, {threads} CPU thread(s) on {os.cpu_count()} core(s); "
          f"{rounds} timed round(s) after {warmups} warm-up round(s), vaelab first in each")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("seconds: 'whole' = the whole chain, 'loop' = inside the training loops; img/s = images trained / whole seconds")
    print(f"{'round':>7}  {'vaelab whole':>12}  {'loop':>6}  {'hand whole':>10}  {'loop':>6}  "
          f"{'vaelab img/s':>12}  {'hand img/s':>10}  {'ratio':>5}  {'load':>5}")

    base = Path(tempfile.mkdtemp(prefix="vaelab-bench-chain-"))
    results: dict[str, list[tuple[float, float]]] = {"vaelab": [], "hand": []}
    loads = []
    try:
        for r in range(rounds + warmups):
            out = base / f"round-{r}"
            vw, vl, vrows = run_vaelab(cfg, out, device)
            shutil.rmtree(out)
            hw, hl, hrows = run_hand(cfg, device)
            load = os.getloadavg()[0]
            if r == 0:
                diff, where = largest_difference(vrows, hrows)
            label = "warm-up" if r < warmups else str(r + 1 - warmups)
            print(f"{label:>7}  {vw:12.1f}  {vl:6.1f}  {hw:10.1f}  {hl:6.1f}  "
                  f"{images / vw:12.1f}  {images / hw:10.1f}  {hw / vw:5.2f}  {load:5.2f}", flush=True)
            if r >= warmups:
                results["vaelab"].append((vw, vl))
                results["hand"].append((hw, hl))
                loads.append(load)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    med = {k: tuple(statistics.median(s[j] for s in v) for j in range(2)) for k, v in results.items()}
    paired = statistics.median(h[0] / v[0] for v, h in zip(results["vaelab"], results["hand"]))
    (vw, vl), (hw, hl) = med["vaelab"], med["hand"]
    print(f"{'median':>7}  {vw:12.1f}  {vl:6.1f}  {hw:10.1f}  {hl:6.1f}  {images / vw:12.1f}  {images / hw:10.1f}")
    print(f"load average after (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"1-min load during the timed rounds: {min(loads):.2f} to {max(loads):.2f} on {os.cpu_count()} core(s)")
    print(f"same work: largest |vaelab - hand-written| over every chain.csv metric of the first round = {diff:.3g}"
          + (f" ({where})" if diff > 0 else ""))
    print(f"outside the training loops (median s): vaelab {vw - vl:.1f}, hand-written {hw - hl:.1f}; "
          f"loop-only ratio {hl / vl:.2f}; median of per-round ratios {paired:.2f}")
    print(f"median images trained/s: vaelab {images / vw:.1f}, hand-written {images / hw:.1f}")
    print("ratio = median vaelab images/s / median hand-written images/s (whole chain):")
    print(f"row: vaelab={images / vw:,.1f} images trained/s; reference={images / hw:,.1f} images trained/s (hand-written chain)")
    print(f"ratio: {hw / vw:.2f}")


if __name__ == "__main__":
    main()

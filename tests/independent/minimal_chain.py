"""A minimal VAE chain written without vaelab: a second opinion on `vaelab chain`'s curves.

Why it exists
    The `chain-conv-delta0.7-denoise` chain dips at generation 3 (vaelab, one seed: 3.85, 3.39, 3.14,
    1.71, then back up), deeper than the study's plot. This script runs the same chain from the
    study's description alone (tests/independent holds no vaelab import), so a difference that
    survives here is the chain's, not vaelab's: the data, the VAE, the sampler, the threshold, the
    8-bit storage and the metric are all written again here, plainly.

What it does, per seed
    D_0: n `points` images, 24x24, one 3x3 block of ones centred at (y, x), y ~ Binomial(23, 0.8),
    x ~ Binomial(23, 0.3), clipped at the borders. Then for g = 0 .. G-1: a fresh conv VAE
    (Conv2d(1->32, 3x3) -> ReLU -> 115 -> ReLU -> (mu, log var) of 8; decoder 8 -> 115 -> ReLU ->
    32x22x22 -> ReLU -> ConvTranspose2d(32->1, 3x3) -> sigmoid) trains on D_g for `epochs` epochs
    (Adam 1e-3, batch 32, per-image loss = summed squared error + KL to N(0, I), batch mean); D_{g+1}
    is n decoder means at z ~ N(0, (1 + delta)^2 I), every pixel below thr x (the set's maximum pixel)
    set to 0, stored as 8 bits. Each D_g is measured: variability (mean L2 distance of 10,000 random
    pairs of distinct images), the share of blank images (every pixel 0), the mean image
    brightness (sum of pixels); and, to see what the threshold does, the same set before it: its
    variability, its maximum pixel (which sets the threshold) and the share of faint images (whose
    brightest pixel is below half the set's). One CSV row per (seed, generation).

Usage
    python tests/independent/minimal_chain.py --seeds 3 --generations 6 --out minimal.csv
    python tests/independent/minimal_chain.py --delta 0 --thr 0 ...   # the plain chain-conv chain

tests/test_chain.py runs it at a tiny size and checks its D_0 against vaelab's `points` data.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import numpy as np
import torch
from torch import nn

SIDE = 24
LATENT = 8


def points(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 1, 24, 24) float32: one 3x3 block of ones per image, clipped at the borders."""
    ys = rng.binomial(23, 0.8, n)
    xs = rng.binomial(23, 0.3, n)
    images = np.zeros((n, 1, SIDE, SIDE), np.float32)
    for i, (y, x) in enumerate(zip(ys, xs)):
        images[i, 0, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 1.0
    return images


class ConvVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Flatten(),  # (B, 32*22*22)
            nn.Linear(32 * 22 * 22, 115), nn.ReLU(), nn.Linear(115, 2 * LATENT),  # (B, 16)
        )
        self.decoder = nn.Sequential(
            nn.Linear(LATENT, 115), nn.ReLU(), nn.Linear(115, 32 * 22 * 22), nn.ReLU(),
            nn.Unflatten(1, (32, 22, 22)), nn.ConvTranspose2d(32, 1, 3), nn.Sigmoid(),  # (B, 1, 24, 24)
        )

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, 8) each
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        squared = ((self.decoder(z) - x) ** 2).flatten(1).sum(1)  # (B,)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)  # (B,)
        return (squared + kl).mean()


def train(data: np.ndarray, epochs: int, seed: int) -> ConvVAE:
    torch.manual_seed(seed)
    model = ConvVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(data)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            model.loss(x[idx]).backward()
            opt.step()
    return model


def to_8bit(images: np.ndarray) -> np.ndarray:
    return (np.round(images * 255) / 255).astype(np.float32)


@torch.no_grad()
def decode(model: ConvVAE, n: int, delta: float, seed: int) -> np.ndarray:
    """(n, 1, 24, 24): decoder means at z ~ N(0, (1 + delta)^2 I), before any threshold."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, LATENT, generator=g) * (1.0 + delta)
    return torch.cat([model.decoder(part) for part in z.split(4096)]).numpy()


def threshold(images: np.ndarray, thr: float) -> np.ndarray:
    """Every pixel below thr x (the set's maximum pixel) set to 0 (the study's denoising)."""
    return np.where(images < thr * images.max(), 0.0, images) if thr > 0 else images


def generate(model: ConvVAE, n: int, delta: float, thr: float, seed: int) -> np.ndarray:
    return to_8bit(threshold(decode(model, n, delta, seed), thr))


def variability(images: np.ndarray, rng: np.random.Generator, pairs: int = 10_000) -> float:
    flat = images.reshape(len(images), -1).astype(np.float64)
    i = rng.integers(0, len(flat), pairs)
    j = (i + rng.integers(1, len(flat), pairs)) % len(flat)  # j != i, uniform over the others
    return float(np.linalg.norm(flat[i] - flat[j], axis=1).mean())


def measure(images: np.ndarray, raw: np.ndarray, rng: np.random.Generator) -> dict:
    """The kept set's figures, and the same images before the threshold (`raw`, 8-bit): how much
    of a generation's variability the threshold itself takes or adds."""
    flat = images.reshape(len(images), -1)
    return {
        "variability": variability(images, rng),
        "blank_share": float((flat.max(1) == 0).mean()),
        "brightness": float(flat.sum(1).mean()),
        "variability_unthresholded": variability(raw, rng),
        "set_max": float(raw.max()),
        "faint_share": float((raw.reshape(len(raw), -1).max(1) < 0.5 * raw.max()).mean()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--generations", type=int, default=6, help="VAEs trained; datasets 0..G measured")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--delta", type=float, default=0.7)
    p.add_argument("--thr", type=float, default=0.05)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    fields = ["seed", "generation", "variability", "blank_share", "brightness", "variability_unthresholded", "set_max", "faint_share", "seconds"]
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            rng = np.random.default_rng(1000 + seed)
            data = raw = points(a.n, rng)
            start = time.perf_counter()
            for g in range(a.generations + 1):
                row = {"seed": seed, "generation": g, **measure(data, raw, rng), "seconds": round(time.perf_counter() - start, 1)}
                w.writerow(row)
                f.flush()
                print(row, file=sys.stderr, flush=True)
                if g < a.generations:
                    model = train(data, a.epochs, seed * 1000 + g)
                    decoded = decode(model, a.n, a.delta, seed * 1000 + g + 500)
                    raw, data = to_8bit(decoded), to_8bit(threshold(decoded, a.thr))
    return 0


if __name__ == "__main__":
    sys.exit(main())

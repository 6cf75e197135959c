"""FID speed: 10,000 against 10,000 28×28 images, feature extraction included (CPU).

What it measures
    Real images: 10,000 `fontdigits`; "generated" images: another 10,000 fontdigits (another
    seed) with Gaussian noise added, so the distance is far from 0. The feature net is vaelab's
    LeNet trained on 20,000 fontdigits training images (trained once, then read from the cache;
    its training time is printed but not part of the timing).

    * vaelab: `fid(net(real), net(fake))` — features, Gaussian fits and the Fréchet distance via
      two symmetric eigendecompositions (vaelab.metrics.fid);
    * reference: the same features (extracted again), then NumPy/SciPy the straightforward way:
      `np.cov` and `scipy.linalg.sqrtm(C1 @ C2)`, as most FID scripts do.

    Both values are printed (they agree to ~1e-6 relative). Alternating rounds; the line before
    the last is `row: vaelab=...; reference=...` (median seconds per FID, for bench/all.py's
    table), the last is `ratio: X.XX` = median reference seconds / median vaelab seconds (> 1:
    vaelab is faster). Target: vaelab under 20 s per FID on 2 CPU cores.

How to run (from the repository root)
    .venv/bin/python bench/fid.py
    .venv/bin/python bench/fid.py --quick      # smoke check: 500 images, 1 round, a feature net
                                               # of 20 steps on 1,000 images (not cached)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import scipy.linalg
import torch

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.metrics import feature_net, fid
from vaelab.metrics.featurenet import FeatureNetConfig


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2)
    if np.iscomplexobj(root):
        root = root.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * root))


def main() -> None:
    ap = argparse.ArgumentParser(description="FID of 10,000 vs 10,000 images: vaelab against NumPy/SciPy")
    ap.add_argument("--n", type=int, default=10000, help="images per set (default 10,000)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 500 images, 1 round, a feature net of 20 steps")
    args = ap.parse_args()
    n, rounds = (500, 1) if args.quick else (args.n, args.rounds)
    data = lambda seed, m: load_data(load_config(overrides={"data.name": "fontdigits", "data.n": m, "data.seed": seed}).data)  # noqa: E731
    train, real, fake = data(0, 20000 if not args.quick else 1000), data(1, n).images, data(2, n).images
    fake = (fake + 0.2 * torch.randn(fake.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    cache = os.environ.get("VAELAB_CACHE") or tempfile.mkdtemp()
    t0 = time.perf_counter()
    if args.quick:  # a barely trained net in a throw-away folder: the smoke check times the same calls
        net = feature_net(train.images, train.labels, FeatureNetConfig(steps=20), source="fontdigits", cache=tempfile.mkdtemp())
    else:
        net = feature_net(train.images, train.labels, source="fontdigits", cache=cache)
    print(f"feature net: {net.name}; ready in {time.perf_counter() - t0:.1f} s (trained once, then cached)")
    print(f"{n} vs {n} images {tuple(real.shape[1:])}; torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {os.cpu_count()} core(s)")
    fr, ff = net(real), net(fake)
    t0 = time.perf_counter()
    fid(fr, ff)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that the product of two singular covariances may have no square root
        reference_fid(fr.double().numpy(), ff.double().numpy())
    t2 = time.perf_counter()
    print(f"the distance alone, on ready features: vaelab {t1 - t0:.3f} s, NumPy/SciPy {t2 - t1:.3f} s")
    ours, ref = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        value = fid(net(real), net(fake))
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = reference_fid(net(real).double().numpy(), net(fake).double().numpy())
        ref.append(time.perf_counter() - t0)
        print(f"round {r + 1}: vaelab {ours[-1]:.2f} s (FID {value:.4f}), reference {ref[-1]:.2f} s (FID {expected:.4f})")
    print(f"median seconds: vaelab {statistics.median(ours):.2f}, NumPy/SciPy {statistics.median(ref):.2f}")
    print(f"row: vaelab={statistics.median(ours):.2f} s per FID; reference={statistics.median(ref):.2f} s per FID (NumPy/SciPy)")
    print(f"ratio: {statistics.median(ref) / statistics.median(ours):.2f}")


if __name__ == "__main__":
    main()

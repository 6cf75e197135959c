"""Every disentanglement and latent-recovery score of one sprites model, at `beta-disentangle`'s sizes.

What it measures
    A `cnn` VAE (10 latents, Bernoulli: the `beta-disentangle` preset's model) trained for --steps
    on 5,000 sprites, then scored at the preset's sample sizes (2,000 points for MIG, DCI, SAP
    and modularity with 1,000 test points; 200 + 100 points for the BetaVAE and FactorVAE scores,
    each encoding 128 or 64 new images; 2,000 for FactorVAE's variances), plus MCC, latent →
    factor R² (linear and MLP) and IRS on the 2,000 codes: every score `vaelab sweep` gives a
    sprites model.

    * vaelab: `all_scores` as vaelab calls it (`latent_means`: channels-last weights and batches
      of 64 on the CPU), disentanglement_lib's classifiers (DCI's gradient boosting);
    * vaelab, `sweep.dci_classifier=forest`: the same with DCI's random forest;
    * reference: the same with the encoder read as vaelab read it before, in contiguous batches
      of 2,048 (DCI as vaelab's: gradient boosting, the factors fitted side by side on torch's
      threads; before, one after another: about 30 s more on 2 cores).

    Each variant once (they take minutes), same seed, so every score is printed side by side: the
    first two differ only in DCI; vaelab and the reference agree to rounding. The line before the
    last is `row: vaelab=...; reference=...` (seconds per model, for bench/all.py's table), the
    last `ratio: X.XX` = reference seconds / vaelab seconds (> 1: vaelab is faster). Target: every
    score of one model in under 2 minutes on 2 CPU cores (under 15 s on a GPU: `--device cuda`).

How to run (from the repository root)
    .venv/bin/python bench/disentanglement.py
    .venv/bin/python bench/disentanglement.py --quick     # smoke check: 5 steps, tiny samples,
                                                          # the forest DCI in every variant
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _device import add_device, resolved, synchronize

from vaelab.config import load_config
from vaelab.data import DATASETS, load_data
from vaelab.latent import latent_means
from vaelab.metrics.disentanglement import all_scores, sample_codes
from vaelab.metrics.recovery import factor_r2, irs, mcc
from vaelab.train import train

PRESET_SIZES = dict(n=2000, n_test=1000, n_votes=200, n_votes_eval=100, n_variance=2000)
"""`beta-disentangle`'s sizes, as `vaelab sweep` passes them (sweep.disentanglement_n = 2,000, _votes = 200)"""
QUICK_SIZES = dict(n=100, n_test=60, n_votes=10, n_votes_eval=10, n_variance=100, batch_size=4)


def scores(gt, represent, sizes: dict, dci_classifier: str) -> dict[str, float]:
    """Every score of one representation: the nine of `all_scores`, then MCC, R² and IRS."""
    out = all_scores(gt, represent, seed=0, dci_classifier=dci_classifier, **sizes)
    z, y = sample_codes(gt, represent, sizes["n"], seed=1)
    half = len(z) // 2
    out["mcc"] = mcc(z, y)
    out["factor_r2"] = float(factor_r2(z[:half], y[:half], z[half:], y[half:]).mean())
    out["factor_r2_nonlinear"] = float(factor_r2(z[:half], y[:half], z[half:], y[half:], nonlinear=True).mean())
    out["irs"] = irs(z, y)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="every score of one sprites model: vaelab against its former encoding")
    ap.add_argument("--steps", type=int, default=300, help="training steps of the model (default 300)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 5 steps on 200 images, tiny samples")
    add_device(ap, "the model and its encoder")
    args = ap.parse_args()
    device = resolved(ap, args.device)
    steps, n_data, sizes = (5, 200, QUICK_SIZES) if args.quick else (args.steps, 5000, PRESET_SIZES)
    cfg = load_config("beta-disentangle", overrides={"data.n": n_data, "train.steps": steps, "train.epochs": 0, "loss.beta": 4.0, "train.device": args.device})
    t0 = time.perf_counter()
    model = train(cfg, load_data(cfg.data), quiet=True).model.eval()
    print(f"model: cnn, 10 latents, β = 4, {steps} steps on {n_data} sprites, trained in {time.perf_counter() - t0:.0f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {os.cpu_count()} core(s), device {device}")
    gt = DATASETS["sprites"].truth(cfg.data.params)

    @torch.no_grad()
    def former(images: torch.Tensor) -> np.ndarray:  # contiguous weights, batches of 2,048
        return torch.cat([model.posterior_params(b.to(device))[0].cpu() for b in images.split(2048)]).numpy()

    library = "forest" if args.quick else "boosting"  # the smoke check skips the boosted trees' 11,300 trees a model
    variants = {
        "vaelab": (lambda images: latent_means(model, images).numpy(), library),
        "vaelab, forest DCI": (lambda images: latent_means(model, images).numpy(), "forest"),
        "reference": (former, library),
    }
    seconds, results = {}, {}
    for name, (represent, classifier) in variants.items():
        synchronize(device)
        t0 = time.perf_counter()
        results[name] = scores(gt, represent, sizes, classifier)
        synchronize(device)
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.1f} s", flush=True)
    print(f"{'score':22s}" + "".join(f"{name:>22s}" for name in variants))
    for key in results["vaelab"]:
        print(f"{key:22s}" + "".join(f"{results[name][key]:22.4f}" for name in variants))
    print(f"row: vaelab={seconds['vaelab']:.1f} s per model ({seconds['vaelab, forest DCI']:.1f} s with the forest DCI); reference={seconds['reference']:.1f} s per model (encoder in contiguous batches of 2,048)")
    print(f"ratio: {seconds['reference'] / seconds['vaelab']:.2f}")


if __name__ == "__main__":
    main()

"""Evaluation of a trained model: likelihood bounds, reconstructions, and — on feature-net
features — FID, precision/recall/density/coverage and the class distribution (`vaelab evaluate`).

    results = evaluate_run("runs/conv")      # also written to runs/conv/evaluation.json

Likelihoods are in nats per image. The Gaussian likelihood is the one vaelab trains with: a fixed
variance σ² = ½ per pixel, so −log p(x|z) = ‖x − x̂‖² + (D/2)·log π, the summed squared error plus
a constant; the Bernoulli one is the summed binary cross-entropy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import torch
from torch.distributions import Normal

from vaelab.checkpoint import load_run
from vaelab.data import DATASETS, load_data, test_data_config
from vaelab.device import check_fits
from vaelab.errors import UserError
from vaelab.latent import latent_means
from vaelab.losses import RECONSTRUCTION, draw_latent, gaussian_kl, kl_per_image, reconstruction
from vaelab.metrics import class_distribution, feature_net, fid, prdc
from vaelab.metrics.disentanglement import all_scores
from vaelab.report import report_path, write_run_report
from vaelab.runfolder import atomic_write, read_metrics
from vaelab.sample import batches, reconstruct, sample

EVALUATE_METRICS = ("recon_mse", "elbo", "nll_iw", "fid", "prdc", "class", "disentanglement")
"""what `vaelab evaluate --metrics` may name; fid, prdc and class need a labelled dataset (or an
extractor); disentanglement needs a dataset that can render chosen factors (points, sprites) and is
computed only when asked (minutes at disentanglement_lib's sample sizes)"""


def disentanglement(model, data_cfg, seed: int = 0, **sizes) -> dict[str, float]:
    """The nine disentanglement scores (vaelab.metrics.disentanglement.all_scores) of the model's
    latent means on its dataset's ground truth; `sizes` shrink the samples (n, n_test, n_votes, …)."""

    spec = DATASETS[data_cfg.name]
    if spec.truth is None:
        can = ", ".join(sorted(k for k, v in DATASETS.items() if v.truth is not None))
        raise UserError(f"disentanglement metrics need a dataset that renders chosen factors; {data_cfg.name} cannot (use one of: {can})")
    return all_scores(spec.truth(data_cfg.params), lambda x: latent_means(model, x).numpy(), seed=seed, **sizes)


@torch.no_grad()
def neg_elbo(model, x: torch.Tensor, *, labels: torch.Tensor | None = None, seed: int = 0, batch_size: int = 1024) -> dict[str, float]:
    """Per-sample negative ELBO in training units (recon + KL, β = 1, without the Gaussian's
    constant) of `model` on x (N, C, H, W), one z per image.

    The noise comes from a private generator seeded by `seed`: the result is deterministic and the
    global RNG is untouched. An autoencoder has no KL (its figure is the reconstruction term).
    `labels` (N,) condition a conditional model (and are ignored by the others).

    Returns:
        {"neg_elbo", "recon", "kl"} averaged over the images.
    """
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    totals = {"recon": 0.0, "kl": 0.0}
    try:
        for xb, yb in batches(x, labels, batch_size, device):
            mu, logvar = model.posterior_params(xb, yb)  # (B, L), (B, L) or None
            if logvar is None:
                z, kl = mu, 0.0
            else:
                z, kl = draw_latent(mu, logvar, torch.randn(mu.shape, generator=g).to(device)), gaussian_kl(mu, logvar).item()
            totals["recon"] += reconstruction(model.likelihood, model.logits(z, yb), xb).item() * len(xb)
            totals["kl"] += kl * len(xb)
    finally:
        model.train(was_training)
    out = {k: v / len(x) for k, v in totals.items()}
    out["neg_elbo"] = out["recon"] + out["kl"]
    return out


def log_likelihood(likelihood: str, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) per image (B,) for decoder logits (B, C, H, W): minus the reconstruction term,
    and for the Gaussian (σ² = ½) its constant (D/2)·log π."""
    if likelihood == "bernoulli":
        return -RECONSTRUCTION[likelihood](logits, x)
    return -(RECONSTRUCTION[likelihood](logits, x) + 0.5 * x[0].numel() * math.log(math.pi))


@torch.no_grad()
def likelihood_bounds(model, x: torch.Tensor, *, labels: torch.Tensor | None = None, k: int = 64, seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """The ELBO (E_q log p(x|z) over the same k draws, closed-form KL) and the importance-weighted bound of Burda et al.
    2016 with k samples, as a negative log-likelihood: nll_iw = −log (1/k) Σ p(x|zᵢ) p(zᵢ) / q(zᵢ|x),
    zᵢ ~ q(z|x). nll_iw ≤ −elbo, and it tightens as k grows. Both in nats per image, averaged."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    elbo_sum = nll_sum = 0.0
    try:
        for xb, yb in batches(x, labels, batch_size, device):
            mu, logvar = model.posterior_params(xb, yb)  # (B, L) each
            std = torch.exp(0.5 * logvar)
            eps = torch.randn((k, *mu.shape), generator=g).to(device)  # (k, B, L)
            z = draw_latent(mu, logvar, eps)  # (k, B, L)
            logits = model.logits(z.flatten(0, 1), None if yb is None else yb.repeat(k))  # (k·B, C, H, W)
            log_px = log_likelihood(model.likelihood, logits, xb.repeat(k, 1, 1, 1)).view(k, -1)  # (k, B)
            log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)  # (k, B)
            log_qz = Normal(mu, std).log_prob(z).sum(-1)  # (k, B)
            log_w = log_px + log_pz - log_qz
            nll_sum -= (torch.logsumexp(log_w, 0) - math.log(k)).sum().item()
            kl = kl_per_image(mu, logvar)  # (B,)
            elbo_sum += (log_px.mean(0) - kl).sum().item()  # E_q[log p(x|z)] over the k draws
    finally:
        model.train(was_training)
    return {"elbo": elbo_sum / len(x), "nll_iw": nll_sum / len(x)}


@torch.no_grad()
def image_scores(model, x: torch.Tensor, *, labels: torch.Tensor | None = None, seed: int = 0, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Per-image scores (N,) for anomaly detection: `neg_elbo` (training units: reconstruction term
    through one z ~ q(z|x) plus KL) and `recon_error` (summed squared error through the posterior mean)."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    out: dict[str, list] = {"neg_elbo": [], "recon_error": []}
    try:
        for xb, yb in batches(x, labels, batch_size, device):
            mu, logvar = model.posterior_params(xb, yb)  # (B, L) each (logvar None for an autoencoder)
            z, kl = mu, torch.zeros(len(xb), device=device)
            if logvar is not None:
                z = draw_latent(mu, logvar, torch.randn(mu.shape, generator=g).to(device))
                kl = kl_per_image(mu, logvar)
            rec = RECONSTRUCTION[model.likelihood](model.logits(z, yb), xb)  # (B,)
            out["neg_elbo"].append((rec + kl).cpu())
            out["recon_error"].append((model.decode(mu, yb) - xb).pow(2).flatten(1).sum(1).cpu())
    finally:
        model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def recon_mse(model, x: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Mean squared error per pixel of the reconstructions through the posterior mean."""
    return (reconstruct(model, x, labels) - x.cpu()).pow(2).mean().item()


def evaluate_run(
    run_dir: Path | str,
    *,
    n: int = 0,
    k: int = 64,
    metrics: tuple[str, ...] | None = None,
    extractor: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
) -> dict:
    """Evaluate the model in `run_dir` on test images of its dataset; write evaluation.json and
    add its table to the run's report.

    Arguments:
        n: test images (0: the whole enumerated test set, or 2,000 new draws of a generated
            dataset; data read from files is measured on its own images).
        k: importance samples per image for nll_iw.
        metrics: a subset of EVALUATE_METRICS; None takes every one that applies (fid, prdc and
            class need labels or an `extractor`; without them they are left out).
        extractor: images (N, C, H, W) → features (N, D) for fid and prdc, e.g. an Inception net
            the user has on disk; default: vaelab's feature net trained on the run's training data.
    Returns:
        the flat dict written to evaluation.json: recon_mse, elbo, nll_iw, fid, precision, recall,
        density, coverage, class_tv, class_entropy, …, feature_net (the features' name), n_test;
        with "disentanglement": beta_vae, factor_vae, mig, dci_*, sap, modularity, explicitness.
    """

    run_dir = Path(run_dir)
    asked = tuple(metrics) if metrics else None
    for m in asked or ():
        if m not in EVALUATE_METRICS:
            raise UserError(f"unknown metric {m!r}; valid metrics: {', '.join(EVALUATE_METRICS)}")
    if n < 0 or k < 1:
        raise UserError(f"--n must be >= 0 and --k >= 1, got n={n}, k={k}")
    cfg, model = load_run(run_dir)
    read_metrics(run_dir / "metrics.jsonl")  # the report rebuilt at the end reads it: a damaged one is refused before anything is written
    report_path(run_dir)
    train = load_data(cfg.data)
    test = load_data(test_data_config(cfg.data, n))
    wanted = set(asked or [m for m in EVALUATE_METRICS if m != "disentanglement"])
    if train.labels is None:  # no feature net to train, no classes to count
        needs = {"class"} | ({"fid", "prdc"} if extractor is None else set())
        if asked and needs & wanted:
            feature_net(train.images, None, source=cfg.data.name)  # raises the user error naming what to pass
        wanted -= needs
    x, y = test.images, test.labels if model.n_classes else None  # a conditional model's labels
    check_fits(k * math.prod(x.shape[1:]) * 4, next(model.parameters()).device, f"--k {k:,} importance samples of one image")
    results: dict = {"n_test": len(x), "dataset": test.name}
    if "recon_mse" in wanted:
        results["recon_mse"] = recon_mse(model, x, y)
    if model.deterministic and asked and wanted & {"elbo", "nll_iw"}:
        raise UserError(f"{run_dir} holds a deterministic autoencoder ({cfg.model.name}): it has no ELBO or likelihood bound")
    if wanted & {"elbo", "nll_iw"} and not model.deterministic:
        bounds = likelihood_bounds(model, x, labels=y, k=k, seed=seed)
        results.update({m: bounds[m] for m in ("elbo", "nll_iw") if m in wanted})
        if "nll_iw" in wanted:
            results["nll_iw_k"] = k
    if wanted & {"fid", "prdc", "class"}:
        s = cfg.sample
        fake = sample(model, len(x), delta=s.delta, denoise=s.denoise, seed=s.seed, labels=y)  # a cvae: the test set's classes
        net = feature_net(train.images, train.labels, source=cfg.data.name) if train.labels is not None else None
        extract = extractor or net
        results["feature_net"] = getattr(extract, "name", type(extract).__name__)
        if wanted & {"fid", "prdc"}:
            real_f, fake_f = extract(x), extract(fake)
            if "fid" in wanted:
                results["fid"] = fid(real_f, fake_f)
            if "prdc" in wanted:
                cap = min(len(x), 5000)  # k-NN balls are O(N²)
                results.update(prdc(real_f[:cap], fake_f[:cap], k=5))
        if "class" in wanted:
            results.update(class_distribution(net.predict(fake), train.labels, net.n_classes))
    if "disentanglement" in wanted:
        results.update(disentanglement(model, cfg.data, seed=seed))
    atomic_write(run_dir / "evaluation.json", json.dumps(results, indent=1))
    write_run_report(run_dir)
    return results

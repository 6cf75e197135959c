"""Evaluation of a trained model: likelihood bounds, reconstructions, and — on feature-net
features — FID, precision/recall/density/coverage and the class distribution (`vaelab evaluate`).

    results = evaluate_run("runs/conv")      # also written to runs/conv/evaluation.json

METRICS is the one registry of what can be measured of a trained model: `vaelab evaluate
--metrics`, a sweep's `sweep.metrics` and the reports take their names, columns and
descriptions from it, and each metric says what it needs (NEEDS), refused in one line when missing.

Likelihoods are in nats per image. The Gaussian likelihood is the one vaelab trains with: a fixed
variance σ² = ½ per pixel, so −log p(x|z) = ‖x − x̂‖² + (D/2)·log π, the summed squared error plus
a constant; the Bernoulli one is the summed binary cross-entropy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.distributions import Normal

from vaelab.checkpoint import load_run
from vaelab.config import Config
from vaelab.data import DATASETS, Dataset, load_data, test_data_config
from vaelab.data.sprites import rare_mask
from vaelab.device import check_fits
from vaelab.errors import UserError
from vaelab.latent import latent_means
from vaelab.losses import RECONSTRUCTION, draw_latent, gaussian_kl, kl_per_image, reconstruction
from vaelab.metrics import class_distribution, decoder_mse, feature_net, fid, fit_linear_map, pmi, prdc
from vaelab.metrics.disentanglement import SCORES, all_scores
from vaelab.metrics.recovery import factor_r2, irs, mcc
from vaelab.metrics.posterior import ACTIVE_THRESHOLD, active_units, gaussian_fit_kl, kl_per_dim, memorised, mmd, mutual_information
from vaelab.models import MODELS
from vaelab.report import report_path
from vaelab.run_report import write_run_report
from vaelab.runfolder import atomic_write, read_metrics
from vaelab.sample import batches, reconstruct, sample


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
def image_bounds(model, x: torch.Tensor, *, labels: torch.Tensor | None = None, k: int = 64, seed: int = 0, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per image (N,) on the CPU, in nats: the ELBO (E_q log p(x|z) over k draws, closed-form KL)
    and the importance-weighted bound of Burda et al. 2016 with k samples, as a negative
    log-likelihood: nll_iw = −log (1/k) Σ p(x|zᵢ) p(zᵢ) / q(zᵢ|x), zᵢ ~ q(z|x). nll_iw ≤ −elbo
    (in expectation), and it tightens as k grows."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    out: dict[str, list] = {"elbo": [], "nll_iw": []}
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
            out["nll_iw"].append(-(torch.logsumexp(log_w, 0) - math.log(k)).cpu())
            out["elbo"].append((log_px.mean(0) - kl_per_image(mu, logvar)).cpu())  # E_q[log p(x|z)] over the k draws
    finally:
        model.train(was_training)
    return {name: torch.cat(parts) for name, parts in out.items()}


TAIL_QUANTILES = (50, 90, 99)
"""the quantiles (%) of the images' nll_iw that likelihood_bounds reports (nll_iw_q50, …): the tail of the likelihood"""


def likelihood_bounds(model, x: torch.Tensor, *, labels: torch.Tensor | None = None, k: int = 64, seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """`image_bounds` summed up (`bound_summary`): the mean ELBO and nll_iw per image, and nll_iw's
    TAIL_QUANTILES (nll_iw_q50, nll_iw_q90, nll_iw_q99), in nats."""
    return bound_summary(image_bounds(model, x, labels=labels, k=k, seed=seed, batch_size=batch_size), batch_size)


def bound_summary(per_image: dict[str, torch.Tensor], batch_size: int = 256) -> dict[str, float]:
    """The means of `image_bounds`' per-image figures (summed batch by batch, as they were
    computed) and nll_iw's TAIL_QUANTILES."""
    out = {name: sum(part.sum().item() for part in t.split(batch_size)) / len(t) for name, t in per_image.items()}
    q = torch.quantile(per_image["nll_iw"].double(), torch.tensor([p / 100 for p in TAIL_QUANTILES], dtype=torch.float64))
    return {**out, **{f"nll_iw_q{p}": float(v) for p, v in zip(TAIL_QUANTILES, q)}}


POSTERIOR_CAP = 5000
"""posterior_diagnostics reads at most this many images (its I(x; z) and MMD are O(N²))"""


@torch.no_grad()
def posterior_diagnostics(model, x: torch.Tensor, *, labels: torch.Tensor | None = None, seed: int = 0) -> tuple[dict[str, float], list[float]]:
    """What the encoder does with the images x (the first POSTERIOR_CAP): (figures, the KL per
    latent dim). The figures (vaelab.metrics.posterior): active units, the KL term, the Gaussian
    fit of the latent means against N(0, I), the MMD between one posterior draw per image and as
    many prior draws, and I(x; z) under the aggregate posterior."""
    x = x[:POSTERIOR_CAP]
    labels = None if labels is None else labels[:POSTERIOR_CAP]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        params = [model.posterior_params(xb, yb) for xb, yb in batches(x, labels, 1024, device)]
    finally:
        model.train(was_training)
    mu = torch.cat([m for m, _ in params]).double().cpu()  # (N, L)
    logvar = torch.cat([v for _, v in params]).double().cpu()
    g = torch.Generator().manual_seed(seed)
    z = draw_latent(mu, logvar, torch.randn(mu.shape, generator=g, dtype=torch.float64))  # one draw per image
    prior = torch.randn(mu.shape, generator=g, dtype=torch.float64)
    per_dim = kl_per_dim(mu, logvar)
    figures = {
        "active_units": float(active_units(mu)),
        "posterior_kl": float(per_dim.sum()),
        "aggregate_kl": gaussian_fit_kl(mu),
        "aggregate_mmd": mmd(z, prior),
        "mutual_info": mutual_information(mu, logvar, z),
    }
    return figures, per_dim.tolist()


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


# ---------------------------------------------------------------------------------------------
# The metrics of a trained model: one registry for `vaelab evaluate`, `sweep.metrics` and the
# reports, each metric with what it needs, its columns and what they hold.


FIT_FRACTION = 0.8
"""share of the test images the latent-recovery map (pmi, decoder_mse) is fitted on; it is scored on the rest"""


class MetricInputs:
    """A trained model and its test images, with what several metrics share computed once: the
    prior samples, the latent-recovery fit, the likelihood bounds and the feature nets.

    Arguments:
        model: the trained model (on any device).
        test: its test images (labels and factors where the dataset has them).
        cfg: the run's config (data, sample, sweep and train settings the metrics read).
        train_data: () → the training set (labels for the class spread); the metrics that need
            labels or features need it, the others (a chain's neg_elbo) do without.
        feature_net: () → the classifier trained on the training labels (fid, prdc, class).
        features: images → features for fid and prdc; default: `feature_net()`.
        seed: seed of the stochastic metrics (likelihood bounds, disentanglement).
        k: importance samples per image (nll_iw).
        sizes: sample sizes of the disentanglement scores (`all_scores`' n, n_test, …); {}: its own.
    """

    def __init__(self, model, test: Dataset, cfg: Config, *, train_data: Callable[[], Dataset] | None = None, feature_net: Callable | None = None, features: Callable | None = None, seed: int = 0, k: int = 64, sizes: dict | None = None):
        self.model, self.test, self.cfg = model, test, cfg
        self.train_data, self.feature_net, self.seed, self.k, self.sizes = train_data, feature_net, seed, k, sizes or {}
        self.features = features or (lambda images: feature_net()(images))
        self.device = next(model.parameters()).device
        self.labels = test.labels if model.n_classes else None
        """what a conditional model takes with the test images (None for the others)"""

    @functools.cached_property
    def codes(self) -> torch.Tensor:
        """(N, L) the latent means of the test images, computed once."""
        return latent_means(self.model, self.test.images, self.labels)

    @functools.cached_property
    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(fit, held-out) indices of the test images: FIT_FRACTION of them, seeded by data.seed."""
        n = len(self.test)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.data.seed))
        cut = max(1, min(n - 1, round(FIT_FRACTION * n)))
        return order[:cut], order[cut:]

    @functools.cached_property
    def recovery(self) -> tuple[Any, dict[str, float]]:
        """The linear map factors → latent means fitted on the `split`'s fit images, and its
        figures (pmi, pmi_r2) on the held-out ones."""
        (fit_idx, test_idx), mu, factors = self.split, self.codes, self.test.factors
        fit = fit_linear_map(factors[fit_idx], mu[fit_idx], self.cfg.sweep.pmi_fit, seed=self.cfg.train.seed)
        return fit, pmi(fit, factors[test_idx], mu[test_idx])

    def factor_r2(self, nonlinear: bool) -> float:
        """Mean held-out R² of latents → factors (`vaelab.metrics.recovery.factor_r2`) on the `split`."""
        (fit_idx, test_idx), mu, factors = self.split, self.codes, self.test.factors
        return float(factor_r2(mu[fit_idx], factors[fit_idx], mu[test_idx], factors[test_idx], nonlinear=nonlinear, seed=self.cfg.train.seed).mean())

    @functools.cached_property
    def samples(self) -> torch.Tensor:
        """As many prior samples as test images (sample.delta, sample.denoise, sample.seed; a
        conditional model draws the test images' classes)."""
        s = self.cfg.sample
        return sample(self.model, len(self.test), delta=s.delta, denoise=s.denoise, seed=s.seed, labels=self.labels, prior=s.prior)

    @functools.cached_property
    def test_features(self) -> torch.Tensor:
        """The features (fid, prdc) of the test images, computed once."""
        return self.features(self.test.images)

    @functools.cached_property
    def sample_features(self) -> torch.Tensor:
        """The features of the prior samples, computed once."""
        return self.features(self.samples)

    @functools.cached_property
    def image_bounds(self) -> dict[str, torch.Tensor]:
        """Each test image's ELBO and nll_iw (`image_bounds`) with k importance samples."""
        return image_bounds(self.model, self.test.images, labels=self.labels, k=self.k, seed=self.seed)

    @functools.cached_property
    def bounds(self) -> dict[str, float]:
        """Their means and nll_iw's quantiles (`bound_summary`)."""
        return bound_summary(self.image_bounds)

    @functools.cached_property
    def posterior(self) -> tuple[dict[str, float], list[float]]:
        """`posterior_diagnostics` of the test images: (figures, the KL per latent dim)."""
        return posterior_diagnostics(self.model, self.test.images, labels=self.labels, seed=self.seed)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.decode(z.to(self.device)).cpu()


@dataclass(frozen=True)
class Metric:
    """A metric of a trained model on its test images."""

    columns: dict[str, str]
    """each figure it gives (a column of sweep.csv, a key of evaluation.json) → what it holds"""
    compute: Callable[[MetricInputs], dict[str, float]] | None
    """MetricInputs → every column's figure; None for a figure that compares a sweep's models with
    each other (`udr`: the sweep computes it once every cell has trained)"""
    needs: tuple[str, ...] = ()
    """what it needs beyond a model and its test images (keys of NEEDS)"""
    evaluate_default: bool = False
    """`vaelab evaluate` computes it when no --metrics are named (and its needs are met)"""
    swept: tuple[str, ...] | None = None
    """the columns a sweep writes into sweep.csv (and its report draws); None: all of them.
    `vaelab evaluate` writes every column"""

    @property
    def sweep_columns(self) -> tuple[str, ...]:
        return self.swept or tuple(self.columns)


def _class_spread(p: MetricInputs) -> dict[str, float]:
    net = p.feature_net()
    return class_distribution(net.predict(p.samples), p.train_data().labels, net.n_classes)


def _prdc(p: MetricInputs) -> dict[str, float]:
    cap = min(len(p.test), PRDC_CAP)
    return prdc(p.test_features[:cap], p.sample_features[:cap], k=5)


PRDC_CAP = 5000
"""prdc compares at most this many images a side (its k-NN balls are O(N²))"""


def _rare(p: MetricInputs) -> dict[str, float]:
    """The rare region of a skewed sprites set (`sprites.rare_mask`), on test images drawn without
    the skew: reconstruction error there and elsewhere, and how well the samples cover it."""
    params = p.cfg.data.params
    test = cached_dataset(dataclasses.replace(test_config(p.cfg), params=dataclasses.replace(params, skew_factor="none", skew=1.0)))
    rare = rare_mask(params, test.factors)
    err = (reconstruct(p.model, test.images, test.labels if p.model.n_classes else None) - test.images).pow(2).flatten(1).mean(1)  # (N,) per pixel
    scores = prdc(test.images[rare].flatten(1), p.samples.flatten(1), k=5)
    return {"rare_recon_mse": err[rare].mean().item(), "common_recon_mse": err[~rare].mean().item(), "rare_recall": scores["recall"], "rare_coverage": scores["coverage"]}


MEMORISATION_CAP = 5000
"""memorisation compares at most this many samples with as many training images (a seeded subset)"""


def _subset_of(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n of `images`, drawn without replacement (seeded), or all of them."""
    if len(images) <= n:
        return images
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


DEFAULT_TEST_N = 2000
"""test images drawn anew from a generated dataset with no enumerated test set, when none are asked for"""


def test_config(cfg: Config):
    """The DataConfig of the test set a sweep's metrics use (`vaelab.data.test_data_config`)."""
    return test_data_config(cfg.data, cfg.sweep.test_n, DEFAULT_TEST_N)


@functools.lru_cache(maxsize=8)
def cached_dataset(data_cfg) -> Dataset:
    """A dataset by its DataConfig, loaded once per process (test sets, the feature nets' data)."""
    return load_data(data_cfg)


METRICS: dict[str, Metric] = {
    "pmi": Metric(
        {"pmi": "held-out MSE of the linear map from the ground-truth factors to the latent means (lower: the factors are recovered linearly)", "pmi_r2": "R² of that map (1 is perfect)"},
        lambda p: p.recovery[1],
        needs=("factors",),
    ),
    "decoder_mse": Metric(
        {"decoder_mse": "‖G(f) − decode(P(f))‖²: the test images against the decoding of their factors' mapped codes, test-set mean"},
        lambda p: {"decoder_mse": decoder_mse(p.decode, p.recovery[0], p.test.factors, p.test.images)},
        needs=("factors", "unconditional"),
    ),
    "mcc": Metric(
        {
            "mcc": "mean correlation coefficient (Khemakhem et al. 2020): each ground-truth factor matched to its own latent mean (Hungarian, on |Pearson r|), averaged; 0 for constant latent means",
            "mcc_spearman": "the same on Spearman's rank correlation: any monotone code of a factor scores 1",
        },
        lambda p: {"mcc": mcc(p.codes, p.test.factors), "mcc_spearman": mcc(p.codes, p.test.factors, method="spearman")},
        needs=("factors", "latents"),
    ),
    "factor_r2": Metric(
        {
            "factor_r2": "held-out R² of a least-squares map from the latent means to each ground-truth factor, the factors' mean (below 0 counted as 0): 0 when the latents carry nothing",
            "factor_r2_nonlinear": "the same with a small multilayer perceptron (two hidden layers of 32)",
        },
        lambda p: {"factor_r2": p.factor_r2(nonlinear=False), "factor_r2_nonlinear": p.factor_r2(nonlinear=True)},
        needs=("factors",),
    ),
    "irs": Metric(
        {"irs": "interventional robustness score (Suter et al. 2019, as disentanglement_lib computes it): how little each latent mean moves with its best factor held fixed, against how far it moves overall"},
        lambda p: {"irs": irs(p.codes, p.test.factors)},
        needs=("factors",),
    ),
    "udr": Metric(
        {"udr": "unsupervised disentanglement ranking (Duan et al. 2020): the median agreement of this model's informative latents (KL > 0.01 nats) with those of its setting's other seeds, on the same test images (absolute Spearman correlations; each latent max² / sum)"},
        None,
        needs=("seeds", "elbo"),
    ),
    "neg_elbo": Metric(
        {"neg_elbo": "−ELBO per image on the test set, in training units (reconstruction + KL, one z per image; an autoencoder's is its reconstruction term)"},
        lambda p: {"neg_elbo": neg_elbo(p.model, p.test.images, labels=p.labels)["neg_elbo"]},
        needs=("likelihood",),
    ),
    "recon_mse": Metric(
        {"recon_mse": "mean squared error per pixel of the test images' reconstructions through the posterior mean"},
        lambda p: {"recon_mse": recon_mse(p.model, p.test.images, p.labels)},
        evaluate_default=True,
    ),
    "elbo": Metric(
        {"elbo": "the ELBO per image in nats (E_q log p(x|z) over k draws, closed-form KL)"},
        lambda p: {"elbo": p.bounds["elbo"]},
        needs=("elbo",),
        evaluate_default=True,
    ),
    "nll_iw": Metric(
        {
            "nll_iw": "the importance-weighted bound on −log p(x) (Burda et al. 2016) in nats per image",
            "nll_iw_k": "the importance samples per image it took",
            **{f"nll_iw_q{q}": f"the {q} % quantile of the test images' nll_iw: the likelihood's tail" for q in TAIL_QUANTILES},
        },
        lambda p: {"nll_iw": p.bounds["nll_iw"], "nll_iw_k": p.k, **{f"nll_iw_q{q}": p.bounds[f"nll_iw_q{q}"] for q in TAIL_QUANTILES}},
        needs=("elbo",),
        evaluate_default=True,
        swept=("nll_iw",),
    ),
    "fid": Metric(
        {"fid": "Fréchet distance between the features of the test images and of as many prior samples (lower is better)"},
        lambda p: {"fid": fid(p.test_features, p.sample_features)},
        needs=("features",),
        evaluate_default=True,
    ),
    "prdc": Metric(
        {
            "precision": "share of prior samples inside the test images' k-NN balls (k = 5, on features): fidelity",
            "recall": "share of test images inside the samples' k-NN balls: diversity",
            "density": "how many test images' balls hold each sample, over k: fidelity robust to outliers",
            "coverage": "share of test images whose ball holds a sample: diversity robust to outliers",
        },
        _prdc,
        needs=("features",),
        evaluate_default=True,
    ),
    "class": Metric(
        {
            "class_tv": "total variation between the predicted classes of prior samples and the training labels' distribution",
            "class_entropy": "entropy (nats) of the samples' predicted classes",
            "class_entropy_ref": "entropy of the training labels",
            "class_entropy_max": "log K, the entropy of K equally likely classes",
        },
        _class_spread,
        needs=("labels",),
        evaluate_default=True,
        swept=("class_tv", "class_entropy"),
    ),
    "posterior": Metric(
        {
            "active_units": f"latent dims whose posterior mean varies across the test images (variance > {ACTIVE_THRESHOLD}; Burda et al. 2016)",
            "posterior_kl": "KL(q(z|x) ‖ N(0, I)) per image, test-set mean: the KL term, the sum of the KL per latent dim",
            "aggregate_kl": "KL of the Gaussian fitted to the test images' latent means to N(0, I): how far the codes sit from where the prior samples",
            "aggregate_mmd": "MMD² (unbiased; Gaussian kernel exp(−‖a − b‖² / 2L), L the latent dims) between one posterior draw per test image and as many prior draws",
            "mutual_info": "I(x; z) in nats under the aggregate posterior of the test images (He et al. 2019's estimator; at most log N)",
        },
        lambda p: p.posterior[0],
        needs=("elbo",),
        evaluate_default=True,
    ),
    "memorisation": Metric(
        {"memorised": f"share of (prior sample, training image) pairs where the sample is nearer the training set than that image is to its nearest other (pixels; at most {MEMORISATION_CAP:,} of each): ½ for fresh draws, 1 for copies"},
        lambda p: {"memorised": memorised(p.samples[:MEMORISATION_CAP].to(p.device), _subset_of(p.train_data().images, MEMORISATION_CAP, p.seed).to(p.device))},
    ),
    "disentanglement": Metric(
        SCORES,
        lambda p: disentanglement(p.model, p.cfg.data, seed=p.seed, **p.sizes),
        needs=("truth",),
    ),
    "rare": Metric(
        {
            "rare_recon_mse": "reconstruction error per pixel on the rare region of a skewed dataset (test images drawn without the skew)",
            "common_recon_mse": "the same outside the rare region",
            "rare_recall": "share of rare test images inside the samples' k-NN balls (pixels)",
            "rare_coverage": "share of rare test images whose ball holds a sample",
        },
        _rare,
        needs=("skew",),
    ),
}


@dataclass(frozen=True)
class Setting:
    """What decides whether a metric can be computed for a run: its config, its test images,
    whether its training set is labelled and whether the caller brought its own features."""

    cfg: Config
    """the run's config (its model and dataset)"""
    test: Dataset
    """the test images the metrics would measure"""
    labelled: bool
    """the training set has labels (a feature net and the class spread can be had)"""
    own_features: bool = False
    """the caller brings its own features (`evaluate_run`'s extractor): fid and prdc need no labels"""
    seeds: int = 1
    """the models of this setting trained from different seeds that will be compared (a sweep's
    sweep.seeds; 1 for a single run)"""


@dataclass(frozen=True)
class Need:
    """Something a metric needs (`Metric.needs`): whether a setting meets it, and the reason
    that refuses the metrics lacking it, "{what} {names} {reason}"."""

    met: Callable[[Setting], bool]
    """whether a setting has it"""
    reason: Callable[[Setting], str]
    """why a setting lacks it, the end of the one-line refusal"""


NEEDS: dict[str, Need] = {
    "factors": Need(
        lambda s: s.test.factors is not None,
        lambda s: f"need ground-truth factors, and dataset {s.cfg.data.name} has none (generated datasets such as squares and points have them; an array file can carry a 'factors' key)",
    ),
    "latents": Need(
        lambda s: s.cfg.model.latent_dim >= s.test.factors.shape[1],
        lambda s: f"match each of the {s.test.factors.shape[1]} factors of {s.cfg.data.name} to its own latent, and the model has only model.latent_dim = {s.cfg.model.latent_dim}",
    ),
    "seeds": Need(
        lambda s: s.seeds >= 2,
        lambda s: "compares the models of one setting trained from different seeds: only a sweep with sweep.seeds >= 2 computes it",
    ),
    "unconditional": Need(
        lambda s: not MODELS[s.cfg.model.name].conditional,
        lambda s: f"decodes latents alone, and model {s.cfg.model.name} also needs a label: leave it out",
    ),
    "features": Need(
        lambda s: s.labelled or s.own_features,
        lambda s: f"need features: a labelled dataset (a feature net is trained on its labels), and dataset {s.cfg.data.name} has none (use fontdigits, digits, mnist or fashion-mnist, or an array file with a 'labels' key)",
    ),
    "labels": Need(
        lambda s: s.labelled,
        lambda s: f"need a labelled dataset (a classifier is trained on its labels), and dataset {s.cfg.data.name} has none (use fontdigits, digits, mnist or fashion-mnist, or an array file with a 'labels' key)",
    ),
    "truth": Need(
        lambda s: DATASETS[s.cfg.data.name].truth is not None,
        lambda s: f"needs a dataset that renders chosen factors; {s.cfg.data.name} cannot (use one of: {', '.join(sorted(k for k, v in DATASETS.items() if v.truth is not None))})",
    ),
    "skew": Need(
        lambda s: getattr(s.cfg.data.params, "skew_factor", "none") != "none",
        lambda s: "measures the rare region of a skewed dataset: use data.name = sprites with data.skew_factor and data.skew < 1",
    ),
    "likelihood": Need(
        lambda s: not MODELS[s.cfg.model.name].fitted,
        lambda s: f"need a model with a decoder likelihood; model {s.cfg.model.name} is a fitted Gaussian",
    ),
    "elbo": Need(
        lambda s: "beta" in MODELS[s.cfg.model.name].params.loss_keys,  # a model without a KL term (it honours no β) has no ELBO
        lambda s: f"need a model with an ELBO; model {s.cfg.model.name} is a deterministic autoencoder: it has no ELBO or likelihood bound",
    ),
}
"""what a metric may need, in the order they are checked"""


def refusals(names, setting: Setting, what: str) -> dict[str, str]:
    """The metrics among `names` that `setting` cannot compute, each with the one-line reason that
    refuses it ("{what} {the metrics lacking the same thing} {reason}")."""
    out: dict[str, str] = {}
    for need, check in NEEDS.items():
        lacking = [m for m in names if need in METRICS[m].needs and m not in out]
        if lacking and not check.met(setting):
            message = f"{what} {', '.join(lacking)} {check.reason(setting)}"
            out.update({m: message for m in lacking})
    return out


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
        metrics: names of METRICS; None takes those marked `evaluate_default` that apply (fid,
            prdc and class need labels or an `extractor`; without them they are left out).
        extractor: images (N, C, H, W) → features (N, D) for fid and prdc, e.g. an Inception net
            the user has on disk; default: vaelab's feature net trained on the run's training data.
    Returns:
        the flat dict written to evaluation.json: n_test, dataset, each metric's columns
        (METRICS), and feature_net (the features' name) when fid or prdc were computed.
    """
    run_dir = Path(run_dir)
    asked = tuple(metrics) if metrics else None
    for m in asked or ():
        if m not in METRICS:
            raise UserError(f"unknown metric {m!r}; valid metrics: {', '.join(METRICS)}")
    if n < 0 or k < 1:
        raise UserError(f"--n must be >= 0 and --k >= 1, got n={n}, k={k}")
    cfg, model = load_run(run_dir)
    read_metrics(run_dir / "metrics.jsonl")  # the report rebuilt at the end reads it: a damaged one is refused before anything is written
    report_path(run_dir)
    train = load_data(cfg.data)
    test = load_data(test_data_config(cfg.data, n))
    wanted = list(asked or [m for m, metric in METRICS.items() if metric.evaluate_default])
    refused = refusals(wanted, Setting(cfg, test, labelled=train.labels is not None, own_features=extractor is not None), "--metrics")
    if asked and refused:
        raise UserError(next(iter(refused.values())))
    check_fits(k * math.prod(test.images.shape[1:]) * 4, next(model.parameters()).device, f"--k {k:,} importance samples of one image")
    net = functools.cache(lambda: feature_net(train.images, train.labels, source=cfg.data.name))
    inputs = MetricInputs(model, test, cfg, train_data=lambda: train, feature_net=net, features=extractor, seed=seed, k=k)
    results: dict = {"n_test": len(test), "dataset": test.name}
    for m in wanted:
        if m not in refused:
            results.update(METRICS[m].compute(inputs))
    if any({"features", "labels"} & set(METRICS[m].needs) for m in wanted if m not in refused):  # fid, prdc, class
        results["feature_net"] = getattr(extractor or net(), "name", type(extractor or net()).__name__)
    atomic_write(run_dir / "evaluation.json", json.dumps(results, indent=1))
    write_run_report(run_dir)
    return results

"""Generation from a trained model: prior samples (with δ and denoising), the aggregate-posterior
prior fitted after training, and reconstructions."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vaelab.errors import UserError
from vaelab.models import class_labels
from vaelab.runfolder import load_tensors, save_tensors

PRIOR_FILE = "prior.safetensors"
"""a run's aggregate-posterior prior (sample.prior = aggregate), beside model.safetensors"""


@dataclass(frozen=True)
class AggregatePrior:
    """A Gaussian mixture fitted to the latent means of a model's training images after training
    (Ghosh et al. 2020's ex-post density estimation): sampling from it draws codes where the
    encoder put the data, rather than from N(0, I)."""

    weights: torch.Tensor
    """(K,) the components' weights, summing to 1"""
    means: torch.Tensor
    """(K, L) their means"""
    scale_tril: torch.Tensor
    """(K, L, L) the Cholesky factors of their covariances"""

    @classmethod
    def fit(cls, codes: torch.Tensor, components: int, seed: int) -> "AggregatePrior":
        """The maximum-likelihood mixture of `components` full-covariance Gaussians for codes (N, L)
        (scikit-learn's GaussianMixture, k-means initialised, seeded)."""
        from sklearn.exceptions import ConvergenceWarning  # scikit-learn, loaded only where a mixture is fitted
        from sklearn.mixture import GaussianMixture

        if components > len(codes):
            raise UserError(f"sample.prior_components = {components} is more than the {len(codes)} training images the mixture is fitted to")
        with warnings.catch_warnings():  # codes of a collapsed set repeat: fewer distinct clusters than components is a fit, not a fault
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm = GaussianMixture(components, covariance_type="full", reg_covar=1e-6, random_state=seed).fit(codes.double().numpy())
        return cls(torch.from_numpy(gm.weights_), torch.from_numpy(gm.means_), torch.linalg.cholesky(torch.from_numpy(gm.covariances_)))

    def sample(self, n: int, generator: torch.Generator, delta: float = 0.0) -> torch.Tensor:
        """n codes (n, L) float32 on the CPU: a component by its weight, then its Gaussian with the
        spread scaled by 1 + δ (δ widens each component as it widens N(0, I))."""
        k = torch.multinomial(self.weights.double(), n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn((n, self.means.shape[1], 1), generator=generator, dtype=torch.float64)  # (n, L, 1)
        return (self.means[k].double() + (1.0 + delta) * (self.scale_tril[k].double() @ eps).squeeze(-1)).float()

    def save(self, run_dir: Path) -> None:
        save_tensors(run_dir / PRIOR_FILE, {"weights": self.weights, "means": self.means, "scale_tril": self.scale_tril}, kind="aggregate-posterior mixture")

    @classmethod
    def load(cls, run_dir: Path) -> "AggregatePrior | None":
        """The run's fitted mixture, or None when it has none."""
        if not (run_dir / PRIOR_FILE).is_file():
            return None
        tensors, _ = load_tensors(run_dir / PRIOR_FILE)
        return cls(tensors["weights"], tensors["means"], tensors["scale_tril"])


@torch.no_grad()
def sample(
    model,
    n: int,
    *,
    delta: float = 0.0,
    denoise: float = 0.0,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    prior: str = "standard",
    batch_size: int = 4096,
) -> torch.Tensor:
    """Draw n images: z from the model's prior (N(0, (1 + δ)² I) for a VAE) or its fitted
    aggregate prior, the decoder mean as the image, then optional denoising.

    Arguments:
        model: a trained model with `latent_dim` and `decode`.
        n: number of images.
        delta: δ, widening the prior (the chain study's mitigation; a VQ-VAE's prior temperature 1 + δ); 0 is the plain prior.
        denoise: threshold; every pixel below denoise × (max over all n images) is set to 0.
        seed: seed of the prior draws (a private generator: the global RNG is untouched).
        labels: (n,) the classes of a conditional model's images; every class in turn when None
            (`vaelab.models.class_labels`). Ignored by an unconditional model.
        prior: standard (the model's own prior) or aggregate (the mixture fitted after training,
            `model.aggregate_prior`; sample.prior).
    Returns:
        float32 (n, C, H, W) on the CPU.
    """

    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z = prior_codes(model, n, g, delta, prior)  # (n, L)
    labels = labels if labels is not None else class_labels(model, n)
    was_training = model.training
    model.eval()
    try:
        out = torch.cat([model.decode(zb, yb).cpu() for zb, yb in batches(z, labels, batch_size, device)])  # (n, C, H, W)
    finally:
        model.train(was_training)
    return denoise_images(out, denoise) if denoise > 0 else out


def _aggregate_codes(model, n: int, generator: torch.Generator, delta: float) -> torch.Tensor:
    fitted = getattr(model, "aggregate_prior", None)
    if fitted is None:
        raise UserError("sample.prior = aggregate: this model has no fitted mixture (train it with sample.prior = aggregate; its run folder then holds prior.safetensors)")
    return fitted.sample(n, generator, delta)


PRIORS = {
    "standard": lambda model, n, generator, delta: model.prior_sample(n, generator, delta),
    "aggregate": _aggregate_codes,
}
"""sample.prior → (model, n, generator, δ) → n codes (n, L) on the CPU"""


def prior_codes(model, n: int, generator: torch.Generator, delta: float, prior: str) -> torch.Tensor:
    """n codes (n, L) on the CPU from the prior `prior` names (sample.prior)."""
    if prior not in PRIORS:
        raise UserError(f"sample.prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    return PRIORS[prior](model, n, generator, delta)


def denoise_images(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero every pixel below threshold × (the maximum pixel over the whole set)."""
    return torch.where(images >= threshold * images.max(), images, images.new_zeros(()))


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 4096) -> torch.Tensor:
    """Decode the posterior mean of each input: x (N, C, H, W) [labels (N,)] → x̂ (N, C, H, W) on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(xb, yb).cpu() for xb, yb in batches(x, labels, batch_size, device)])
    finally:
        model.train(was_training)


def batches(x: torch.Tensor, labels: torch.Tensor | None, size: int, device=None):
    """(x batch, labels batch or None) pairs on `device`: x (and labels) split into batches of `size`."""
    for i in range(0, len(x), size):
        yield x[i : i + size].to(device), None if labels is None else labels[i : i + size].to(device)

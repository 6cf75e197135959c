"""Loss terms as pure tensor functions.

Scale convention: every term is per sample (summed over pixels or latent dims, averaged over the
batch), so numbers compare across batch sizes. The chain study summed everything over the batch;
its presets translate its constants (docs/models.md, "Loss conventions").
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F


def recon_gaussian(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error of the decoder mean sigmoid(logits) against x, summed over pixels, per image.

    Arguments:
        logits: (B, C, H, W) decoder outputs before the sigmoid.
        x: (B, C, H, W) targets.
    Returns:
        (B,).
    """
    return (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)


def recon_bernoulli(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of Bernoulli(sigmoid(logits)) at x, summed over pixels, per image (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")  # (B, C, H, W)
    return bce.flatten(1).sum(1)


RECONSTRUCTION = {"gaussian": recon_gaussian, "bernoulli": recon_bernoulli}
"""likelihood name → the reconstruction term per image, −log p(x|z) up to a constant"""


def reconstruction(likelihood: str, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The reconstruction term of `likelihood` averaged over the batch: a scalar."""
    return RECONSTRUCTION[likelihood](logits, x).mean()


def draw_latent(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """z = μ + σ·ε, the reparameterised draw from N(μ, diag(exp(logvar))).

    Arguments:
        mu, logvar: (B, L).
        noise: ε, broadcastable against (B, L), e.g. (k, B, L) for k draws per image; None draws
            ε ~ N(0, I) of mu's shape from the global generator, on mu's device.
    Returns:
        z of the broadcast shape.
    """
    return mu + torch.exp(0.5 * logvar) * (torch.randn_like(mu) if noise is None else noise)


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) ‖ N(0, I)) in closed form per image, summed over latent dims.

    Arguments:
        mu, logvar: (B, L).
    Returns:
        (B,).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """`kl_per_image` averaged over the batch: a scalar."""
    return kl_per_image(mu, logvar).mean()


def mean_pair_sqdist(x: torch.Tensor) -> torch.Tensor:
    """V(x): the mean over all pairs i < j of ‖x_i − x_j‖², in O(B·D).

    Σ_{i<j} ‖x_i − x_j‖² = B · Σ_i ‖x_i − x̄‖², and there are B(B − 1)/2 pairs, so
    V = 2 Σ_i ‖x_i − x̄‖² / (B − 1). Centring first keeps it exact in float32.

    Arguments:
        x: (B, ...) a batch; B >= 2.
    Returns:
        scalar.
    """
    flat = x.flatten(1)  # (B, D)
    b = flat.shape[0]
    if b < 2:
        return flat.new_zeros(())
    centred = flat - flat.mean(0, keepdim=True)
    return 2.0 * centred.pow(2).sum() / (b - 1)


def variability_gap(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """|V(x) − V(x̂)|: how much pairwise spread the reconstructions lost (or gained)."""
    return (mean_pair_sqdist(x) - mean_pair_sqdist(x_hat)).abs()


def dip_terms(mu: torch.Tensor, logvar: torch.Tensor, second: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DIP-VAE's covariance terms (Kumar et al. 2018), unweighted: how far the batch's aggregate
    posterior covariance C is from the identity.

    C = Cov(μ) over the batch (the biased 1/B estimate), plus E[diag σ²] for DIP-II (`second` = 1;
    0 for DIP-I): the covariance of the mixture of the batch's posteriors.

    Arguments:
        mu, logvar: (B, L).
        second: 1 for DIP-II, 0 for DIP-I (a 0-d tensor for a member of a vectorized group).
    Returns:
        (Σ_{i≠j} C_ij², Σ_i (C_ii − 1)²), two scalars.
    """
    centred = mu - mu.mean(0, keepdim=True)  # (B, L)
    cov = centred.T @ centred / mu.shape[0] + torch.diag_embed(second * logvar.exp().mean(0))  # (L, L)
    diag = torch.diagonal(cov)  # (L,)
    return cov.pow(2).sum() - diag.pow(2).sum(), (diag - 1.0).pow(2).sum()


def capacity(capacity_max: float, step: int, capacity_steps: int) -> float:
    """C at `step` (Burgess et al. 2018): 0 rising linearly to capacity_max nats over
    capacity_steps, then held; 0 when capacity_max is 0 (no capacity target)."""
    return capacity_max * min(1.0, step / capacity_steps) if capacity_max > 0 else 0.0


def kl_weight(schedule: str, step: int, beta: float, warmup_steps: int) -> float:
    """β at `step` under a KL schedule.

    constant: β. linear: β·min(1, step / warmup_steps). cyclical (Fu et al. 2019): period
    2·warmup_steps, a linear ramp over its first half, then β for the second half.
    """
    if schedule == "constant" or warmup_steps <= 0:
        return beta
    if schedule == "linear":
        return beta * min(1.0, step / warmup_steps)
    if schedule == "cyclical":
        return beta * min(1.0, (step % (2 * warmup_steps)) / warmup_steps)
    raise ValueError(f"unknown KL schedule {schedule!r}")


KL_KEYS = ("beta", "kl_schedule", "warmup_steps")
"""the `loss.*` settings that act through the KL term (a model without one honours none of them)"""

POSTERIOR_KEYS = ("capacity_max", "capacity_steps", "dip", "dip_offdiag", "dip_diag")
"""the `loss.*` settings `vae_terms` applies to a Gaussian posterior: the annealed capacity and DIP"""


class LossWeights(NamedTuple):
    """The loss settings of one training step, as a model's `loss` takes them: floats for one
    model, 0-d tensors for a member of a vectorized group (`vaelab.vectorized`)."""

    recon_weight: float | torch.Tensor = 1.0
    """weight of the reconstruction term"""
    beta: float | torch.Tensor = 1.0
    """weight of the KL term, the KL schedule already applied"""
    variability_weight: float | torch.Tensor = 0.0
    """weight of the variability gap"""
    capacity_on: float | torch.Tensor = 0.0
    """1: β weighs |KL − capacity| instead of the KL (annealed capacity); 0: the plain KL"""
    capacity: float | torch.Tensor = 0.0
    """the capacity target C in nats at this step"""
    dip_offdiag: float | torch.Tensor = 0.0
    """weight of DIP's off-diagonal term; 0 with the diagonal weight: no DIP"""
    dip_diag: float | torch.Tensor = 0.0
    """weight of DIP's diagonal term"""
    dip_ii: float | torch.Tensor = 0.0
    """1: DIP-II's covariance (with the posteriors' variances); 0: DIP-I's"""


STEP_WEIGHTS = ("beta", "capacity")
"""the LossWeights fields that change from step to step (the schedules)"""


def loss_weights(loss, step: int) -> LossWeights:
    """The loss settings at `step` from the `loss` section: recon_weight, beta under the KL schedule
    (`kl_weight`), variability_weight, the capacity target (`capacity`) and the DIP weights. The
    training loop computes them once per step and hands them to the model's `loss`, which keeps no
    settings of its own."""
    dip = loss.dip != "off"
    return LossWeights(
        loss.recon_weight,
        kl_weight(loss.kl_schedule, step, loss.beta, loss.warmup_steps),
        loss.variability_weight,
        float(loss.capacity_max > 0),
        capacity(loss.capacity_max, step, loss.capacity_steps),
        loss.dip_offdiag if dip else 0.0,
        loss.dip_diag if dip else 0.0,
        float(loss.dip == "ii"),
    )


def vae_terms(
    x: torch.Tensor,
    logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor | None,
    *,
    likelihood: str,
    loss: LossWeights,
) -> dict[str, torch.Tensor]:
    """The named loss terms and their weighted total (`loss`).

    total = recon_weight·recon + beta·kl + variability_weight·variability
            + dip_offdiag·dip_offdiag_term + dip_diag·dip_diag_term
    (the weights are `loss`'s). With the annealed capacity on, beta weighs |kl − capacity|
    instead of kl. `kl` is left out when logvar is None (a deterministic autoencoder),
    `variability` when its weight is 0, the DIP terms when both their weights are 0.
    A weight may be a 0-d tensor (one member of a vectorized group, `vaelab.vectorized`): tensor
    weights are always applied, even when 0, so every member computes the same terms.

    Returns:
        dict of scalars: loss, recon, [kl, beta, [capacity]], [variability], [dip_offdiag, dip_diag].
    """
    terms = {"recon": reconstruction(likelihood, logits, x)}
    total = _weighted(loss.recon_weight, terms["recon"])
    if logvar is not None:
        terms["kl"] = kl = gaussian_kl(mu, logvar)
        terms["beta"] = loss.beta if torch.is_tensor(loss.beta) else _scalar(float(loss.beta), mu.device)
        if torch.is_tensor(loss.capacity_on) or loss.capacity_on:
            terms["capacity"] = loss.capacity if torch.is_tensor(loss.capacity) else _scalar(float(loss.capacity), mu.device)
            kl = kl + loss.capacity_on * ((kl - loss.capacity).abs() - kl)  # |kl − C| where on
        total = total + _weighted(loss.beta, kl)
        if any(torch.is_tensor(w) or w > 0 for w in (loss.dip_offdiag, loss.dip_diag)):
            terms["dip_offdiag"], terms["dip_diag"] = dip_terms(mu, logvar, loss.dip_ii)
            total = total + loss.dip_offdiag * terms["dip_offdiag"] + loss.dip_diag * terms["dip_diag"]
    if torch.is_tensor(loss.variability_weight) or loss.variability_weight > 0:
        terms["variability"] = variability_gap(x, torch.sigmoid(logits))
        total = total + _weighted(loss.variability_weight, terms["variability"])
    return {"loss": total, **terms}


def _weighted(weight: float | torch.Tensor, term: torch.Tensor) -> torch.Tensor:
    if torch.is_tensor(weight):
        return weight * term
    return term if weight == 1.0 else weight * term  # skip a multiply (and its backward) at weight 1


def _scalar(value: float, device: torch.device) -> torch.Tensor:
    """A 0-d tensor on `device` for a logged constant: made once per (value, device) and never
    modified, so logging it costs no copy to the GPU each step; made afresh under torch.compile."""
    if torch.compiler.is_compiling():
        return torch.tensor(value, device=device)
    return _cached_scalar(value, device)


@functools.lru_cache(maxsize=256)
def _cached_scalar(value: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, device=device)

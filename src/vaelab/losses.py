"""Loss terms as pure tensor functions.

Scale convention: every term is per sample (summed over pixels or latent dims, averaged over the
batch), so numbers compare across batch sizes. The chain study summed everything over the batch;
its presets translate its constants (docs/models.md, "Loss conventions").
"""

from __future__ import annotations

import functools
import math
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


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag(exp(logvar))) per dimension, broadcast."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def log_weights(batch: int, dataset_size: float | torch.Tensor, mss: float | torch.Tensor = 0.0, device=None) -> torch.Tensor:
    """(B, B) the log weights of q(z_i | x_j) in the minibatch estimate of q(z_i) =
    (1/N) Σ_n q(z_i | x_n) (Chen et al. 2018, Appendix C). Each row sums to 1.

    mss = 0, minibatch weighted sampling: 1/N for z_i's own image, (N − 1)/(N(B − 1)) for each
    other. mss = 1, minibatch stratified sampling: with M = B − 1, 1/N for z_i's own image,
    (N − M)/(NM) for one other (the next image, cyclically), 1/M for the remaining B − 2.
    N = dataset_size; 0 stands for the batch size (N unknown).
    """
    n = torch.as_tensor(dataset_size, dtype=torch.float32, device=device)
    n = torch.where(n > 0, n, torch.full_like(n, float(batch)))
    eye = torch.eye(batch, device=device)
    after = torch.roll(eye, 1, dims=1)  # (i, i + 1 mod B)
    m = batch - 1
    weighted = eye / n + (1 - eye) * (n - 1) / (n * m)
    stratified = eye / n + after * (n - m) / (n * m) + (1 - eye - after) / m
    return (weighted + mss * (stratified - weighted)).log()


TC_ESTIMATORS = {"mws": 0.0, "mss": 1.0}
"""the total correlation's estimators → `log_weights`' mss"""


def kl_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: float | torch.Tensor, mss: float | torch.Tensor = 0.0) -> dict[str, torch.Tensor]:
    """The KL term's decomposition (Chen et al. 2018, "Isolating Sources of Disentanglement in
    VAEs"), estimated on a batch: index-code mutual information E log q(z|x) − log q(z), total
    correlation E log q(z) − Σ_d log q(z_d), and dimension-wise KL E Σ_d log q(z_d) − log p(z_d),
    with q(z) and each q(z_d) estimated from the batch (`log_weights`).

    Arguments:
        z: (B, L) one draw per image from q(z|x); mu, logvar: (B, L) the posteriors.
        dataset_size: N, the training set's size (0: the batch size).
        mss: 0 for minibatch weighted sampling, 1 for stratified sampling (`log_weights`).
    Returns:
        scalars mi, tc, dwkl (batch means); their sum estimates the KL term.
    """
    b = z.shape[0]
    log_q = _log_normal(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # (B, B, L): log q(z_i,d | x_j)
    w = log_weights(b, dataset_size, mss, z.device)  # (B, B)
    log_qz = torch.logsumexp(w + log_q.sum(2), dim=1)  # (B,) log q(z_i)
    log_qz_dims = torch.logsumexp(w.unsqueeze(2) + log_q, dim=1).sum(1)  # (B,) Σ_d log q(z_i,d)
    log_qz_x = torch.diagonal(log_q).sum(0)  # (B,) log q(z_i | x_i)
    log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)  # (B,)
    return {"mi": (log_qz_x - log_qz).mean(), "tc": (log_qz - log_qz_dims).mean(), "dwkl": (log_qz_dims - log_pz).mean()}


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

POSTERIOR_KEYS = ("tc_weight", "tc_estimator", "capacity_max", "capacity_steps", "dip", "dip_offdiag", "dip_diag")
"""the `loss.*` settings `vae_terms` applies to a Gaussian posterior: β-TCVAE's total correlation,
the annealed capacity and DIP"""


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
    tc_weight: float | torch.Tensor = 0.0
    """weight of the total-correlation estimate (β-TCVAE); 0: not estimated"""
    dataset_size: float | torch.Tensor = 0.0
    """N, the training set's size, for the TC estimate's weights; 0: the batch size"""
    tc_mss: float | torch.Tensor = 0.0
    """1: the stratified estimator (mss); 0: minibatch weighted sampling (mws)"""


STEP_WEIGHTS = ("beta", "capacity")
"""the LossWeights fields that change from step to step (the schedules)"""


def loss_weights(loss, step: int, dataset_size: int = 0) -> LossWeights:
    """The loss settings at `step` from the `loss` section: recon_weight, beta under the KL schedule
    (`kl_weight`), variability_weight, the capacity target (`capacity`), the DIP weights and the
    TC weight with the training set's size (0: unknown, the batch size stands in). The
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
        loss.tc_weight,
        float(dataset_size),
        TC_ESTIMATORS[loss.tc_estimator],
    )


def vae_terms(
    x: torch.Tensor,
    logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor | None,
    *,
    likelihood: str,
    loss: LossWeights,
    z: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The named loss terms and their weighted total (`loss`).

    total = recon_weight·recon + beta·kl + variability_weight·variability
            + dip_offdiag·dip_offdiag_term + dip_diag·dip_diag_term + tc_weight·tc
    (the weights are `loss`'s; `tc` is the total-correlation estimate of `kl_decomposition` at
    the draws z (B, L) the logits were decoded from, logged with `mi` and `dwkl`). With the annealed capacity on, beta weighs |kl − capacity|
    instead of kl. `kl` is left out when logvar is None (a deterministic autoencoder),
    `variability` when its weight is 0, the DIP terms when both their weights are 0, the KL's
    decomposition when the TC weight is 0.
    A weight may be a 0-d tensor (one member of a vectorized group, `vaelab.vectorized`): tensor
    weights are always applied, even when 0, so every member computes the same terms.

    Returns:
        dict of scalars: loss, recon, [kl, beta, [capacity], [dip_offdiag, dip_diag], [mi, tc, dwkl]], [variability].
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
        if torch.is_tensor(loss.tc_weight) or loss.tc_weight > 0:
            terms.update(kl_decomposition(draw_latent(mu, logvar) if z is None else z, mu, logvar, loss.dataset_size, loss.tc_mss))
            total = total + loss.tc_weight * terms["tc"]
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

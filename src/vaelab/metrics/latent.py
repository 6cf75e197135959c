"""Latent recovery (the training-bias study, docs/studies.md): how well a model's latent means are a
linear image of the true generative factors.

    fit = fit_linear_map(factors[fit_idx], latents[fit_idx])       # P: factors → latents
    pmi(fit, factors[test_idx], latents[test_idx])                 # {"pmi": held-out MSE, "pmi_r2": R²}
    decoder_mse(model.decode, fit, factors, clean_images)          # ‖G(z) − decode(P(z))‖², mean

The study called the held-out MSE of P "PMI" (a proxy for the mutual information between true and
learned latents; lower is better) and fitted P with 3 epochs of SGD; `method="lstsq"` gives the
closed-form least-squares fit instead. Note that the MSE depends on the scale of the latents, so
R² (scale-free: 1 is a perfect linear image, 0 no better than the mean) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

FitMethod = Literal["lstsq", "sgd"]


@dataclass(frozen=True)
class LinearMap:
    """P(f) = f @ weight + bias: factors (N, F) → latents (N, L)."""

    weight: torch.Tensor
    """(F, L)"""
    bias: torch.Tensor
    """(L,)"""

    def __call__(self, factors: torch.Tensor) -> torch.Tensor:
        return factors.to(self.weight) @ self.weight + self.bias  # (N, L)


def fit_linear_map(
    factors: torch.Tensor,
    latents: torch.Tensor,
    method: FitMethod = "lstsq",
    *,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 0.05,
    seed: int = 0,
) -> LinearMap:
    """Fit P: factors (N, F) → latents (N, L).

    lstsq: the least-squares solution (float64), with an intercept.
    sgd: the study's variant, minibatch SGD on the mean squared error for `epochs` passes from a
    zero start (batch 32, learning rate 0.05, shuffled with `seed`); it stops short of the optimum,
    so its MSE is at or above lstsq's.
    """
    f, z = factors.double().cpu(), latents.double().cpu()  # fitted on the CPU: gelsd is a CPU driver
    n, k = f.shape
    if method == "lstsq":
        a = torch.cat([f, torch.ones(n, 1, dtype=f.dtype)], dim=1)  # (N, F + 1)
        sol = torch.linalg.lstsq(a, z, driver="gelsd").solution  # (F + 1, L)
        return LinearMap(sol[:k].float(), sol[k].float())
    if method != "sgd":
        raise ValueError(f"unknown fit method {method!r}; valid: lstsq, sgd")
    weight = torch.zeros(k, z.shape[1], dtype=f.dtype, requires_grad=True)
    bias = torch.zeros(z.shape[1], dtype=f.dtype, requires_grad=True)
    opt = torch.optim.SGD([weight, bias], lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(batch_size):
            loss = (f[idx] @ weight + bias - z[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return LinearMap(weight.detach().float(), bias.detach().float())


def pmi(fit: LinearMap, factors: torch.Tensor, latents: torch.Tensor) -> dict[str, float]:
    """Held-out quality of P on factors (N, F) → latents (N, L).

    Returns:
        pmi: the mean squared error over items and latent dims (lower is better).
        pmi_r2: 1 − Σ residual² / Σ (latent − its mean)² over all dims (1 is perfect).
    """
    z = latents.double()
    residual = fit(factors).double() - z
    total = (z - z.mean(0)).pow(2).sum()
    r2 = 1.0 - residual.pow(2).sum() / total if total > 0 else torch.tensor(float("nan"))
    return {"pmi": residual.pow(2).mean().item(), "pmi_r2": float(r2)}


@torch.no_grad()
def decoder_mse(
    decode: Callable[[torch.Tensor], torch.Tensor],
    fit: LinearMap,
    factors: torch.Tensor,
    images: torch.Tensor,
    batch_size: int = 4096,
) -> float:
    """The mean over items of ‖G(f) − decode(P(f))‖² (summed over pixels): how well the decoder,
    fed the latents the linear map assigns to the true factors, redraws the clean images G(f).

    Arguments:
        decode: latents (B, L) → images (B, C, H, W).
        fit: P, from `fit_linear_map`.
        factors: (N, F) true factors.
        images: (N, C, H, W) the generator's noise-free images for those factors.
    """
    total = 0.0
    for f, x in zip(factors.split(batch_size), images.split(batch_size)):
        x_hat = decode(fit(f)).to(x)  # (B, C, H, W)
        total += (x_hat - x).pow(2).flatten(1).sum(1).sum().item()
    return total / len(images)

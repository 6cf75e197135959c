"""Evaluation of a trained model on data: the negative ELBO and its terms.

With the Gaussian likelihood the "reconstruction" term is the summed squared error (vaelab's
training objective, as in the chain study), so the figure is the loss at β = 1, not a calibrated
log-likelihood.
"""

from __future__ import annotations

import torch

from vaelab.losses import RECONSTRUCTION, gaussian_kl


@torch.no_grad()
def neg_elbo(model, x: torch.Tensor, *, seed: int = 0, batch_size: int = 1024) -> dict[str, float]:
    """Per-sample negative ELBO (recon + KL, β = 1) of `model` on x (N, C, H, W), one z per image.

    The noise comes from a private generator seeded by `seed`: the result is deterministic and the
    global RNG is untouched. An autoencoder has no KL (its figure is the reconstruction term).

    Returns:
        {"neg_elbo", "recon", "kl"} averaged over the images.
    """
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    recon_fn = RECONSTRUCTION[model.likelihood]
    was_training = model.training
    model.eval()
    totals = {"recon": 0.0, "kl": 0.0}
    try:
        for xb in x.split(batch_size):
            xb = xb.to(device)
            mu, logvar = model.posterior_params(xb)  # (B, L), (B, L) or None
            if logvar is None:
                z, kl = mu, 0.0
            else:
                eps = torch.randn(mu.shape, generator=g).to(device)
                z, kl = mu + torch.exp(0.5 * logvar) * eps, gaussian_kl(mu, logvar).item()
            totals["recon"] += recon_fn(model.decoder(z), xb).item() * len(xb)
            totals["kl"] += kl * len(xb)
    finally:
        model.train(was_training)
    out = {k: v / len(x) for k, v in totals.items()}
    out["neg_elbo"] = out["recon"] + out["kl"]
    return out

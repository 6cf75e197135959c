"""Generation from a trained model: prior samples (with δ and denoising) and reconstructions."""

from __future__ import annotations

import torch

from vaelab.models import class_labels


@torch.no_grad()
def sample(
    model, n: int, *, delta: float = 0.0, denoise: float = 0.0, seed: int = 0, labels: torch.Tensor | None = None, batch_size: int = 4096
) -> torch.Tensor:
    """Draw n images: z from the model's prior (N(0, (1 + δ)² I) for a VAE), the decoder mean as the
    image, then optional denoising.

    Arguments:
        model: a trained model with `latent_dim` and `decode`.
        n: number of images.
        delta: δ, widening the prior (the chain study's mitigation; a VQ-VAE's prior temperature 1 + δ); 0 is the plain prior.
        denoise: threshold; every pixel below denoise × (max over all n images) is set to 0.
        seed: seed of the prior draws (a private generator: the global RNG is untouched).
        labels: (n,) the classes of a conditional model's images; every class in turn when None
            (`vaelab.models.class_labels`). Ignored by an unconditional model.
    Returns:
        float32 (n, C, H, W) on the CPU.
    """

    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z = model.prior_sample(n, g, delta)  # (n, L)
    labels = labels if labels is not None else class_labels(model, n)
    was_training = model.training
    model.eval()
    try:
        out = torch.cat([model.decode(zb, yb).cpu() for zb, yb in batches(z, labels, batch_size, device)])  # (n, C, H, W)
    finally:
        model.train(was_training)
    return denoise_images(out, denoise) if denoise > 0 else out


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

"""Generation from a trained model: prior samples (with δ and denoising) and reconstructions."""

from __future__ import annotations

import torch


@torch.no_grad()
def sample(model, n: int, *, delta: float = 0.0, denoise: float = 0.0, seed: int = 0, batch_size: int = 4096) -> torch.Tensor:
    """Draw n images: z ~ N(0, (1 + δ)² I), the decoder mean as the image, then optional denoising.

    Arguments:
        model: a trained model with `latent_dim` and `decode`.
        n: number of images.
        delta: δ, widening the prior (the chain study's mitigation); 0 is the plain prior.
        denoise: threshold; every pixel below denoise × (max over all n images) is set to 0.
        seed: seed of the prior draws (a private generator: the global RNG is untouched).
    Returns:
        float32 (n, C, H, W) on the CPU.
    """
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=g) * (1.0 + delta)  # (n, L)
    was_training = model.training
    model.eval()
    try:
        out = torch.cat([model.decode(zb.to(device)).cpu() for zb in z.split(batch_size)])  # (n, C, H, W)
    finally:
        model.train(was_training)
    return denoise_images(out, denoise) if denoise > 0 else out


def denoise_images(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero every pixel below threshold × (the maximum pixel over the whole set)."""
    return torch.where(images >= threshold * images.max(), images, torch.zeros((), dtype=images.dtype))


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Decode the posterior mean of each input: x (N, C, H, W) → x̂ (N, C, H, W) on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(xb.to(device)).cpu() for xb in x.split(batch_size)])
    finally:
        model.train(was_training)

"""Image grids: tensors (N, C, H, W) → one uint8 picture, written as PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.runfolder import atomic_write


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 0) -> np.ndarray:
    """Tile images (N, C, H, W), clipped to [0, 1], into a uint8 (H', W') or (H', W', 3) array.

    One channel is grey, three are RGB, two are grey + alpha (the grey is shown) and four RGBA (the
    RGB); any other number of channels is shown channel by channel, side by side in grey.

    Arguments:
        nrow: images per row (default: about √N).
        pad: pixels of mid-grey between tiles.
        scale: integer upscaling (nearest); 0 picks one so tiles are at least 48 pixels tall.
    """
    x = images.detach().float().clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    if c == 2:  # grey + alpha: show the grey channel
        x, c = x[:, :1], 1
    if c == 4:
        x, c = x[:, :3], 3
    if c not in (1, 3):  # e.g. multispectral: each image becomes its channels in a row
        x, c, w = x.transpose(0, 2, 1, 3).reshape(n, 1, h, c * w), 1, c * w
    scale = scale or max(1, math.ceil(48 / h))
    x = x.repeat(scale, axis=2).repeat(scale, axis=3)  # (N, C, H·s, W·s)
    h, w = h * scale, w * scale
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 0.5, dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = x[i]
    grid = (grid * 255).round().astype(np.uint8)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def save_grid(path: Path | str, images: torch.Tensor, nrow: int | None = None) -> Path:
    """Write a grid of images (N, C, H, W) as a PNG file (atomically)."""
    return atomic_write(path, png_bytes(make_grid(images, nrow)))


def interleave_rows(inputs: torch.Tensor, outputs: torch.Tensor, nrow: int) -> torch.Tensor:
    """Stack inputs and outputs (N, C, H, W) so that each row of inputs has its outputs below it."""
    chunks = []
    for i in range(0, inputs.shape[0], nrow):
        chunks += [inputs[i : i + nrow].cpu(), outputs[i : i + nrow].cpu()]
    return torch.cat(chunks)

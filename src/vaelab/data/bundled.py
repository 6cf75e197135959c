"""Data that ships with an installed library: scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaelab.data.registry import Dataset, register, take


@dataclass(frozen=True)
class NoParams:
    pass


@register("digits", NoParams, "scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels)")
def digits(p: NoParams, n: int, seed: int, path: str) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    data = Dataset(torch.from_numpy(images), torch.from_numpy(bunch.target.astype(np.int64)), name="digits")
    return take(data, n, seed, "digits")

"""The dataset record and the name → builder registry."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np
import torch

from vaelab.errors import UserError


@dataclass(frozen=True)
class Dataset:
    """Images with what travels with them.

    Attributes:
        images: float32 (N, C, H, W), in [0, 1] (noisy data may leave that range).
        labels: int64 (N,) class labels, or None.
        factors: float32 (N, F) ground-truth generative factors, or None.
        factor_names: F names of the factors.
        name: the dataset's registry name.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    factor_names: tuple[str, ...] = ()
    name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor | np.ndarray | slice) -> "Dataset":
        pick = (lambda t: None if t is None else t[index])
        return Dataset(pick(self.images), pick(self.labels), pick(self.factors), self.factor_names, self.name)

    @staticmethod
    def concat(parts: "list[Dataset]", name: str = "") -> "Dataset":
        """The parts one after another; labels (factors) are kept only when every part has them."""
        if len(parts) == 1 and not name:
            return parts[0]
        join = (lambda ts: torch.cat(ts) if all(t is not None for t in ts) else None)
        factors = join([p.factors for p in parts])
        return Dataset(
            torch.cat([p.images for p in parts]), join([p.labels for p in parts]), factors, parts[0].factor_names if factors is not None else (), name or parts[0].name
        )


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: `build(params, n, seed, path) → Dataset`."""

    build: Callable[..., Dataset]
    params: type
    description: str
    default_n: int = 0
    """size when data.n = 0; 0 means everything the source holds"""
    needs_path: bool = False
    path_hint: str = ""
    generative: bool = False
    """a seeded generator that can draw any number of new images (points, squares)"""
    test: str = ""
    """the dataset that is this one's enumerated test set (squares → squares-test), or none"""
    truth: Callable[[Any], Any] | None = None
    """params → a ground truth that draws factors and renders their images (the disentanglement
    metrics' `GroundTruth`: factor_sizes, sample_factors(n, rng), images(factors)), or None"""
    measures: Callable[[Any, torch.Tensor], tuple[dict[str, float], dict]] | None = None
    """(params, images) → what a chain measures of this dataset's images beyond every dataset's
    metrics: (its chain.csv columns, detail for the generation's metrics.json); None: nothing"""


DATASETS: dict[str, DatasetSpec] = {}


def register(
    name: str,
    params: type,
    description: str,
    *,
    default_n: int = 0,
    path_hint: str = "",
    generative: bool = False,
    test: str = "",
    truth: Callable[[Any], Any] | None = None,
    measures: Callable[[Any, torch.Tensor], tuple[dict[str, float], dict]] | None = None,
):
    """Decorator registering `build(params, n, seed, path) → Dataset` under `name`."""

    def deco(build):
        DATASETS[name] = DatasetSpec(build, params, description, default_n, bool(path_hint), path_hint, generative, test, truth, measures)
        return build

    return deco


def check_param(ok: bool, key: str, message: str) -> None:
    """A dataset parameter's validation: raise the one-line user error `data.<key> <message>`."""
    if not ok:
        raise UserError(f"data.{key} {message}")


def load_data(cfg: Any) -> Dataset:
    """Build the dataset a `DataConfig` names (name, n, seed, path, params)."""
    spec = DATASETS.get(cfg.name)
    if spec is None:
        raise UserError(f"unknown dataset {cfg.name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    params = cfg.params if cfg.params is not None else spec.params()
    return spec.build(params, cfg.n or spec.default_n, cfg.seed, cfg.path)


def test_data_config(cfg: Any, n: int = 0, default_n: int = 2000) -> Any:
    """The DataConfig of the test images for a model trained on `cfg`: the dataset's enumerated
    test set (shared parameters copied, e.g. squares → squares-test); for other generated datasets,
    `n` (or `default_n`) new draws under another seed; for data read from files, the training
    images themselves (there is no separate split to take)."""
    spec = DATASETS[cfg.name]
    if spec.test:
        test_spec = DATASETS[spec.test]
        own = {f.name for f in fields(test_spec.params)}
        shared = {f.name: getattr(cfg.params, f.name) for f in fields(cfg.params) if f.name in own}
        return replace(cfg, name=spec.test, n=n, params=test_spec.params(**shared))
    if spec.generative:
        return replace(cfg, n=n or default_n, seed=cfg.seed + 1_000_003)
    return replace(cfg, n=n or cfg.n)


def take(data: Dataset, n: int, seed: int, source: str) -> Dataset:
    """A seeded random subset of n images (all of them when n is 0), order preserved."""
    index = take_index(len(data), n, seed, source)
    return data if index is None else data.subset(torch.from_numpy(index))


def take_index(total: int, n: int, seed: int, source: str) -> np.ndarray | None:
    """The sorted indices `take` keeps of `total` images (None: all of them)."""
    if n == 0 or n == total:
        return None
    if n > total:
        raise UserError(f"data.n={n} but {source} holds only {total} images")
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def check_images(images: np.ndarray, source: str) -> np.ndarray:
    """Validate and convert an image array to float32 (N, C, H, W); raise a UserError if unfit."""
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    elif images.dtype == np.uint16:
        images = images.astype(np.float32) / 65535.0
    elif images.dtype == np.bool_:
        images = images.astype(np.float32)
    elif images.dtype.kind == "f":
        images = images.astype(np.float32)
    else:
        raise UserError(f"{source}: images must be uint8, uint16, bool or float, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[1] not in (1, 2, 3, 4) and images.shape[3] in (1, 2, 3, 4):
        images = images.transpose(0, 3, 1, 2)  # (N, H, W, C) → (N, C, H, W)
    if images.ndim != 4:
        raise UserError(f"{source}: images must have shape (N, H, W) or (N, C, H, W), got {images.shape}")
    if min(images.shape) == 0:
        raise UserError(f"{source}: holds no images (shape {images.shape})")
    if not np.isfinite(images).all():
        raise UserError(f"{source}: images contain NaN or Inf")
    return np.ascontiguousarray(images)


def check_labels(labels: np.ndarray, n: int, source: str) -> np.ndarray:
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.kind not in "iu":
        raise UserError(f"{source}: labels must be integers of shape ({n},), got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def check_factors(factors: np.ndarray, n: int, source: str) -> np.ndarray:
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2 or factors.shape[0] != n or factors.dtype.kind not in "iuf":
        raise UserError(f"{source}: factors must be numbers of shape ({n}, F), got {factors.dtype} {factors.shape}")
    if not np.isfinite(factors).all():
        raise UserError(f"{source}: factors contain NaN or Inf")
    return factors.astype(np.float32)

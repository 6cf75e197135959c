"""Generated datasets: `points` (the chain study) and `squares` / `squares-test` (the bias study).

Every generator draws from `numpy.random.default_rng(seed)` in a fixed order, so the same seed
gives the same images on every machine.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vaelab.data.registry import Dataset, register, take
from vaelab.data.registry import check_param as _check
from vaelab.metrics.points import block_centres, marginal_histograms, total_variation


@dataclass(frozen=True)
class PointsParams:
    size: int = 24
    """side of the square grid, in pixels"""
    block: int = 3
    """side of the lit block of ones"""
    p_x: float = 0.3
    """x ~ Binomial(size − 1, p_x)"""
    p_y: float = 0.8
    """y ~ Binomial(size − 1, p_y)"""
    variant: Literal["binomial", "uniform", "uniform-x", "uniform-y", "bimodal"] = "binomial"
    """binomial; uniform (x and y uniform on 0..size−1); uniform-x; uniform-y;
    bimodal (2/3 with (p_x, p_y), 1/3 with (1 − p_x, 1 − p_y))"""

    def __post_init__(self):
        _check(self.size >= 1, "size", f"must be >= 1, got {self.size}")
        _check(1 <= self.block <= self.size, "block", f"must be in 1..size, got {self.block}")
        _check(0 <= self.p_x <= 1, "p_x", f"must be in [0, 1], got {self.p_x}")
        _check(0 <= self.p_y <= 1, "p_y", f"must be in [0, 1], got {self.p_y}")


def points_centres(p: PointsParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Block centres (x, y), each int64 (n,) in 0..size−1."""
    top = p.size - 1
    if p.variant == "bimodal":
        minority = rng.random(n) < 1 / 3
        x = rng.binomial(top, np.where(minority, 1 - p.p_x, p.p_x))
        y = rng.binomial(top, np.where(minority, 1 - p.p_y, p.p_y))
        return x, y
    uniform_x = p.variant in ("uniform", "uniform-x")
    uniform_y = p.variant in ("uniform", "uniform-y")
    x = rng.integers(0, p.size, n) if uniform_x else rng.binomial(top, p.p_x, n)
    y = rng.integers(0, p.size, n) if uniform_y else rng.binomial(top, p.p_y, n)
    return x, y


def render_points(x: np.ndarray, y: np.ndarray, size: int, block: int) -> np.ndarray:
    """float32 (n, 1, size, size): a block×block square of ones centred at (y, x), clipped."""
    lo = -((block - 1) // 2)
    grid = np.arange(size)
    rows = (grid[None, :] - y[:, None] >= lo) & (grid[None, :] - y[:, None] < lo + block)  # (n, size)
    cols = (grid[None, :] - x[:, None] >= lo) & (grid[None, :] - x[:, None] < lo + block)  # (n, size)
    return (rows[:, :, None] & cols[:, None, :]).astype(np.float32)[:, None]  # (n, 1, size, size)


class PointsTruth:
    """The points generator as a disentanglement ground truth: block centres (x, y) drawn as the
    dataset draws them, images rendered by `render_points`."""

    def __init__(self, p: PointsParams):
        self.p = p
        self.factor_sizes = (p.size, p.size)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x, y = points_centres(self.p, n, rng)
        return np.stack([x, y], axis=1)  # (n, 2)

    def images(self, factors: np.ndarray) -> torch.Tensor:
        f = np.asarray(factors, dtype=np.int64)
        return torch.from_numpy(render_points(f[:, 0], f[:, 1], self.p.size, self.p.block))


def points_measures(p: PointsParams, images: torch.Tensor) -> tuple[dict[str, float], dict[str, list]]:
    """What a chain measures of points images beyond every dataset's metrics: where the blocks
    are. Returns (its chain.csv columns: x_tv, y_tv, the total-variation distances of the block
    centres' x and y marginals from the true ones, and x_mean, y_mean, their means; the marginals
    themselves, for the generation's metrics.json)."""
    xs, ys = block_centres(images, p.block)
    hx, hy = marginal_histograms(xs, ys, p.size)
    px, py = points_marginals(p)
    k = np.arange(p.size)
    columns = {"x_tv": total_variation(hx, px), "y_tv": total_variation(hy, py), "x_mean": float(hx @ k), "y_mean": float(hy @ k)}
    return columns, {"x_marginal": hx.tolist(), "y_marginal": hy.tolist(), "x_true": px.tolist(), "y_true": py.tolist()}


@register(
    "points",
    PointsParams,
    "the chain study's 24x24 grids: one 3x3 block at binomial (x, y)",
    default_n=20000,
    generative=True,
    truth=PointsTruth,
    measures=points_measures,
)
def points(p: PointsParams, n: int, seed: int, path: str) -> Dataset:
    rng = np.random.default_rng(seed)
    x, y = points_centres(p, n, rng)
    images = render_points(x, y, p.size, p.block)
    factors = np.stack([x, y], axis=1).astype(np.float32)
    return Dataset(torch.from_numpy(images), None, torch.from_numpy(factors), ("x", "y"), "points")


@dataclass(frozen=True)
class SquaresParams:
    grid: int = 3
    """n: the image is an n×n grid of squares (n² factors)"""
    square: int = 7
    """m: side of each square, in pixels"""
    mu: float = 0.0
    """μ: the latents are z ~ N(μ·1, I); larger μ biases the squares towards white"""
    noise_var: float = 0.25
    """σ²: variance of the Gaussian pixel noise added to every image"""

    def __post_init__(self):
        _check(self.grid >= 1, "grid", f"must be >= 1, got {self.grid}")
        _check(self.square >= 1, "square", f"must be >= 1, got {self.square}")
        _check(math.isfinite(self.mu), "mu", f"must be a finite number, got {self.mu}")
        _check(0 <= self.noise_var < math.inf, "noise_var", f"must be finite and >= 0, got {self.noise_var}")


def render_squares(s: np.ndarray, grid: int, square: int) -> np.ndarray:
    """float32 (n, 1, grid·square, grid·square) from intensities s (n, grid²)."""
    n = s.shape[0]
    cells = s.reshape(n, grid, 1, grid, 1)  # (n, gy, 1, gx, 1)
    img = np.broadcast_to(cells, (n, grid, square, grid, square))
    return np.ascontiguousarray(img.reshape(n, 1, grid * square, grid * square), dtype=np.float32)


@register("squares", SquaresParams, "the bias study's noisy grids of squares, intensities sigmoid(N(mu, 1))", default_n=10000, generative=True, test="squares-test")
def squares(p: SquaresParams, n: int, seed: int, path: str) -> Dataset:
    rng = np.random.default_rng(seed)
    z = rng.normal(p.mu, 1.0, size=(n, p.grid**2))
    s = 1.0 / (1.0 + np.exp(-z))
    images = render_squares(s, p.grid, p.square)
    images += rng.normal(0.0, np.sqrt(p.noise_var), size=images.shape).astype(np.float32)
    names = tuple(f"s{i}" for i in range(p.grid**2))
    return Dataset(torch.from_numpy(images), None, torch.from_numpy(s.astype(np.float32)), names, "squares")


@dataclass(frozen=True)
class SquaresTestParams:
    grid: int = 3
    """n: the image is an n×n grid of squares"""
    square: int = 7
    """m: side of each square, in pixels"""

    def __post_init__(self):
        _check(1 <= self.grid and 3 ** (self.grid**2) <= 1_000_000, "grid", "must be 1..3 (3^(n²) images are enumerated)")
        _check(self.square >= 1, "square", f"must be >= 1, got {self.square}")


TEST_LEVELS = (0.1, 0.5, 0.9)


@register("squares-test", SquaresTestParams, "every combination of intensities {0.1, 0.5, 0.9}, noise-free (3^9 for n = 3)")
def squares_test(p: SquaresTestParams, n: int, seed: int, path: str) -> Dataset:
    s = np.array(list(itertools.product(TEST_LEVELS, repeat=p.grid**2)), dtype=np.float32)  # (3^(n²), n²)
    data = Dataset(
        torch.from_numpy(render_squares(s, p.grid, p.square)),
        None,
        torch.from_numpy(s),
        tuple(f"s{i}" for i in range(p.grid**2)),
        "squares-test",
    )

    return take(data, n, seed, "squares-test")


def points_marginals(p: PointsParams) -> tuple[np.ndarray, np.ndarray]:
    """The true pmfs of the block centre's x and y over 0..size−1, float64 (size,) each."""
    from scipy.stats import binom

    k = np.arange(p.size)
    top = p.size - 1
    uniform = np.full(p.size, 1.0 / p.size)
    if p.variant == "bimodal":
        px = (2 / 3) * binom.pmf(k, top, p.p_x) + (1 / 3) * binom.pmf(k, top, 1 - p.p_x)
        py = (2 / 3) * binom.pmf(k, top, p.p_y) + (1 / 3) * binom.pmf(k, top, 1 - p.p_y)
        return px, py
    px = uniform if p.variant in ("uniform", "uniform-x") else binom.pmf(k, top, p.p_x)
    py = uniform if p.variant in ("uniform", "uniform-y") else binom.pmf(k, top, p.p_y)
    return px, py

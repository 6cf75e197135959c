"""`sprites`: dSprites-style 64×64 shapes, re-rendered offline (no download).

After Matthey, Higgins, Hassabis & Lerchner 2017, "dSprites: disentanglement testing sprites
dataset": five independent factors, each on a grid of values, as in dSprites:

    shape        3   square, ellipse, heart
    scale        6   0.5 … 1 (linearly)
    orientation 40   2πk/40 radians, k = 0…39, counter-clockwise on screen
    pos_x       32   0 … 1 (linearly), left → right
    pos_y       32   0 … 1 (linearly), top → bottom (image rows, as in dSprites' arrays)

Geometry, in pixels (the image spans [0, 64] on both axes, pixel i covering [i, i + 1)), at scale 1
and orientation 0, about the sprite's centre (y up):

    square   |u| ≤ 8 and |v| ≤ 8                                  (side 16: area 256 px²)
    ellipse  (u/11)² + (v/5.5)² ≤ 1, long axis horizontal          (area π·60.5 ≈ 190 px²)
    heart    (x² + y² − 1)³ − x²y³ ≤ 0 with (x, y) = (u, v)/8 + (0, 0.2935): the classic implicit
             heart, lobes up, its area centroid at the centre     (area 3.662·64 ≈ 234 px²)

A scale s multiplies every length by s. Every shape lies within `BOUND` = 8√2 px (the square's
corner) of its centre, so the centre's range [`POS_LO`, `POS_HI`] = [13, 51] keeps even the largest
sprite, turned any way, more than a pixel away from the frame: the outermost rows and columns are
never lit. dSprites' 40 orientations are kept for every shape, symmetric ones included (a square
turned by 10 steps, 90°, is the same image).

Rendering is one vectorized inside-test per chunk of `CHUNK` images (no per-image Python): each
pixel is split into `SUPERSAMPLE`×`SUPERSAMPLE` subpixels whose centres are mapped back through the
inverse translation, rotation and scale into the shape's frame, tested, and averaged (box-filter
anti-aliasing: values are multiples of 1/16, 0 outside, 1 inside, grey only along the edge). Only a
`WINDOW`×`WINDOW` pixel window around each sprite is tested, then scattered into the blank frame.

Sampling: the factors are drawn independently, uniformly, from `numpy.random.default_rng(seed)` in
a fixed order (shape, scale, orientation, pos_x, pos_y), except one factor that `data.skew_factor`
may skew: its value k of K is drawn with probability ∝ skew^(k/(K−1)), falling geometrically from
value 0 (the most common) to value K−1 (the rarest, `skew` times as frequent as value 0);
`factor_pmfs` gives the exact probabilities (for importance weights in a debiasing study).

The full product (`data.full = true`): all 3·6·40·32·32 = 737,280 combinations once, in dSprites'
order (shape slowest, pos_y fastest), or, with data.n > 0, a seeded subset of n distinct
combinations in the same order. Images are float32 (16 KiB each): every request, drawn or
enumerated, is refused with a UserError when its images would pass `data.max_gib` GiB (default 4:
262,144 images; the full product needs 11.25 GiB). data.n = 0 means the whole product with
data.full, `DEFAULT_N` draws without.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vaelab.data.registry import Dataset, register
from vaelab.data.registry import check_param as _check
from vaelab.errors import UserError

SPRITE_FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SPRITE_FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
"""scale factor of value k (dSprites: 0.5 … 1)"""
ORIENTATIONS = 2 * np.pi * np.arange(40) / 40
"""radians of value k, counter-clockwise on screen, over [0, 2π)"""
POSITIONS = np.linspace(0.0, 1.0, 32)
"""pos_x, pos_y value k in [0, 1]"""

SIZE = 64
"""side of the image, in pixels"""
HALF_SIDE = 8.0
"""the square's half side at scale 1, in pixels"""
ELLIPSE_AXES = (11.0, 5.5)
"""the ellipse's semi-axes (along its own x, y) at scale 1, in pixels"""
HEART_UNIT = 8.0
"""pixels per unit of the implicit heart curve at scale 1"""
HEART_CENTROID = 0.2935
"""y of the area centroid of (x² + y² − 1)³ ≤ x²y³ (numerically 0.29347), the heart's centre"""
BOUND = HALF_SIDE * math.sqrt(2)
"""every shape at scale 1 lies within this distance of its centre (the square's corner; the
ellipse reaches 11, the heart 8 × 1.2935 = 10.35)"""
POS_LO, POS_HI = 13.0, 51.0
"""the centre's range in pixels for position 0 … 1: BOUND + 1.69 from either edge of the frame"""
SUPERSAMPLE = 4
"""anti-aliasing: each pixel averages SUPERSAMPLE × SUPERSAMPLE subpixel inside-tests"""
WINDOW = 24
"""side of the pixel window tested around each sprite (≥ 2·BOUND + 1: it holds the whole sprite)"""
CHUNK = 64
"""images rendered at a time (small chunks stay in the CPU cache: 64 renders 10,000 images about 2× faster than 1024)"""
DEFAULT_N = 10_000
"""images drawn when data.n = 0 (and data.full is false)"""
FULL_SIZE = math.prod(SPRITE_FACTOR_SIZES)
IMAGE_BYTES = SIZE * SIZE * 4
"""one float32 image (1, 64, 64)"""


@dataclass(frozen=True)
class SpritesParams:
    skew_factor: Literal["none", "shape", "scale", "orientation", "pos_x", "pos_y"] = "none"
    """the factor whose values are drawn unevenly (see skew), or none: every factor uniform"""
    skew: float = 1.0
    """in (0, 1]: the skewed factor's value k of K has probability ∝ skew^(k/(K−1)): value K−1 is skew × as frequent as value 0 (1 = uniform)"""
    full: bool = False
    """enumerate the factor product (every combination once, dSprites' order) instead of drawing; data.n > 0 takes a seeded subset"""
    max_gib: float = 4.0
    """largest float32 image array to build, in GiB (16 KiB per image); the full product needs 11.25"""

    def __post_init__(self):
        names = ("none",) + SPRITE_FACTOR_NAMES
        _check(self.skew_factor in names, "skew_factor", f"must be one of {', '.join(names)}, got {self.skew_factor!r}")
        _check(0 < self.skew <= 1, "skew", f"must be in (0, 1] (the rarest value's frequency relative to the commonest), got {self.skew}")
        _check(self.skew == 1 or self.skew_factor != "none", "skew", f"= {self.skew} needs data.skew_factor set to one of {', '.join(SPRITE_FACTOR_NAMES)}")
        _check(not (self.full and self.skew_factor != "none"), "full", "enumerates every combination once: it cannot be skewed (set data.skew_factor = none)")
        _check(0 < self.max_gib <= 1024, "max_gib", f"must be in (0, 1024] GiB, got {self.max_gib}")


def factor_pmfs(p: SpritesParams) -> tuple[np.ndarray, ...]:
    """The five factors' probabilities over their values, float64 (K,) each, as `data.skew` draws them."""
    pmfs = []
    for name, k in zip(SPRITE_FACTOR_NAMES, SPRITE_FACTOR_SIZES):
        w = p.skew ** (np.arange(k) / (k - 1)) if name == p.skew_factor else np.ones(k)
        pmfs.append(w / w.sum())
    return tuple(pmfs)


def rare_mask(p: SpritesParams, factors: torch.Tensor) -> torch.Tensor:
    """Which items (N,) of factors (N, 5) lie in the skewed factor's rare region: the values drawn
    less often than a uniform draw would (probability below 1/K)."""
    i = SPRITE_FACTOR_NAMES.index(p.skew_factor)
    pmf = factor_pmfs(p)[i]
    rare = torch.from_numpy(pmf < 1.0 / len(pmf))  # (K,)
    return rare.to(factors.device)[factors[:, i].long()]


# ---------------------------------------------------------------------------------------------
# Rendering.


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """bool, u's shape: which points (u, v) (pixels at scale 1, y up, about the centre) are inside."""
    if shape == 0:  # square
        return (u.abs() <= HALF_SIDE) & (v.abs() <= HALF_SIDE)
    if shape == 1:  # ellipse
        a, b = ELLIPSE_AXES
        return (u / a) ** 2 + (v / b) ** 2 <= 1
    x2 = (u / HEART_UNIT) ** 2  # heart: (x² + y² − 1)³ ≤ x²y³
    y = v / HEART_UNIT + HEART_CENTROID
    return (x2 + y * y - 1) ** 3 <= x2 * y**3


def _render_chunk(idx: np.ndarray, out: torch.Tensor) -> None:
    """Draw the sprites of factor indices idx (B, 5) into the blank frames out (B, 64·64)."""
    b = idx.shape[0]
    scale = SCALES[idx[:, 1]]
    angle = ORIENTATIONS[idx[:, 2]]
    cx = POS_LO + (POS_HI - POS_LO) * POSITIONS[idx[:, 3]]  # (B,) pixels, x right
    cy = POS_LO + (POS_HI - POS_LO) * POSITIONS[idx[:, 4]]  # (B,) pixels, y down
    ox = np.floor(cx - BOUND).astype(np.int64)  # (B,) the window's first column
    oy = np.floor(cy - BOUND).astype(np.int64)  # (B,) the window's first row
    sub = (np.arange(WINDOW * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # (S,) subpixel centres in the window, S = WINDOW·SUPERSAMPLE
    dx = torch.from_numpy((ox[:, None] + sub[None, :] - cx[:, None]).astype(np.float32))[:, None, :]  # (B, 1, S): x − cx
    dy = torch.from_numpy((cy[:, None] - oy[:, None] - sub[None, :]).astype(np.float32))[:, :, None]  # (B, S, 1): cy − y (y up)
    c = torch.from_numpy((np.cos(angle) / scale).astype(np.float32))[:, None, None]  # (B, 1, 1)
    s = torch.from_numpy((np.sin(angle) / scale).astype(np.float32))[:, None, None]  # (B, 1, 1)
    u = c * dx + s * dy  # (B, S, S): inverse rotation and scale, the shape's own frame
    v = c * dy - s * dx  # (B, S, S)
    inside = torch.empty(u.shape, dtype=torch.bool)
    shapes = torch.from_numpy(idx[:, 0])
    for k in range(len(SHAPES)):
        sel = (shapes == k).nonzero()[:, 0]
        if sel.numel():
            inside[sel] = _inside(k, u[sel], v[sel])
    win = inside.view(b, WINDOW, SUPERSAMPLE, WINDOW, SUPERSAMPLE).float().mean((2, 4))  # (B, W, W): box filter
    j = torch.arange(WINDOW)
    rows = torch.from_numpy(oy)[:, None, None] + j[None, :, None]  # (B, W, 1)
    cols = torch.from_numpy(ox)[:, None, None] + j[None, None, :]  # (B, 1, W)
    out.scatter_(1, (rows * SIZE + cols).view(b, -1), win.view(b, -1))


def render_sprites(factor_indices: np.ndarray) -> torch.Tensor:
    """Render sprites from factor indices.

    Arguments:
        factor_indices: int (N, 5): shape 0..2, scale 0..5, orientation 0..39, pos_x 0..31, pos_y 0..31.
    Returns:
        float32 (N, 1, 64, 64) in [0, 1]; the same indices always give the same images.
    """
    idx = np.asarray(factor_indices)
    if idx.ndim != 2 or idx.shape[1] != len(SPRITE_FACTOR_SIZES):
        raise ValueError(f"factor_indices must have shape (N, 5), got {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        if not np.array_equal(idx, np.round(idx)):
            raise ValueError("factor_indices must be whole numbers")
    idx = idx.astype(np.int64)
    if idx.size and ((idx < 0).any() or (idx >= np.array(SPRITE_FACTOR_SIZES)).any()):
        raise ValueError(f"factor_indices out of range: sizes are {SPRITE_FACTOR_SIZES}")
    n = idx.shape[0]
    images = torch.zeros(n, 1, SIZE, SIZE)
    flat = images.view(n, SIZE * SIZE)
    for lo in range(0, n, CHUNK):
        _render_chunk(idx[lo : lo + CHUNK], flat[lo : lo + CHUNK])
    return images


def _check_memory(n: int, p: SpritesParams, what: str) -> None:
    gib = n * IMAGE_BYTES / 2**30
    if gib > p.max_gib:
        most = int(p.max_gib * 2**30 // IMAGE_BYTES)
        raise UserError(f"{what}: {n:,} images are {gib:.2f} GiB of float32, over data.max_gib = {p.max_gib:g} ({most:,} images); lower data.n or raise data.max_gib")


class SpritesTruth:
    """The sprites generator as a disentanglement ground truth: factors drawn as `data.skew` draws
    them, images rendered by `render_sprites`."""

    factor_sizes = SPRITE_FACTOR_SIZES

    def __init__(self, p: SpritesParams):
        self.pmfs = factor_pmfs(p)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.choice(k, n, p=pmf) for k, pmf in zip(SPRITE_FACTOR_SIZES, self.pmfs)], axis=1)  # (n, 5)

    def images(self, factors: np.ndarray) -> torch.Tensor:
        return render_sprites(np.asarray(factors, dtype=np.int64))


@register(
    "sprites",
    SpritesParams,
    "64x64 dSprites-style shapes (square, ellipse, heart) x scale x orientation x position, rendered offline; factors exposed, optional skew",
    default_n=0,  # the builder must see data.n = 0: with data.full it means the whole product
    generative=True,
    truth=SpritesTruth,
)
def sprites(p: SpritesParams, n: int, seed: int, path: str) -> Dataset:
    rng = np.random.default_rng(seed)
    if p.full:
        if n > FULL_SIZE:
            raise UserError(f"data.n = {n:,} but the full product (data.full) holds only {FULL_SIZE:,} combinations")
        _check_memory(n or FULL_SIZE, p, "data.full with data.n = 0 (every combination)" if n == 0 else "data.full")
        pick = np.arange(FULL_SIZE) if n in (0, FULL_SIZE) else np.sort(rng.permutation(FULL_SIZE)[:n])
        idx = np.stack(np.unravel_index(pick, SPRITE_FACTOR_SIZES), axis=1)  # (N, 5)
    else:
        n = n or DEFAULT_N
        _check_memory(n, p, "data.n")
        pmfs = factor_pmfs(p)
        columns = []
        for name, k, pmf in zip(SPRITE_FACTOR_NAMES, SPRITE_FACTOR_SIZES, pmfs):
            columns.append(rng.choice(k, n, p=pmf) if name == p.skew_factor else rng.integers(0, k, n))
        idx = np.stack(columns, axis=1).astype(np.int64)  # (N, 5)
    images = render_sprites(idx)
    return Dataset(images, torch.from_numpy(idx[:, 0].copy()), torch.from_numpy(idx.astype(np.float32)), SPRITE_FACTOR_NAMES, "sprites")

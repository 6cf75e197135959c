"""`fontdigits`: an MNIST stand-in that needs no download: digits 0–9 rendered from matplotlib's fonts.

Glyph templates are rendered once per font and image size (cached in memory) from the TrueType
fonts in matplotlib's data folder with `matplotlib.ft2font.FT2Font`, their stroke width evened out
to a pen-like width, then box-filtered into a canvas at `SUPERSAMPLE`× the output resolution, the
digit's larger side 20/28 of the image and its centre of mass in the middle, as MNIST was made.

Every image then goes through one vectorized pipeline (chunks of `CHUNK` images, no per-image
Python), at `SUPERSAMPLE`× resolution:

1. affine + elastic, one `grid_sample` from the template: rotation, shear, scale, translation,
   composed with an elastic displacement field (Simard, Steinkraus & Platt 2003, "Best practices
   for convolutional neural networks applied to visual document analysis": uniform(−1, 1) noise per
   pixel, smoothed by a Gaussian of σ = `elastic_sigma` pixels, times α = `elastic_alpha`);
2. stroke width: grey dilation (thicker) or erosion (thinner) by a random, fractional radius,
   blended between repeated 3×3 maxima (alternating square and cross: octagonal discs);
3. area downsampling to `size`×`size`, clipped to [0, 1]: background 0, strokes near 1.

Every random choice comes from `numpy.random.default_rng(seed)` in a fixed order, so the same seed
gives the same images. The per-image parameters are returned as ground-truth factors.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vaelab.data.registry import Dataset, register
from vaelab.data.registry import check_param as _check
from vaelab.errors import UserError

FONT_CANDIDATES = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
    "cmr10", "cmb10", "cmss10", "cmtt10", "cmti10",
)  # file stems in matplotlib's fonts/ttf; the DejaVu monospace fonts are left out (their 0 is dotted)
DIGIT_FRACTION = 20 / 28
"""the digit's larger side, as a fraction of the image side (MNIST: a 20×20 box in 28×28)"""
PEN_WIDTH = 2.2 / 20
"""stroke width every font is evened out to, as a fraction of the digit's height (2.2 px of 20)"""
SUPERSAMPLE = 2
"""the pipeline runs at this multiple of the output resolution, then area-downsamples"""
RENDER_PT = 256
"""font size of the high-resolution renders (digits about 180–200 px tall)"""
CHUNK = 256
"""images generated at a time (small chunks stay in the CPU cache: 4× faster than 4096)"""
FACTOR_NAMES = ("digit", "font", "rotation", "scale", "shear", "dx", "dy", "stroke")


@dataclass(frozen=True)
class FontDigitsParams:
    size: int = 28
    """side of the square image, in pixels (the digit's larger side is 20/28 of it)"""
    rotation: float = 12.0
    """rotation uniform in ±rotation degrees (positive: counter-clockwise)"""
    scale: float = 0.12
    """scale uniform in [1 − scale, 1 + scale]"""
    shear: float = 0.25
    """slant (horizontal shear) uniform in ±shear: x moves by shear × height above the centre"""
    translate: float = 1.0
    """shift uniform in ±translate pixels, horizontally and vertically (factors dx right, dy down)"""
    stroke: float = 1.0
    """stroke width change uniform in [−stroke/2, +stroke] pixels (grey erosion or dilation;
    thinning goes half as far, as it wipes out hairlines)"""
    elastic_alpha: float = 20.0
    """elastic distortion: scale α of the smoothed uniform(−1, 1) displacement field, in pixels"""
    elastic_sigma: float = 4.0
    """elastic distortion: width σ of the Gaussian smoothing the field, in pixels (0 = unsmoothed)"""
    fonts: str = "all"
    """"all", or a comma-separated list of font names (DejaVuSans, cmr10, …)"""

    def __post_init__(self):
        _check(8 <= self.size <= 256, "size", f"must be in 8..256, got {self.size}")
        _check(0 <= self.rotation <= 180, "rotation", f"must be in [0, 180] degrees, got {self.rotation}")
        _check(0 <= self.scale <= 0.9, "scale", f"must be in [0, 0.9], got {self.scale}")
        _check(0 <= self.shear <= 2, "shear", f"must be in [0, 2], got {self.shear}")
        _check(0 <= self.translate <= self.size / 2, "translate", f"must be in [0, size/2 = {self.size / 2:g}] pixels, got {self.translate}")
        _check(0 <= self.stroke <= 4, "stroke", f"must be in [0, 4] pixels, got {self.stroke}")
        _check(0 <= self.elastic_alpha <= 1000, "elastic_alpha", f"must be in [0, 1000], got {self.elastic_alpha}")
        _check(0 <= self.elastic_sigma <= 100, "elastic_sigma", f"must be in [0, 100] pixels, got {self.elastic_sigma}")
        font_list(self.fonts)  # raises a UserError naming the available fonts


# ---------------------------------------------------------------------------------------------
# Templates: rendered once, cached in memory.


def font_path(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"


@functools.lru_cache(maxsize=None)
def _render(name: str, digit: int) -> np.ndarray | None:
    """float32 (h, w) in [0, 1]: the digit in font `name` at RENDER_PT, cropped to its ink; None if missing."""
    from matplotlib.ft2font import FT2Font

    path = font_path(name)
    if not path.is_file():
        return None
    font = FT2Font(str(path))
    if font.get_char_index(ord(str(digit))) == 0:
        return None
    font.set_size(RENDER_PT, 72)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        font.set_text(str(digit))
        font.draw_glyphs_to_bitmap(antialiased=True)
    image = np.asarray(font.get_image(), dtype=np.float32) / 255.0  # (h, w)
    rows, cols = np.nonzero(image > 0)
    if rows.size < 100 or image.max() < 0.99:
        return None
    return image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@functools.lru_cache(maxsize=None)
def available_fonts() -> tuple[str, ...]:
    """The candidate fonts that exist and render all ten digits (non-empty, pairwise different)."""
    found = []
    for name in FONT_CANDIDATES:
        glyphs = [_render(name, d) for d in range(10)]
        if all(g is not None for g in glyphs) and len({(g.shape, g.tobytes()) for g in glyphs}) == 10:
            found.append(name)
    return tuple(found)


def font_list(fonts: str) -> tuple[str, ...]:
    """Parse `data.fonts` ("all" or "a,b,c") into font names; a UserError lists the valid ones."""
    available = available_fonts()
    if not available:
        raise UserError("dataset fontdigits: no usable font found in matplotlib's fonts/ttf folder")
    if fonts.strip() == "all":
        return available
    names = tuple(f.strip() for f in fonts.split(","))
    for name in names:
        if name not in available:
            raise UserError(f"data.fonts must be \"all\" or a comma-separated list of: {', '.join(available)}; got {name!r}")
    if len(set(names)) != len(names):
        raise UserError(f"data.fonts names a font twice: {fonts!r}")
    return names


def _stroke_width(image: np.ndarray) -> float:
    """Mean stroke width of a glyph in pixels: 2·area / perimeter of its ink (> 0.5)."""
    ink = np.pad(image > 0.5, 1)
    inner = ink[1:-1, 1:-1] & ink[:-2, 1:-1] & ink[2:, 1:-1] & ink[1:-1, :-2] & ink[1:-1, 2:]
    area = ink.sum()
    return 2.0 * area / max(area - inner.sum(), 1)


def _disc(radius: float) -> np.ndarray:
    r = math.ceil(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= radius * radius


def _box_matrix(n_out: int, n_src: int, start: float, step: float) -> np.ndarray:
    """float64 (n_out, n_src): output pixel i averages the source interval [start + i·step, start + (i+1)·step)."""
    a = start + step * np.arange(n_out)[:, None]  # (n_out, 1)
    j = np.arange(n_src)[None, :]  # (1, n_src)
    return np.clip(np.minimum(a + step, j + 1) - np.maximum(a, j), 0, None) / step


def _template(name: str, digit: int, canvas: int) -> np.ndarray:
    """float32 (canvas, canvas): the pen-evened glyph, larger side DIGIT_FRACTION·canvas, centre of mass in the middle."""
    from scipy import ndimage

    width = np.mean([_stroke_width(_render(name, d)) for d in range(10)])  # the font's, in render pixels
    glyph = _render(name, digit)
    # evening out, by a radius r (dilate if > 0, erode if < 0) such that after scaling the larger
    # side L to DIGIT_FRACTION of the image the strokes are PEN_WIDTH·L wide: width + 2r = PEN_WIDTH·(L + 2r)
    radius = (PEN_WIDTH * max(glyph.shape) - width) / (2 * (1 - PEN_WIDTH))
    if abs(radius) >= 0.5:
        pad = math.ceil(abs(radius)) + 1
        glyph = np.pad(glyph, pad)
        morph = ndimage.grey_dilation if radius > 0 else ndimage.grey_erosion
        glyph = morph(glyph, footprint=_disc(abs(radius)))
        rows, cols = np.nonzero(glyph > 0)
        glyph = glyph[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = glyph.shape
    step = max(h, w) / (DIGIT_FRACTION * canvas)  # render pixels per canvas pixel
    mass = glyph.sum()
    cy = (glyph.sum(1) @ (np.arange(h) + 0.5)) / mass  # continuous coordinates: pixel i covers [i, i+1)
    cx = (glyph.sum(0) @ (np.arange(w) + 0.5)) / mass
    rows = _box_matrix(canvas, h, cy - step * canvas / 2, step)  # (canvas, h)
    cols = _box_matrix(canvas, w, cx - step * canvas / 2, step)  # (canvas, w)
    return np.clip(rows @ glyph @ cols.T, 0, 1).astype(np.float32)  # (canvas, canvas)


@functools.lru_cache(maxsize=16)
def templates(fonts: tuple[str, ...], size: int) -> torch.Tensor:
    """float32 (F, 10, 1, S, S), S = SUPERSAMPLE·size: every digit in every font, centred."""
    canvas = SUPERSAMPLE * size
    out = np.stack([np.stack([_template(f, d, canvas) for d in range(10)]) for f in fonts])  # (F, 10, S, S)
    return torch.from_numpy(out[:, :, None])


# ---------------------------------------------------------------------------------------------
# The per-image pipeline, vectorized over a chunk.


@functools.lru_cache(maxsize=16)
def gaussian_matrix(n_out: int, n_in: int, sigma: float) -> torch.Tensor:
    """float32 (n_out, n_in): Gaussian smoothing (σ in input pixels, zero outside) of a length-n_in
    signal, read at the centres of n_out equal cells over the same extent; σ = 0 reads the nearest pixel."""
    at = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5  # (n_out,) cell centres in input pixels
    offset = at[:, None] - np.arange(n_in)[None, :]  # (n_out, n_in)
    if sigma == 0:
        return torch.from_numpy((np.arange(n_in)[None, :] == np.clip(np.floor(at + 0.5), 0, n_in - 1)[:, None]).astype(np.float32))
    reach = n_in + math.ceil(10 * sigma)
    mass = np.exp(-(np.arange(-reach, reach + 1) ** 2) / (2 * sigma**2)).sum()  # the untruncated kernel's
    return torch.from_numpy((np.exp(-(offset**2) / (2 * sigma**2)) / mass).astype(np.float32))


def inverse_affine(angle: np.ndarray, scale: np.ndarray, shear: np.ndarray) -> np.ndarray:
    """float64 (B, 2, 2): the inverse of M = R · H · scale, per image, in image coordinates (x right,
    y down): R = [[cos, sin], [−sin, cos]] turns counter-clockwise by `angle` (radians) on screen,
    H = [[1, −shear], [0, 1]] leans the top to the right (as italics) for shear > 0."""
    c, s = np.cos(angle), np.sin(angle)
    r_inv = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (B, 2, 2)
    h_inv = np.zeros_like(r_inv)
    h_inv[:, 0, 0] = h_inv[:, 1, 1] = 1.0
    h_inv[:, 0, 1] = shear
    return (h_inv @ r_inv) / scale[:, None, None]


def sampling_grid(m_inv: torch.Tensor, shift: torch.Tensor, noise: torch.Tensor | None, alpha: float, sigma: float, canvas: int) -> torch.Tensor:
    """Where each canvas pixel q reads its template: p = M⁻¹(q + d(q) − t), d = α · (G_σ ∗ noise).

    All in normalized coordinates ([−1, 1] across the image, x then y, as `grid_sample` with
    align_corners=False). The elastic field d (Simard et al. 2003) is uniform(−1, 1) noise on the
    n × n output pixels smoothed by a Gaussian of σ output pixels (zero outside the image), read at
    the canvas' pixel centres. Everything is linear, so the whole grid is one pair of matrix
    products per image: G' · C · G'ᵀ with G' = [G | 1 | q] and C holding M⁻¹·α·noise, M⁻¹ and −M⁻¹t.

    Arguments:
        m_inv: (B, 2, 2) inverse linear maps. shift: (B, 2) translations t.
        noise: (B, 2, n, n) uniform(−1, 1) displacement noise (channel 0: x, 1: y), or None for none.
        alpha: α in normalized units. sigma: σ in output pixels. canvas: S, the grid's side.
    Returns:
        (B, S, S, 2) the sampling grid.
    """
    b = m_inv.shape[0]
    n = noise.shape[-1] if noise is not None else 0
    q = (torch.arange(canvas, dtype=torch.float32) * 2 + 1) / canvas - 1  # (S,) pixel centres
    g = gaussian_matrix(canvas, n, sigma) if n else torch.zeros(canvas, 0)  # (S, n)
    g_ext = torch.cat([g, torch.ones(canvas, 1), q[:, None]], dim=1)  # (S, n + 2)
    coef = torch.zeros(b, 2, n + 2, n + 2)
    if noise is not None:
        coef[:, :, :n, :n] = torch.einsum("bij,bjhw->bihw", m_inv * alpha, noise)  # the field, mixed by M⁻¹
    coef[:, :, n, n] = -(m_inv @ shift[:, :, None])[..., 0]  # constant: −M⁻¹t
    coef[:, :, n, n + 1] = m_inv[:, :, 0]  # × q_x (columns)
    coef[:, :, n + 1, n] = m_inv[:, :, 1]  # × q_y (rows)
    rows = g_ext @ coef  # (B, 2, S, n + 2): along y, read at the canvas rows
    grid = (rows.reshape(-1, n + 2) @ g_ext.T).reshape(b, 2, canvas, canvas)  # (B, 2, S, S): along x too
    return grid.permute(0, 2, 3, 1).contiguous()  # (B, S, S, 2)


def _dilate(x: torch.Tensor, level: int) -> torch.Tensor:
    """One step of grey dilation of (B, 1, S, S): a 3×3 square on odd levels, a cross on even ones
    (alternating, they grow octagons: close to discs)."""
    p = F.pad(x, (1, 1, 1, 1))  # (B, 1, S+2, S+2), zeros: at most the background level
    if level % 2:
        rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])  # (B, 1, S+2, S)
        return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
    across = torch.maximum(torch.maximum(p[..., 1:-1, :-2], p[..., 1:-1, 2:]), x)
    return torch.maximum(torch.maximum(p[..., :-2, 1:-1], p[..., 2:, 1:-1]), across)


def change_stroke(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Grey dilation (radius > 0) or erosion (radius < 0) of images (B, 1, S, S) by fractional radii (B,).

    Integer radii k are k steps of `_dilate`, erosion being the dilation of the negated image
    (so one pass serves both signs); fractional radii blend the two neighbouring levels linearly.
    """
    sign = torch.where(radius < 0, -1.0, 1.0)[:, None, None, None]  # (B, 1, 1, 1)
    size = radius.abs()[:, None, None, None]  # (B, 1, 1, 1)
    top = math.ceil(float(size.max())) if radius.numel() else 0
    level = sign * x  # dilation level 0, signed
    out = x * (1 - size).clamp(min=0)
    for k in range(1, top + 1):
        level = _dilate(level, k)
        out = out + (sign * level) * (1 - (size - k).abs()).clamp(min=0)  # hat weight of level k
    return out


@register(
    "fontdigits",
    FontDigitsParams,
    "28x28 digits rendered from matplotlib's fonts with random affine, stroke and elastic distortion (an MNIST stand-in, no download)",
    default_n=60000,
    generative=True,
)
def fontdigits(p: FontDigitsParams, n: int, seed: int, path: str) -> Dataset:
    fonts = font_list(p.fonts)
    glyphs = templates(fonts, p.size)  # (F, 10, 1, S, S)
    rng = np.random.default_rng(seed)
    digit = rng.integers(0, 10, n)
    font = rng.integers(0, len(fonts), n)
    angle = rng.uniform(-p.rotation, p.rotation, n)
    scale = rng.uniform(1 - p.scale, 1 + p.scale, n)
    shear = rng.uniform(-p.shear, p.shear, n)
    shift = rng.uniform(-p.translate, p.translate, (n, 2))  # pixels, (x, y)
    stroke = rng.uniform(-p.stroke / 2, p.stroke, n)  # width change in pixels

    to_unit = 2.0 / p.size  # pixels → normalized coordinates
    m_inv = torch.from_numpy(inverse_affine(np.radians(angle), scale, shear).astype(np.float32))  # (N, 2, 2)
    t = torch.from_numpy((shift * to_unit).astype(np.float32))  # (N, 2)
    radius = torch.from_numpy((stroke * SUPERSAMPLE / 2).astype(np.float32))  # (N,) in supersampled pixels
    index = torch.from_numpy(font * 10 + digit)
    flat = glyphs.flatten(0, 1)  # (F·10, 1, S, S)
    canvas = SUPERSAMPLE * p.size
    images = torch.empty(n, 1, p.size, p.size)
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        noise = None
        if p.elastic_alpha > 0:
            noise = torch.from_numpy(rng.random((hi - lo, 2, p.size, p.size), dtype=np.float32)) * 2 - 1  # (B, 2, size, size)
        grid = sampling_grid(m_inv[lo:hi], t[lo:hi], noise, p.elastic_alpha * to_unit, p.elastic_sigma, canvas)  # (B, S, S, 2)
        x = F.grid_sample(flat[index[lo:hi]], grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, 1, S, S)
        if p.stroke > 0:
            x = change_stroke(x, radius[lo:hi])
        images[lo:hi] = F.avg_pool2d(x, SUPERSAMPLE).clamp_(0, 1)  # (B, 1, size, size)

    factors = np.stack([digit, font, angle, scale, shear, shift[:, 0], shift[:, 1], stroke], axis=1).astype(np.float32)
    return Dataset(images, torch.from_numpy(digit.astype(np.int64)), torch.from_numpy(factors), FACTOR_NAMES, "fontdigits")

"""Tests of the `sprites` dataset (vaelab.data.sprites), through the config, load_data and the CLI.

The expectations are independent of the renderer: geometry is measured with image moments (mass
= area, centre of mass, principal axis) and compared with the areas the documented shapes have
analytically (square side 16·s; ellipse semi-axes 11·s × 5.5·s) or by a fine-grid integral of the
implicit heart computed here; factor frequencies with binomial bounds from the documented
probabilities (uniform; skew: value k of K ∝ skew^(k/(K−1))).
"""

import math
import tomllib

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error

from vaelab.config import load_config
from vaelab.data import DATASETS, load_data
from vaelab.data import sprites as S
from vaelab.data.sprites import SPRITE_FACTOR_SIZES, factor_pmfs, render_sprites
from vaelab.errors import UserError

NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SIZES = (3, 6, 40, 32, 32)
SCALES = np.linspace(0.5, 1, 6)
SQUARE, ELLIPSE, HEART = 0, 1, 2


def config(n, seed=0, **params):
    overrides = {"data.name": "sprites", "data.n": n, "data.seed": seed, **{f"data.{k}": v for k, v in params.items()}}
    return load_config(None, overrides=overrides).data


def d_params(**params):
    return config(8, **params).params


def build(n, seed=0, **params):
    return load_data(config(n, seed, **params))


def area(images):
    """(N,) float64: the lit area in px² (the anti-aliased pixel values summed)."""
    return images[:, 0].double().sum((1, 2))


def centre_of_mass(images):
    """(N, 2) float64: the intensity-weighted mean (column, row) of images (N, 1, H, W), pixel centres at i + 0.5."""
    x = images[:, 0].double()
    mass = x.sum((1, 2))
    at = torch.arange(x.shape[1], dtype=torch.float64) + 0.5
    return torch.stack([(x.sum(1) * at).sum(1) / mass, (x.sum(2) * at).sum(1) / mass], 1)


def axis_degrees(image):
    """The principal axis of one (H, W) image, degrees counter-clockwise from the x axis (y up), in [0, 180)."""
    img = image.double().numpy()
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    yy = -yy
    m = img.sum()
    cx, cy = (img * xx).sum() / m, (img * yy).sum() / m
    mu20, mu02, mu11 = ((img * (xx - cx) ** 2).sum(), (img * (yy - cy) ** 2).sum(), (img * (xx - cx) * (yy - cy)).sum())
    return math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02)) % 180


def combos(**fixed):
    """int (N, 5): the product over the factors given as lists (or single values)."""
    axes = [np.atleast_1d(fixed[name]) for name in NAMES]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], 1)


def within_binomial(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def data5000():
    return build(5000, seed=11)


def test_registered_and_api_constants():
    assert "sprites" in DATASETS and DATASETS["sprites"].generative
    assert SPRITE_FACTOR_SIZES == SIZES and S.SPRITE_FACTOR_NAMES == NAMES


def test_shapes_dtypes_range_and_labels():
    d = build(200, seed=1)
    assert d.name == "sprites" and len(d) == 200 and d.shape == (1, 64, 64)
    assert d.images.dtype == torch.float32 and d.images.is_contiguous()
    assert d.images.min() >= 0 and d.images.max() <= 1 and d.images.max() == 1
    assert d.factor_names == NAMES
    assert d.factors.dtype == torch.float32 and d.factors.shape == (200, 5)
    assert torch.equal(d.factors, d.factors.round())
    assert d.labels.dtype == torch.int64 and torch.equal(d.labels, d.factors[:, 0].long())
    assert (area(d.images) > 20).all()  # every image holds a sprite (the smallest: an 8×8-ish shape)
    # binary-ish: most pixels are exactly 0 or 1, grey only along the edges
    x = d.images
    assert ((x == 0) | (x == 1)).float().mean() > 0.97
    assert ((x > 0.2) & (x < 0.8)).sum((1, 2, 3)).min() >= 4  # anti-aliased: grey pixels along every edge


def test_deterministic_per_seed():
    a, b, c = build(100, seed=5), build(100, seed=5), build(100, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.factors, c.factors)


def test_factors_in_range_and_uniform(data5000):
    f = data5000.factors.long().numpy()
    n = len(f)
    for j, k in enumerate(SIZES):
        assert f[:, j].min() >= 0 and f[:, j].max() < k
        counts = np.bincount(f[:, j], minlength=k)
        assert all(within_binomial(c, n, 1 / k) for c in counts), (NAMES[j], counts)


def test_skew_rare_value_frequency():
    skew, n = 0.05, 5000
    d = build(n, seed=2, skew_factor="pos_x", skew=skew)
    f = d.factors.long().numpy()
    w = skew ** (np.arange(32) / 31)  # the documented scheme: value k ∝ skew^(k/(K−1))
    p = w / w.sum()
    counts = np.bincount(f[:, 3], minlength=32)
    assert within_binomial(counts[31], n, p[31]) and within_binomial(counts[0], n, p[0]), counts
    assert counts[:8].sum() > 3 * counts[-8:].sum()  # falls off across the range
    assert all(within_binomial(c, n, 1 / 3) for c in np.bincount(f[:, 0], minlength=3))  # the others stay uniform
    assert np.allclose(factor_pmfs(d_params(skew_factor="pos_x", skew=skew))[3], p)


def test_skew_shape_is_relative_frequency():
    skew, n = 0.1, 4000
    f = build(n, seed=3, skew_factor="shape", skew=skew).factors.long().numpy()
    p = np.array([1, math.sqrt(skew), skew]) / (1 + math.sqrt(skew) + skew)
    counts = np.bincount(f[:, 0], minlength=3)
    assert all(within_binomial(c, n, q) for c, q in zip(counts, p)), counts
    assert 0.5 * skew < counts[2] / counts[0] < 2 * skew


def test_centre_of_mass_follows_position():
    k = np.arange(32)
    for shape in range(3):
        x = render_sprites(combos(shape=shape, scale=5, orientation=7, pos_x=k, pos_y=16))
        y = render_sprites(combos(shape=shape, scale=5, orientation=7, pos_x=16, pos_y=k))
        cx, cy = centre_of_mass(x), centre_of_mass(y)
        assert (cx[1:, 0] - cx[:-1, 0] > 0.5).all(), cx[:, 0]  # right with pos_x
        assert (cy[1:, 1] - cy[:-1, 1] > 0.5).all(), cy[:, 1]  # down the rows with pos_y (dSprites' arrays)
        assert np.ptp(cx[:, 1].numpy()) < 0.05 and np.ptp(cy[:, 0].numpy()) < 0.05  # the other coordinate stays
        steps = np.diff(cx[:, 0].numpy())
        assert steps.std() < 0.1 * steps.mean()  # evenly spaced (positions linear in [0, 1])
        assert cx[-1, 0] - cx[0, 0] > 30  # the sprite travels across most of the frame


def test_centre_of_mass_does_not_depend_on_shape_or_orientation(data5000):
    """The sprite's position is its centre of mass, whatever its shape, scale and orientation."""
    d = data5000.subset(slice(0, 1500))
    com = centre_of_mass(d.images).numpy()
    for axis, j in ((0, 3), (1, 4)):
        pos = d.factors[:, j].numpy()
        slope, icept = np.polyfit(pos, com[:, axis], 1)
        assert np.abs(com[:, axis] - (slope * pos + icept)).max() < 0.2


def test_area_grows_with_scale_as_its_square():
    for shape in range(3):
        a = area(render_sprites(combos(shape=shape, scale=np.arange(6), orientation=3, pos_x=15, pos_y=17))).numpy()
        assert (np.diff(a) > 0).all(), a
        assert np.allclose(a / a[-1], SCALES**2, rtol=0.02), (shape, a / a[-1])


def heart_area_units():
    """Area of (x² + y² − 1)³ − x²y³ ≤ 0, by counting points of a fine grid."""
    t = np.linspace(-1.5, 1.5, 1201)
    x, y = np.meshgrid(t, t)
    return ((x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0).sum() * (t[1] - t[0]) ** 2


def test_shape_areas_match_the_geometry():
    """Square side 16, ellipse semi-axes 11 × 5.5, heart 8 px per unit, at scale 1; averaged over
    orientations and positions to average the pixel grid out."""
    areas = []
    for shape in range(3):
        a = area(render_sprites(combos(shape=shape, scale=5, orientation=np.arange(0, 40, 3), pos_x=(3, 20), pos_y=(9, 26))))
        areas.append(a.mean().item())
    square, ellipse, heart = areas
    assert square == pytest.approx(256, rel=0.01)
    assert ellipse / square == pytest.approx(math.pi * 11 * 5.5 / 16**2, rel=0.01)  # 0.742
    assert heart / square == pytest.approx(heart_area_units() * 64 / 256, rel=0.01)  # 0.915
    assert min(abs(square - ellipse), abs(square - heart), abs(heart - ellipse)) > 0.05 * square


def test_orientation():
    heart = render_sprites(combos(shape=HEART, scale=5, orientation=(0, 1, 20), pos_x=16, pos_y=16))
    assert (heart[0] - heart[1]).abs().sum() > 10  # one step (9°) changes a heart
    assert (heart[0] - heart[2]).abs().sum() > 50  # upside down is another image
    for o in (0, 3, 17):
        sq = render_sprites(combos(shape=SQUARE, scale=(2, 5), orientation=(o, o + 10, o + 20), pos_x=11, pos_y=23)).view(2, 3, 64, 64)
        assert (sq[:, 1:] - sq[:, :1]).abs().amax() < 1e-3  # turned by 90° and 180°: the same square
    ell = render_sprites(combos(shape=ELLIPSE, scale=5, orientation=(0, 5, 10, 20), pos_x=16, pos_y=16))
    assert (ell[0] - ell[3]).abs().amax() < 1e-3  # 180°: the same ellipse
    assert axis_degrees(ell[0, 0]) == pytest.approx(0, abs=1) or axis_degrees(ell[0, 0]) == pytest.approx(180, abs=1)
    assert axis_degrees(ell[1, 0]) == pytest.approx(45, abs=1)  # counter-clockwise on screen, 9° a step
    assert axis_degrees(ell[2, 0]) == pytest.approx(90, abs=1)


def test_every_sprite_stays_inside_the_frame():
    extreme = (0, 31)
    x = render_sprites(combos(shape=(0, 1, 2), scale=5, orientation=np.arange(40), pos_x=extreme, pos_y=extreme))
    border = torch.cat([x[:, 0, 0], x[:, 0, -1], x[:, 0, :, 0], x[:, 0, :, -1]], 1)
    assert border.abs().max() == 0
    centred = area(render_sprites(combos(shape=(0, 1, 2), scale=5, orientation=np.arange(40), pos_x=16, pos_y=16)))
    whole = area(x).view(3, 40, 4)
    assert torch.allclose(whole, centred.view(3, 40, 1).expand(3, 40, 4), rtol=0.02)  # nothing was cut


def test_render_sprites_equals_the_dataset():
    d = build(300, seed=4)
    assert torch.equal(render_sprites(d.factors.long().numpy()), d.images)
    assert render_sprites(np.zeros((0, 5), np.int64)).shape == (0, 1, 64, 64)
    with pytest.raises(ValueError):
        render_sprites(np.array([[3, 0, 0, 0, 0]]))


def test_full_product_subset():
    d = build(400, seed=7, full=True)
    f = d.factors.long().numpy()
    flat = np.ravel_multi_index(f.T, SIZES)
    assert len(d) == 400 and (np.diff(flat) > 0).all()  # distinct combinations, in product order
    assert not np.array_equal(flat, np.arange(400))  # a random subset, not the first 400
    assert torch.equal(d.images, render_sprites(f))


def test_default_size(monkeypatch):
    monkeypatch.setattr(S, "DEFAULT_N", 24)
    assert len(build(0)) == 24


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"skew_factor": "colour"}, "data.skew_factor"),
        ({"skew_factor": "shape", "skew": 0.0}, "data.skew"),
        ({"skew_factor": "shape", "skew": 1.5}, "data.skew"),
        ({"skew_factor": "shape", "skew": -0.1}, "data.skew"),
        ({"skew": 0.5}, "data.skew_factor"),
        ({"full": True, "skew_factor": "scale", "skew": 0.5}, "data.full"),
        ({"max_gib": 0.0}, "data.max_gib"),
    ],
)
def test_bad_parameters(params, needle):
    with pytest.raises(UserError) as e:
        config(16, **params)
    assert needle in one_line(e)


def test_over_large_requests_are_refused():
    with pytest.raises(UserError) as e:
        build(0, full=True)  # the whole product: 11.25 GiB
    assert "737,280" in one_line(e) and "data.max_gib" in str(e.value)
    with pytest.raises(UserError) as e:
        build(800_000, full=True)
    assert "737,280" in one_line(e)
    with pytest.raises(UserError) as e:
        build(300_000)  # drawn, 4.6 GiB
    assert "data.max_gib" in one_line(e)
    with pytest.raises(UserError):
        build(100, max_gib=0.001)
    assert len(build(64, max_gib=0.001)) == 64  # 1 MiB holds 64 images


def test_cli_train(tmp_path):
    out = tmp_path / "run"
    r = cli("train", "--set", "data.name=sprites", "--set", "data.n=128", "--set", "train.steps=3", "--set", "model.name=fc2", "--out", out, "--quiet")
    assert r.rc == 0, r.err
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["data"]["name"] == "sprites" and saved["data"]["skew_factor"] == "none"
    assert (out / "model.safetensors").is_file() and (out / "samples.png").is_file()


def test_cli_errors(tmp_path):
    r = cli("train", "--set", "data.name=sprites", "--set", "data.skew_factor=colour", "--set", "train.steps=1", "--out", tmp_path / "a")
    user_error(r, "data.skew_factor", "colour", "pos_x")
    r = cli("train", "--set", "data.name=sprites", "--set", "data.full=true", "--set", "train.steps=1", "--out", tmp_path / "b")
    user_error(r, "data.max_gib", "737,280")

"""Tests of the `fontdigits` dataset (vaelab.data.fontdigits), through the config and the CLI.

The expectations are independent of the generator: reference glyphs are rasterized by PIL's own
FreeType binding (not matplotlib's FT2Font) and placed by an explicit loop; geometry is checked
with image moments (centre of mass, principal axis, radius of gyration) against the returned
factors; recognisability with a scikit-learn classifier; label balance with a chi-square test.
"""

import math
import tomllib

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error
from PIL import Image, ImageDraw, ImageFont
from scipy import stats

from vaelab.config import load_config
from vaelab.data import DATASETS, load_data
from vaelab.data.fontdigits import available_fonts, font_path
from vaelab.errors import UserError

STILL = {"rotation": 0, "scale": 0, "shear": 0, "translate": 0, "stroke": 0, "elastic_alpha": 0}
MIDDLE = 13.5  # the centre of a 28-pixel side, in pixel-index coordinates


def build(n, seed=0, **params):
    overrides = {"data.name": "fontdigits", "data.n": n, "data.seed": seed, **{f"data.{k}": v for k, v in params.items()}}
    return load_data(load_config(overrides=overrides).data)


def centre_of_mass(images):
    """(N, 2) ink-weighted mean (x, y) of images (N, 1, H, W), in pixel indices."""
    x = images[:, 0].double()
    mass = x.sum((1, 2))
    rows = torch.arange(x.shape[1], dtype=torch.float64)
    cols = torch.arange(x.shape[2], dtype=torch.float64)
    return torch.stack([(x.sum(1) * cols).sum(1) / mass, (x.sum(2) * rows).sum(1) / mass], 1)


def uncut(images):
    """(N,) bool: no ink on the outermost rows and columns (the border did not cut the digit)."""
    x = images[:, 0]
    return torch.stack([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], 1).amax((1, 2)) < 0.01


def moments(image):
    """Central second moments (μ20, μ02, μ11) of one (H, W) image, x right and y up."""
    img = np.asarray(image, np.float64)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    yy = -yy  # y up
    m = img.sum()
    cx, cy = (img * xx).sum() / m, (img * yy).sum() / m
    return (img * (xx - cx) ** 2).sum() / m, (img * (yy - cy) ** 2).sum() / m, (img * (xx - cx) * (yy - cy)).sum() / m


def axis_degrees(image):
    """Direction of the principal axis of the ink, degrees counter-clockwise from the x axis, in [0, 180)."""
    mu20, mu02, mu11 = moments(image)
    return math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02)) % 180


def reference_digit(font: str, digit: int) -> np.ndarray:
    """float32 (28, 28): the digit drawn by PIL's FreeType, cropped, fitted into 20x20, pasted so that
    its centre of mass falls on the nearest pixel to the middle (MNIST's recipe)."""
    ttf = ImageFont.truetype(str(font_path(font)), 200)
    canvas = Image.new("L", (400, 400), 0)
    ImageDraw.Draw(canvas).text((100, 50), str(digit), fill=255, font=ttf)
    big = np.asarray(canvas, np.float32) / 255
    rows, cols = np.nonzero(big > 0)
    crop = big[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    k = 20 / max(h, w)
    small = np.asarray(Image.fromarray(crop).resize((max(1, round(w * k)), max(1, round(h * k))), Image.BOX), np.float32)
    out = np.zeros((28, 28), np.float32)
    yy, xx = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    cy, cx = (small * yy).sum() / small.sum(), (small * xx).sum() / small.sum()
    top, left = int(round(MIDDLE - cy)), int(round(MIDDLE - cx))
    for r in range(small.shape[0]):
        for c in range(small.shape[1]):
            out[top + r, left + c] = small[r, c]
    return out


def correlation(a, b):
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


# ---------------------------------------------------------------------------------------------
# The record: shapes, ranges, labels, seeds.


def test_registered_as_a_generative_mnist_sized_dataset():
    spec = DATASETS["fontdigits"]
    assert spec.generative and spec.default_n == 60000 and not spec.needs_path
    assert "no download" in spec.description
    data = build(300)
    assert data.name == "fontdigits" and len(data) == 300 and data.shape == (1, 28, 28)
    assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert data.images.min() >= 0 and data.images.max() <= 1 and torch.isfinite(data.images).all()
    assert set(data.labels.tolist()) <= set(range(10))
    assert data.factors.shape == (300, len(data.factor_names)) and data.factors.dtype == torch.float32
    assert torch.equal(data.factors[:, data.factor_names.index("digit")].long(), data.labels)
    # MNIST-like: a black background, strokes that reach white, about 10–20 % of the pixels inked
    assert (data.images[:, :, :2, :] == 0).float().mean() > 0.95  # the top rows stay empty
    assert (data.images.flatten(1).max(1).values > 0.9).all()
    assert 0.08 < data.images.mean() < 0.2


def test_other_sizes():
    data = build(20, size=20)
    assert data.images.shape == (20, 1, 20, 20)


def test_labels_are_uniform_over_the_ten_digits():
    labels = build(5000, seed=3, **STILL).labels.numpy()
    counts = np.bincount(labels, minlength=10)
    assert counts.min() > 400
    assert stats.chisquare(counts).pvalue > 1e-3


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = build(64, seed=5), build(64, seed=5), build(64, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.images, c.images)
    assert (a.images - c.images).abs().flatten(1).sum(1).gt(1).float().mean() > 0.9  # nearly all differ


# ---------------------------------------------------------------------------------------------
# Undistorted glyphs: identical per digit and font, centred, the right digit.


def test_without_distortions_each_digit_and_font_is_one_centred_image():
    data = build(600, seed=1, **STILL)
    names = data.factor_names
    key = data.factors[:, names.index("digit")] * 100 + data.factors[:, names.index("font")]
    for k in key.unique():
        group = data.images[key == k]
        assert torch.equal(group, group[:1].expand_as(group)), "one digit in one font must give one image"
    com = centre_of_mass(data.images)
    assert (com - MIDDLE).abs().max() < 1.0
    # the digit's larger side spans about 20 of the 28 pixels, as MNIST's
    ink = data.images[:, 0] > 0.2
    height = ink.any(2).sum(1)
    width = ink.any(1).sum(1)
    assert (torch.maximum(height, width) >= 18).all() and (torch.maximum(height, width) <= 22).all()


def test_without_distortions_different_digits_differ():
    data = build(300, seed=2, fonts="DejaVuSans", **STILL)
    first = {int(d): data.images[int(torch.nonzero(data.labels == d)[0])] for d in data.labels.unique()}
    assert len(first) == 10
    for a in range(10):
        for b in range(a + 1, 10):
            assert (first[a] - first[b]).abs().sum() > 20, (a, b)


@pytest.mark.parametrize("font", ["DejaVuSans", "cmr10"])
def test_each_label_looks_most_like_its_own_reference_digit(font):
    """Template matching against an independent rasterization: the label names the glyph drawn."""
    data = build(300, seed=4, fonts=font, **STILL)
    refs = [reference_digit(font, d) for d in range(10)]
    for d in range(10):
        image = data.images[int(torch.nonzero(data.labels == d)[0]), 0].numpy()
        scores = [correlation(image, r) for r in refs]
        assert int(np.argmax(scores)) == d, (d, np.round(scores, 2))
        assert scores[d] > 0.8, (d, scores[d])


# ---------------------------------------------------------------------------------------------
# Each distortion does what its factor says.


def test_rotation_turns_the_ink_by_the_factor_counter_clockwise():
    base = build(400, seed=7, fonts="DejaVuSans", **STILL)
    turned = build(400, seed=7, fonts="DejaVuSans", **{**STILL, "rotation": 90})
    assert torch.equal(base.labels, turned.labels)  # the same draws in the same order
    angle = turned.factors[:, turned.factor_names.index("rotation")]
    assert angle.abs().max() <= 90 and angle.abs().max() > 80
    differ = (base.images - turned.images).abs().flatten(1).sum(1) > 5
    assert differ[angle.abs() > 10].all()  # a 90-degree range changes the images
    ones = torch.nonzero(base.labels == 1)[:, 0]
    assert len(ones) > 20
    for i in ones:
        expected = (axis_degrees(base.images[i, 0]) + float(angle[i])) % 180
        got = axis_degrees(turned.images[i, 0])
        assert abs((got - expected + 90) % 180 - 90) < 5, (float(angle[i]), got, expected)


def test_translation_moves_the_centre_of_mass_by_the_factor():
    base = build(200, seed=8, **STILL)
    moved = build(200, seed=8, **{**STILL, "translate": 3})
    names = moved.factor_names
    shift = moved.factors[:, [names.index("dx"), names.index("dy")]].double()
    assert shift.abs().max() > 2.5
    got = centre_of_mass(moved.images) - centre_of_mass(base.images)
    inside = uncut(moved.images)
    assert inside.float().mean() > 0.8
    assert (got - shift)[inside].abs().max() < 0.1


def test_scale_and_shear_follow_their_factors():
    base = build(200, seed=9, **STILL)
    scaled = build(200, seed=9, **{**STILL, "scale": 0.3})
    s = scaled.factors[:, scaled.factor_names.index("scale")].double()
    assert s.min() < 0.75 and s.max() > 1.25
    gyration = lambda images: torch.tensor([math.sqrt(sum(moments(x[0])[:2])) for x in images], dtype=torch.float64)
    ratio = gyration(scaled.images) / gyration(base.images)
    inside = uncut(scaled.images)
    assert inside.float().mean() > 0.8
    assert (ratio / s - 1)[inside].abs().max() < 0.03
    slanted = build(200, seed=9, **{**STILL, "shear": 0.5})
    k = slanted.factors[:, slanted.factor_names.index("shear")]
    # a slant x' = x + k·y (y up) adds k·μ02 to μ11
    dmu11 = torch.tensor([moments(a[0])[2] - moments(b[0])[2] for a, b in zip(slanted.images, base.images)])
    mu02 = torch.tensor([moments(b[0])[1] for b in base.images])
    inside = uncut(slanted.images)
    assert inside.float().mean() > 0.8
    assert (dmu11 - k * mu02)[inside].abs().max() < 0.03 * mu02.max()


def test_stroke_thickens_and_thins_as_its_factor_says():
    data = build(500, seed=10, fonts="DejaVuSans", **{**STILL, "stroke": 2})
    w = data.factors[:, data.factor_names.index("stroke")]
    assert w.min() < -0.8 and w.max() > 1.8 and w.min() >= -1.0  # thinning goes half as far
    ink = data.images.sum((1, 2, 3))
    for d in range(10):
        pick = data.labels == d
        rho = stats.spearmanr(w[pick].numpy(), ink[pick].numpy()).statistic
        assert rho > 0.95, (d, rho)


def test_elastic_distortion_bends_but_keeps_the_digit():
    base = build(200, seed=11, **STILL)
    bent = build(200, seed=11, **{**STILL, "elastic_alpha": 30, "elastic_sigma": 4})
    change = (bent.images - base.images).abs().flatten(1).sum(1)
    assert (change > 3).float().mean() > 0.95
    corr = [correlation(a.numpy(), b.numpy()) for a, b in zip(bent.images, base.images)]
    assert np.median(corr) > 0.5
    assert ((bent.images.sum((1, 2, 3)) / base.images.sum((1, 2, 3))) - 1).abs().median() < 0.15
    # Simard's field: the same noise smoothed more (larger σ) moves pixels less, and more coherently
    wide = build(200, seed=11, **{**STILL, "elastic_alpha": 30, "elastic_sigma": 8})
    assert (wide.images - base.images).abs().sum() < (bent.images - base.images).abs().sum()


def test_distorted_digits_are_recognisable():
    train, test = build(2000, seed=21), build(1000, seed=22)
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=300, C=0.05).fit(train.images.flatten(1).numpy(), train.labels.numpy())
    accuracy = clf.score(test.images.flatten(1).numpy(), test.labels.numpy())
    assert accuracy > 0.8, accuracy
    # and not trivially so: the distortions make a pixel-space linear model miss some
    assert accuracy < 0.99, accuracy


# ---------------------------------------------------------------------------------------------
# Parameters through the config, and the CLI.


@pytest.mark.parametrize(
    "key,value",
    [
        ("rotation", -1),
        ("rotation", 181),
        ("scale", 1.0),
        ("shear", -0.1),
        ("translate", -1),
        ("translate", 15),
        ("stroke", 5),
        ("elastic_alpha", -1),
        ("elastic_sigma", -0.5),
        ("size", 4),
    ],
)
def test_bad_parameters_are_one_line_user_errors(key, value):
    with pytest.raises(UserError) as e:
        load_config(None, overrides={"data.name": "fontdigits", f"data.{key}": value})
    message = str(e.value)
    assert f"data.{key}" in message and "\n" not in message


def test_unknown_font_lists_the_available_ones():
    fonts = available_fonts()
    assert len(fonts) >= 8 and "DejaVuSans" in fonts
    with pytest.raises(UserError) as e:
        load_config(None, overrides={"data.name": "fontdigits", "data.fonts": "DejaVuSans,ComicSans"})
    message = str(e.value)
    assert "data.fonts" in message and "ComicSans" in message and "\n" not in message
    for name in fonts:
        assert name in message
    cfg = load_config(None, overrides={"data.name": "fontdigits", "data.fonts": "cmr10, DejaVuSans"})
    assert cfg.data.params.fonts == "cmr10, DejaVuSans"


def test_every_available_font_renders_every_digit():
    data = build(len(available_fonts()) * 40, seed=12, **STILL)
    seen = set(zip(data.factors[:, 0].long().tolist(), data.factors[:, 1].long().tolist()))
    assert len(seen) > 0.9 * 10 * len(available_fonts())
    assert (data.images.sum((1, 2, 3)) > 20).all()


def test_cli_trains_on_fontdigits(tmp_path):
    out = tmp_path / "run"
    r = cli("train", "--set", "data.name=fontdigits", "--set", "data.n=256", "--set", "train.steps=5", "--set", "model.name=fc2", "--out", out, "--quiet")
    assert r.rc == 0, r.err
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["data"]["name"] == "fontdigits" and config["data"]["rotation"] == 12.0 and config["data"]["fonts"] == "all"
    assert (out / "model.safetensors").is_file() and (out / "samples.png").is_file()


def test_cli_bad_font_is_one_line(tmp_path):
    r = cli("train", "--set", "data.name=fontdigits", "--set", "data.fonts=nope", "--set", "train.steps=1", "--out", tmp_path / "run")
    user_error(r, "data.fonts", "nope", "DejaVuSans")


def test_cli_lists_fontdigits():
    r = cli("datasets")
    assert r.rc == 0 and "fontdigits" in r.out and "data.elastic_alpha" in r.out

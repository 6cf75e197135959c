"""Tests of the datasets (vaelab.data) and of how data.* config keys reach them.

Every expectation is independent of the code under test: images are re-rendered by explicit
loops, distributions are compared with scipy.stats pmfs, bundled data with scikit-learn, and
file data with arrays the tests write themselves.
"""

import gzip
import itertools
import struct
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from vaelab.config import DataConfig, load_config
from vaelab.data import DATASETS, load_data
from vaelab.errors import UserError

ALL_DATASETS = {"points", "squares", "squares-test", "digits", "mnist", "fashion-mnist", "array", "images", "fontdigits", "sprites"}
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------------------------------------
# helpers


def build(name, *overrides):
    """The dataset that `--set data.name=<name> --set <overrides>` describes."""
    cfg = load_config(overrides=[f"data.name={name}", *overrides])
    return load_data(cfg.data)


def render_block_ref(x, y, size, block):
    """Brute force: a block×block square of ones covering rows y−(b−1)//2 … y−(b−1)//2+b−1 (and
    the same for columns around x), clipped at the borders. For odd b it is centred exactly; for
    even b the extra row/column lies after the centre."""
    out = np.zeros((len(x), 1, size, size), np.float32)
    lo = (block - 1) // 2
    for i in range(len(x)):
        for r in range(int(y[i]) - lo, int(y[i]) - lo + block):
            for c in range(int(x[i]) - lo, int(x[i]) - lo + block):
                if 0 <= r < size and 0 <= c < size:
                    out[i, 0, r, c] = 1.0
    return out


def render_squares_ref(s, grid, square):
    """Brute force: square k (row-major: row k // grid, column k % grid) filled with s[:, k]."""
    s = np.asarray(s, np.float32)
    out = np.zeros((s.shape[0], 1, grid * square, grid * square), np.float32)
    for k in range(grid * grid):
        r, c = divmod(k, grid)
        out[:, 0, r * square : (r + 1) * square, c * square : (c + 1) * square] = s[:, k, None, None]
    return out


def total_variation(samples, pmf):
    samples = np.asarray(samples).astype(np.int64)
    assert samples.min() >= 0 and samples.max() < len(pmf), "samples outside the support"
    freq = np.bincount(samples, minlength=len(pmf)) / len(samples)
    return 0.5 * np.abs(freq - pmf).sum()


def chisquare_p(samples, pmf):
    """Pearson chi-square p-value, cells with expected count < 5 pooled into one."""
    samples = np.asarray(samples).astype(np.int64)
    counts = np.bincount(samples, minlength=len(pmf)).astype(float)
    assert len(counts) == len(pmf), "samples outside the support"
    expected = pmf / pmf.sum() * len(samples)
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp).pvalue


def binom_pmf(size, p):
    return stats.binom.pmf(np.arange(size), size - 1, p)


def uniform_pmf(size):
    return np.full(size, 1.0 / size)


def assert_marginal(samples, pmf):
    assert total_variation(samples, pmf) < 0.03
    assert chisquare_p(samples, pmf) > 1e-4


def idx_bytes(arr, code=0x08):
    """An IDX file: magic (0, 0, dtype code, ndim), big-endian uint32 dims, raw data."""
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.tobytes()


def write_idx_folder(folder, train_images, train_labels, test_images, test_labels, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (train_images, train_labels, test_images, test_labels)
    for name, arr in zip(IDX_NAMES, arrays):
        data = idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def small_mnist(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (5, 4, 6), dtype=np.uint8),
        rng.integers(0, 10, 5).astype(np.uint8),
        rng.integers(0, 256, (3, 4, 6), dtype=np.uint8),
        rng.integers(0, 10, 3).astype(np.uint8),
    )


def as255(a):
    return np.asarray(a, np.float64) / 255.0


# ---------------------------------------------------------------------------------------------
# points


@pytest.fixture(scope="module")
def points_default():
    return build("points")  # default n (20000), default params, seed 0


def test_points_defaults_shapes_and_types(points_default):
    d = points_default
    assert len(d) == 20000
    assert d.images.dtype == torch.float32 and tuple(d.images.shape) == (20000, 1, 24, 24)
    assert d.factors.dtype == torch.float32 and tuple(d.factors.shape) == (20000, 2)
    assert d.factor_names == ("x", "y")
    assert d.labels is None
    assert d.name == "points"
    f = d.factors.numpy()
    assert np.array_equal(f, np.round(f)) and f.min() >= 0 and f.max() <= 23
    assert set(np.unique(d.images.numpy())) == {0.0, 1.0}


def test_points_default_images_match_brute_force_render(points_default):
    d = points_default.subset(slice(0, 1500))
    f = d.factors.numpy()
    assert np.array_equal(d.images.numpy(), render_block_ref(f[:, 0], f[:, 1], 24, 3))


@pytest.mark.parametrize(
    "overrides, size, block",
    [
        (["data.block=1"], 24, 1),
        (["data.block=2"], 24, 2),
        (["data.block=4"], 24, 4),
        (["data.block=5", "data.size=10", "data.variant=uniform"], 10, 5),
        (["data.block=6", "data.size=9", "data.variant=uniform"], 9, 6),
        (["data.block=7", "data.size=7", "data.variant=uniform"], 7, 7),
        (["data.size=5", "data.variant=uniform"], 5, 3),
    ],
)
def test_points_images_match_brute_force_render_for_params(overrides, size, block):
    d = build("points", "data.n=400", "data.seed=3", *overrides)
    assert tuple(d.images.shape) == (400, 1, size, size)
    f = d.factors.numpy()
    assert f.min() >= 0 and f.max() <= size - 1
    assert np.array_equal(d.images.numpy(), render_block_ref(f[:, 0], f[:, 1], size, block))


@pytest.mark.parametrize("block", [2, 3, 4, 5])
def test_points_interior_block_is_full_and_covers_its_centre(block):
    # Independent of the even-block convention: away from the borders the lit pixels form one
    # full block×block square that contains the centre pixel.
    d = build("points", "data.n=300", f"data.block={block}", "data.variant=uniform", "data.seed=1")
    imgs, f = d.images.numpy()[:, 0], d.factors.numpy().astype(int)
    checked = 0
    for img, (x, y) in zip(imgs, f):
        if block <= x <= 23 - block and block <= y <= 23 - block:
            rows, cols = np.nonzero(img)
            assert img.sum() == block * block
            assert rows.max() - rows.min() == block - 1 and cols.max() - cols.min() == block - 1
            assert img[y, x] == 1.0
            checked += 1
    assert checked > 50


def test_points_x_is_the_column_and_y_the_row():
    d = build("points", "data.n=200", "data.block=1", "data.variant=uniform", "data.seed=5")
    for img, (x, y) in zip(d.images.numpy()[:, 0], d.factors.numpy().astype(int)):
        assert np.argwhere(img).tolist() == [[y, x]]


def test_points_binomial_marginals_and_means(points_default):
    f = points_default.factors.numpy()
    x, y = f[:, 0], f[:, 1]
    assert_marginal(x, binom_pmf(24, 0.3))
    assert_marginal(y, binom_pmf(24, 0.8))
    # standard errors are about 0.016 and 0.014
    assert abs(x.mean() - 23 * 0.3) < 0.07
    assert abs(y.mean() - 23 * 0.8) < 0.07
    assert abs(x.var() - 23 * 0.3 * 0.7) < 0.2
    assert abs(y.var() - 23 * 0.8 * 0.2) < 0.2
    # the checks discriminate: the marginals are not the swapped binomials nor uniform
    assert total_variation(x, binom_pmf(24, 0.8)) > 0.5
    assert total_variation(y, uniform_pmf(24)) > 0.3


def test_points_p_x_p_y_and_size():
    d = build("points", "data.n=20000", "data.size=16", "data.p_x=0.55", "data.p_y=0.1", "data.seed=7")
    assert tuple(d.images.shape) == (20000, 1, 16, 16)
    f = d.factors.numpy()
    assert_marginal(f[:, 0], binom_pmf(16, 0.55))
    assert_marginal(f[:, 1], binom_pmf(16, 0.1))
    assert abs(f[:, 0].mean() - 15 * 0.55) < 0.07
    assert abs(f[:, 1].mean() - 15 * 0.1) < 0.07


@pytest.mark.parametrize(
    "variant, x_pmf, y_pmf",
    [
        ("uniform", uniform_pmf(24), uniform_pmf(24)),
        ("uniform-x", uniform_pmf(24), binom_pmf(24, 0.8)),
        ("uniform-y", binom_pmf(24, 0.3), uniform_pmf(24)),
    ],
)
def test_points_uniform_variants(variant, x_pmf, y_pmf):
    d = build("points", f"data.variant={variant}", "data.seed=11")
    f = d.factors.numpy()
    assert len(f) == 20000
    assert_marginal(f[:, 0], x_pmf)
    assert_marginal(f[:, 1], y_pmf)
    for col, pmf in ((0, x_pmf), (1, y_pmf)):
        if np.allclose(pmf, 1 / 24):
            assert f[:, col].min() == 0 and f[:, col].max() == 23
            assert abs(f[:, col].mean() - 11.5) < 0.15


def test_points_bimodal_is_the_two_thirds_one_third_mixture():
    d = build("points", "data.variant=bimodal", "data.seed=13")
    f = d.factors.numpy().astype(np.float64)
    x, y = f[:, 0], f[:, 1]
    k = np.arange(24)
    mix_x = 2 / 3 * stats.binom.pmf(k, 23, 0.3) + 1 / 3 * stats.binom.pmf(k, 23, 0.7)
    mix_y = 2 / 3 * stats.binom.pmf(k, 23, 0.8) + 1 / 3 * stats.binom.pmf(k, 23, 0.2)
    assert_marginal(x, mix_x)
    assert_marginal(y, mix_y)
    assert total_variation(x, binom_pmf(24, 0.3)) > 0.2  # really a mixture
    assert abs(x.mean() - 23 * (2 / 3 * 0.3 + 1 / 3 * 0.7)) < 0.1
    # one mixture component per image (not per coordinate): Cov(x, y) = π(1−π)·Δμx·Δμy
    cov = 2 / 9 * (23 * 0.3 - 23 * 0.7) * (23 * 0.8 - 23 * 0.2)  # ≈ −28.2
    assert abs(np.cov(x, y)[0, 1] - cov) < 1.5  # standard error ≈ 0.3
    # and the images still match the render
    sub = slice(0, 500)
    assert np.array_equal(d.images.numpy()[sub], render_block_ref(x[sub], y[sub], 24, 3))


def test_points_bimodal_with_custom_p():
    d = build("points", "data.variant=bimodal", "data.p_x=0.1", "data.p_y=0.5", "data.size=12", "data.seed=2")
    f = d.factors.numpy()
    k = np.arange(12)
    assert_marginal(f[:, 0], 2 / 3 * stats.binom.pmf(k, 11, 0.1) + 1 / 3 * stats.binom.pmf(k, 11, 0.9))
    assert_marginal(f[:, 1], stats.binom.pmf(k, 11, 0.5))


@pytest.mark.parametrize(
    "p_x, p_y, rows, cols",
    [(0, 0, slice(0, 2), slice(0, 2)), (1, 1, slice(22, 24), slice(22, 24)), (0, 1, slice(22, 24), slice(0, 2))],
)
def test_points_border_clipping_lights_a_corner(p_x, p_y, rows, cols):
    d = build("points", "data.n=5", f"data.p_x={p_x}", f"data.p_y={p_y}")
    expected = np.zeros((24, 24), np.float32)
    expected[rows, cols] = 1.0
    for img in d.images.numpy()[:, 0]:
        assert np.array_equal(img, expected)
    assert d.images.sum().item() == 5 * 4


def test_points_edge_centre_lights_a_clipped_strip():
    # x = 0, y = 23 with block 5: columns 0..2 (3 wide), rows 21..23 (3 high)
    d = build("points", "data.n=2", "data.p_x=0", "data.p_y=1", "data.block=5")
    expected = np.zeros((24, 24), np.float32)
    expected[21:24, 0:3] = 1.0
    assert np.array_equal(d.images.numpy()[0, 0], expected)


def test_points_seed_determinism():
    a = build("points", "data.n=500", "data.seed=4")
    b = build("points", "data.n=500", "data.seed=4")
    c = build("points", "data.n=500", "data.seed=5")
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.factors, c.factors)
    assert not torch.equal(a.images, c.images)


def test_points_through_a_bare_data_config():
    d = load_data(DataConfig(name="points", n=10, seed=0))
    assert tuple(d.images.shape) == (10, 1, 24, 24)


@pytest.mark.parametrize(
    "override",
    ["data.block=0", "data.block=25", "data.size=0", "data.p_x=1.5", "data.p_y=-0.1", "data.variant=gaussian", "data.p_x=abc"],
)
def test_points_invalid_params(override):
    with pytest.raises(UserError):
        build("points", "data.n=3", override)


# ---------------------------------------------------------------------------------------------
# squares


def test_squares_default_shape():
    d = build("squares", "data.n=50")
    assert d.images.dtype == torch.float32 and tuple(d.images.shape) == (50, 1, 21, 21)
    assert d.factors.dtype == torch.float32 and tuple(d.factors.shape) == (50, 9)
    assert d.factor_names == tuple(f"s{i}" for i in range(9))
    assert len(build("squares")) == 10000


@pytest.mark.parametrize("grid, square, mu", [(3, 7, 0.0), (2, 5, 1.0), (4, 3, -2.0), (1, 6, 0.5)])
def test_squares_noise_free_render_is_exact(grid, square, mu):
    d = build("squares", "data.n=200", "data.noise_var=0", f"data.grid={grid}", f"data.square={square}", f"data.mu={mu}")
    s = d.factors.numpy()
    assert s.shape == (200, grid * grid)
    assert (s > 0).all() and (s < 1).all()
    assert np.array_equal(d.images.numpy(), render_squares_ref(s, grid, square))
    # each square is constant
    imgs = d.images.numpy()[:, 0]
    for k in range(grid * grid):
        r, c = divmod(k, grid)
        block = imgs[:, r * square : (r + 1) * square, c * square : (c + 1) * square]
        assert (block == block[:, :1, :1]).all()


@pytest.mark.parametrize("noise_var", [0.25, 0.04])
def test_squares_noise_has_the_set_variance(noise_var):
    overrides = [] if noise_var == 0.25 else [f"data.noise_var={noise_var}"]  # 0.25 is the default
    d = build("squares", "data.n=500", "data.seed=2", *overrides)
    s = d.factors.numpy()
    assert (s > 0).all() and (s < 1).all()  # the factors stay noise-free
    resid = d.images.numpy().astype(np.float64) - render_squares_ref(s, 3, 7)
    m = resid.size  # 220,500 values
    assert abs(resid.mean()) < 4 * np.sqrt(noise_var / m)
    assert abs(resid.var() / noise_var - 1) < 0.02  # relative standard error ≈ 0.003
    # independent per pixel: neighbouring residuals uncorrelated
    r = resid[:, 0]
    assert abs(np.corrcoef(r[:, :, :-1].ravel(), r[:, :, 1:].ravel())[0, 1]) < 0.02
    # and per image (not one noise field shared by all images)
    assert abs(np.corrcoef(r[:-1].ravel(), r[1:].ravel())[0, 1]) < 0.02


@pytest.mark.parametrize("mu", [2.0, 0.0, -1.5])
def test_squares_latents_are_standard_normal_around_mu(mu):
    overrides = [] if mu == 0.0 else [f"data.mu={mu}"]
    d = build("squares", "data.n=3000", "data.noise_var=0", "data.seed=9", *overrides)
    s = d.factors.numpy().astype(np.float64)
    z = np.log(s) - np.log1p(-s)  # logit
    assert abs(z.mean() - mu) < 0.04  # standard error ≈ 0.006
    assert abs(z.var() - 1) < 0.05
    assert np.allclose(z.mean(0), mu, atol=0.1)  # every coordinate
    corr = np.corrcoef(z.T)
    assert np.abs(corr - np.eye(9)).max() < 0.08  # independent coordinates
    assert stats.kstest(z.ravel() - mu, "norm").pvalue > 1e-4


def test_squares_seed_determinism():
    a = build("squares", "data.n=40", "data.seed=1")
    b = build("squares", "data.n=40", "data.seed=1")
    c = build("squares", "data.n=40", "data.seed=2")
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.factors, c.factors) and not torch.equal(a.images, c.images)


@pytest.mark.parametrize(
    "override", ["data.grid=0", "data.square=0", "data.noise_var=-0.1", "data.mu=x", "data.mu=nan", "data.noise_var=inf", "data.noise_var=nan"]
)
def test_squares_invalid_params(override):
    with pytest.raises(UserError):
        build("squares", "data.n=3", override)


# ---------------------------------------------------------------------------------------------
# squares-test


def test_squares_test_enumerates_every_combination_once():
    d = build("squares-test")
    assert len(d) == 3**9 == 19683
    assert tuple(d.images.shape) == (19683, 1, 21, 21)
    assert d.factors.dtype == torch.float32
    rows = Counter(tuple(round(float(v), 6) for v in row) for row in d.factors.numpy())
    assert rows == Counter(itertools.product((0.1, 0.5, 0.9), repeat=9))
    assert np.array_equal(d.images.numpy(), render_squares_ref(d.factors.numpy(), 3, 7))  # noise-free
    assert np.allclose(np.unique(d.images.numpy()), [0.1, 0.5, 0.9])


@pytest.mark.parametrize("grid, square, count", [(2, 7, 81), (2, 4, 81), (1, 5, 3)])
def test_squares_test_smaller_grids(grid, square, count):
    d = build("squares-test", f"data.grid={grid}", f"data.square={square}")
    assert tuple(d.images.shape) == (count, 1, grid * square, grid * square)
    rows = sorted(tuple(round(float(v), 6) for v in row) for row in d.factors.numpy())
    assert rows == sorted(itertools.product((0.1, 0.5, 0.9), repeat=grid * grid))
    assert np.array_equal(d.images.numpy(), render_squares_ref(d.factors.numpy(), grid, square))


def test_squares_test_subset_and_limits():
    a = build("squares-test", "data.grid=2", "data.n=20", "data.seed=3")
    b = build("squares-test", "data.grid=2", "data.n=20", "data.seed=3")
    c = build("squares-test", "data.grid=2", "data.n=20", "data.seed=4")
    assert len(a) == 20 and torch.equal(a.factors, b.factors) and not torch.equal(a.factors, c.factors)
    rows = [tuple(round(float(v), 6) for v in row) for row in a.factors.numpy()]
    assert len(set(rows)) == 20 and set(rows) <= set(itertools.product((0.1, 0.5, 0.9), repeat=4))
    with pytest.raises(UserError):
        build("squares-test", "data.grid=2", "data.n=82")
    with pytest.raises(UserError):
        build("squares-test", "data.grid=4")  # 3^16 images: refused


# ---------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    return load_digits()


def test_digits_match_sklearn(sk_digits):
    d = build("digits")
    assert len(d) == 1797 and tuple(d.images.shape) == (1797, 1, 8, 8)
    assert d.images.dtype == torch.float32
    x = d.images.numpy()
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.allclose(x[:, 0], sk_digits.images / 16.0, atol=1e-7)
    assert d.labels.dtype == torch.int64
    assert np.array_equal(d.labels.numpy(), sk_digits.target)
    assert set(d.labels.tolist()) == set(range(10))


def test_digits_subsample_is_seeded_and_faithful(sk_digits):
    full = sk_digits.images.reshape(1797, 64) / 16.0
    a = build("digits", "data.n=100", "data.seed=3")
    b = build("digits", "data.n=100", "data.seed=3")
    c = build("digits", "data.n=100", "data.seed=4")
    assert len(a) == 100
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    # every picked image is a distinct original image, with its own label, in the original order
    flat = a.images.numpy().reshape(100, 64).astype(np.float64)
    index = []
    for img, label in zip(flat, a.labels.numpy()):
        hits = np.nonzero(np.abs(full - img).max(1) < 1e-6)[0]
        hits = [h for h in hits if sk_digits.target[h] == label and h not in index and (not index or h > index[-1])]
        assert hits, "a subsampled image is not in the original data with that label"
        index.append(hits[0])
    assert len(set(index)) == 100
    with pytest.raises(UserError):
        build("digits", "data.n=1798")


# ---------------------------------------------------------------------------------------------
# mnist / fashion-mnist (IDX files)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_reads_both_splits(tmp_path, name, gz):
    tri, trl, tei, tel = small_mnist()
    folder = write_idx_folder(tmp_path / "m", tri, trl, tei, tel, gz=gz)
    d = build(name, f"data.path={folder}")
    assert d.name == name
    assert d.images.dtype == torch.float32 and tuple(d.images.shape) == (5, 1, 4, 6)
    np.testing.assert_allclose(d.images.numpy()[:, 0], as255(tri), rtol=0, atol=1e-7)
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == trl.tolist()
    t = build(name, f"data.path={folder}", "data.split=test")
    assert tuple(t.images.shape) == (3, 1, 4, 6)
    np.testing.assert_allclose(t.images.numpy()[:, 0], as255(tei), rtol=0, atol=1e-7)
    assert t.labels.tolist() == tel.tolist()


def test_idx_extreme_values_and_mixed_plain_and_gz(tmp_path):
    tri = np.array([[[0, 255], [128, 1]]], np.uint8)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(tri)))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([9], np.uint8)))
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(tri))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([0], np.uint8))))
    d = build("mnist", f"data.path={folder}")
    assert d.images.numpy()[0, 0, 0].tolist() == [0.0, 1.0]
    assert abs(d.images[0, 0, 1, 0].item() - 128 / 255) < 1e-7
    assert d.labels.tolist() == [9]
    assert build("mnist", f"data.path={folder}", "data.split=test").labels.tolist() == [0]


@pytest.mark.parametrize("missing", range(4))
def test_idx_missing_file_names_all_four(tmp_path, missing):
    folder = write_idx_folder(tmp_path / "m", *small_mnist(), gz=missing % 2 == 1)
    for f in folder.iterdir():
        if f.name.startswith(IDX_NAMES[missing]):
            f.unlink()
    with pytest.raises(UserError) as e:
        build("mnist", f"data.path={folder}")
    msg = str(e.value)
    for name in IDX_NAMES:
        assert name in msg
    assert msg.split("missing:")[-1].strip() == IDX_NAMES[missing]


def test_idx_missing_folder(tmp_path):
    with pytest.raises(UserError) as e:
        build("fashion-mnist", f"data.path={tmp_path / 'nowhere'}")
    for name in IDX_NAMES:
        assert name in str(e.value)


def _corrupt_cases():
    tri, trl, tei, tel = small_mnist()
    good = idx_bytes(tri)
    return {
        "truncated data": ("train-images-idx3-ubyte", good[:-1]),
        "padded data": ("train-images-idx3-ubyte", good + b"\x00"),
        "truncated header": ("train-images-idx3-ubyte", good[:10]),
        "empty file": ("train-images-idx3-ubyte", b""),
        "bad magic dtype": ("train-images-idx3-ubyte", b"\x00\x00\x07\x03" + good[4:]),
        "bad magic zeros": ("train-labels-idx1-ubyte", b"\x01\x00\x08\x01" + idx_bytes(trl)[4:]),
        "gzip but no .gz": ("train-images-idx3-ubyte", gzip.compress(good)),
        "labels count": ("train-labels-idx1-ubyte", idx_bytes(trl[:4])),
        "labels ndim": ("train-labels-idx1-ubyte", idx_bytes(trl.reshape(5, 1))),
        "images ndim": ("train-images-idx3-ubyte", idx_bytes(tri.reshape(5, 24))),
        "int16 images": ("train-images-idx3-ubyte", idx_bytes(tri.astype(">i2"), code=0x0B)),
        "float labels": ("train-labels-idx1-ubyte", idx_bytes(trl.astype(">f4"), code=0x0D)),
        "not gzip .gz": ("train-images-idx3-ubyte.gz", b"this is not gzip data"),
        "truncated .gz": ("train-images-idx3-ubyte.gz", gzip.compress(good)[:-6]),
        "bad crc .gz": ("train-images-idx3-ubyte.gz", _flip(gzip.compress(good), -8)),
        "corrupt deflate .gz": ("train-images-idx3-ubyte.gz", _flip(gzip.compress(bytes(range(256)) * 4), 12, 13)),
        # 2^22 · 2^21 · 2^21 = 2^64 images·pixels and no data: the size check must not overflow
        "dims overflow": ("train-images-idx3-ubyte", bytes([0, 0, 8, 3]) + struct.pack(">III", 2**22, 2**21, 2**21)),
    }


def _flip(data, *positions):
    b = bytearray(data)
    for p in positions:
        b[p] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize("case", list(_corrupt_cases()))
def test_idx_corrupt_files_raise_user_error(tmp_path, case):
    filename, data = _corrupt_cases()[case]
    folder = write_idx_folder(tmp_path / "m", *small_mnist())
    base = filename.removesuffix(".gz")
    (folder / base).unlink()
    (folder / filename).write_bytes(data)
    with pytest.raises(UserError):
        build("mnist", f"data.path={folder}")


def test_idx_split_must_be_train_or_test(tmp_path):
    folder = write_idx_folder(tmp_path / "m", *small_mnist())
    with pytest.raises(UserError):
        build("mnist", f"data.path={folder}", "data.split=valid")


def test_idx_subsample(tmp_path):
    # images encode their own index, so the subset can be checked against the labels
    n = 40
    tri = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 9, 1).reshape(n, 3, 3)
    trl = np.arange(n, dtype=np.uint8)
    folder = write_idx_folder(tmp_path / "m", tri, trl, tri[:2], trl[:2])
    a = build("mnist", f"data.path={folder}", "data.n=10", "data.seed=1")
    b = build("mnist", f"data.path={folder}", "data.n=10", "data.seed=1")
    c = build("mnist", f"data.path={folder}", "data.n=10", "data.seed=2")
    assert len(a) == 10 and torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)
    lab = a.labels.numpy()
    assert (np.diff(lab) > 0).all() and lab.min() >= 0 and lab.max() < n
    np.testing.assert_allclose(a.images.numpy()[:, 0, 1, 1], lab / 255.0, atol=1e-7)
    assert len(build("mnist", f"data.path={folder}", f"data.n={n}")) == n
    with pytest.raises(UserError):
        build("mnist", f"data.path={folder}", f"data.n={n + 1}")


# ---------------------------------------------------------------------------------------------
# array (.npy / .npz)


def test_array_npy_uint8_nhw(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (6, 5, 7), dtype=np.uint8)
    np.save(tmp_path / "a.npy", arr)
    d = build("array", f"data.path={tmp_path / 'a.npy'}")
    assert d.images.dtype == torch.float32 and tuple(d.images.shape) == (6, 1, 5, 7)
    np.testing.assert_allclose(d.images.numpy()[:, 0], as255(arr), rtol=0, atol=1e-7)
    assert d.labels is None and d.factors is None and d.name == "array"


def test_array_npz_with_labels_and_factors(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.random((5, 2, 4, 6)).astype(np.float32)
    labels = np.array([3, 1, 4, 1, 5], np.int32)
    factors = rng.normal(size=(5, 3))
    np.savez(tmp_path / "a.npz", images=images, labels=labels, factors=factors)
    d = build("array", f"data.path={tmp_path / 'a.npz'}")
    assert np.array_equal(d.images.numpy(), images)
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == labels.tolist()
    assert d.factors.dtype == torch.float32 and np.allclose(d.factors.numpy(), factors, atol=1e-6)
    assert d.factor_names == ("f0", "f1", "f2")


def test_array_compressed_npz_and_1d_factors(tmp_path):
    images = np.random.default_rng(2).random((4, 3, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "a.npz", images=images, factors=np.arange(4.0))
    d = build("array", f"data.path={tmp_path / 'a.npz'}")
    assert np.array_equal(d.images.numpy()[:, 0], images)
    assert d.factors.numpy().tolist() == [[0.0], [1.0], [2.0], [3.0]]


def test_array_nhwc_is_transposed(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, (4, 8, 9, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", arr)
    d = build("array", f"data.path={tmp_path / 'a.npy'}")
    assert tuple(d.images.shape) == (4, 3, 8, 9)
    x = d.images.numpy()
    for i, c, h, w in [(0, 0, 0, 0), (1, 2, 7, 8), (3, 1, 4, 2), (2, 0, 5, 6)]:
        assert abs(x[i, c, h, w] - arr[i, h, w, c] / 255.0) < 1e-7
    np.testing.assert_allclose(x, as255(arr.transpose(0, 3, 1, 2)), atol=1e-7)


def test_array_nchw_stays(tmp_path):
    arr = np.random.default_rng(4).random((4, 3, 8, 9)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    assert np.array_equal(build("array", f"data.path={tmp_path / 'a.npy'}").images.numpy(), arr)


def test_array_uint16_and_bool(tmp_path):
    u16 = np.array([[[0, 65535], [32768, 1]]], np.uint16)
    np.save(tmp_path / "u.npy", u16)
    d = build("array", f"data.path={tmp_path / 'u.npy'}")
    np.testing.assert_allclose(d.images.numpy()[0, 0], u16[0] / 65535.0, atol=1e-7)
    b = np.array([[[True, False], [False, True]]])
    np.save(tmp_path / "b.npy", b)
    assert build("array", f"data.path={tmp_path / 'b.npy'}").images.numpy()[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_array_key(tmp_path):
    arr = np.random.default_rng(5).random((3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "a.npz", pics=arr, labels=np.arange(3))
    d = build("array", f"data.path={tmp_path / 'a.npz'}", "data.key=pics")
    assert np.array_equal(d.images.numpy()[:, 0], arr) and d.labels.tolist() == [0, 1, 2]
    with pytest.raises(UserError) as e:
        build("array", f"data.path={tmp_path / 'a.npz'}")
    assert "pics" in str(e.value) and "data.key" in str(e.value)
    with pytest.raises(UserError):
        build("array", f"data.path={tmp_path / 'a.npz'}", "data.key=nothing")


def _npy_bytes(arr, allow_pickle=False):
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npz_bytes(compressed=False, **arrays):
    import io

    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


GOOD = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)


def _npy_with_header(header):
    """A .npy file whose header dict is `header` (possibly malformed), then 48 data bytes."""
    h = header.encode("latin1")
    h += b" " * (64 - (10 + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + bytes(48)


def _bad_crc_npz():
    data = bytearray(_npz_bytes(images=GOOD))
    data[data.find(b"\x93NUMPY") + 150] ^= 0xFF  # inside the stored array's data
    return bytes(data)


ARRAY_ERRORS = {
    "truncated npy": ("a.npy", _npy_bytes(GOOD)[:-10]),
    "truncated npy header": ("a.npy", _npy_bytes(GOOD)[:20]),
    "empty npy": ("a.npy", b""),
    "garbage": ("a.npy", b"hello, this is not numpy data at all"),
    "npy header not a dict": ("a.npy", _npy_with_header("not a dict")),
    "npy header unclosed": ("a.npy", _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3")),
    "truncated npz": ("a.npz", _npz_bytes(images=GOOD)[:200]),
    "npz missing its end": ("a.npz", _npz_bytes(images=GOOD)[:-5]),
    "npz bad crc": ("a.npz", _bad_crc_npz()),
    "ndim 2": ("a.npy", _npy_bytes(np.zeros((3, 4), np.uint8))),
    "ndim 1": ("a.npy", _npy_bytes(np.zeros(3, np.float32))),
    "ndim 5": ("a.npy", _npy_bytes(np.zeros((3, 1, 4, 4, 2), np.uint8))),
    "no images": ("a.npy", _npy_bytes(np.zeros((0, 4, 4), np.uint8))),
    "object npy": ("a.npy", _npy_bytes(np.array([None, 1, "x"], dtype=object), allow_pickle=True)),
    "object npz": ("a.npz", _npz_bytes(images=np.array([[[None]]], dtype=object))),
    "complex": ("a.npy", _npy_bytes(np.zeros((3, 4, 4), np.complex64))),
    "int64": ("a.npy", _npy_bytes(np.zeros((3, 4, 4), np.int64))),
    "int8": ("a.npy", _npy_bytes(np.zeros((3, 4, 4), np.int8))),
    "nan": ("a.npy", _npy_bytes(np.where(GOOD == 7, np.nan, 0.5).astype(np.float32))),
    "inf": ("a.npz", _npz_bytes(images=np.full((2, 3, 3), np.inf))),
    "missing key": ("a.npz", _npz_bytes(other=GOOD)),
    "labels too short": ("a.npz", _npz_bytes(images=GOOD, labels=np.arange(3))),
    "labels too long": ("a.npz", _npz_bytes(images=GOOD, labels=np.arange(5))),
    "labels float": ("a.npz", _npz_bytes(images=GOOD, labels=np.arange(4.0))),
    "labels 2d": ("a.npz", _npz_bytes(images=GOOD, labels=np.arange(8).reshape(4, 2))),
    "factors wrong length": ("a.npz", _npz_bytes(images=GOOD, factors=np.zeros((3, 2)))),
    "factors nan": ("a.npz", _npz_bytes(images=GOOD, factors=np.full((4, 2), np.nan))),
}


@pytest.mark.parametrize("case", list(ARRAY_ERRORS))
def test_array_errors(tmp_path, case):
    filename, data = ARRAY_ERRORS[case]
    (tmp_path / filename).write_bytes(data)
    with pytest.raises(UserError):
        build("array", f"data.path={tmp_path / filename}")


def test_array_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError):
        build("array", f"data.path={tmp_path / 'nothing.npz'}")
    with pytest.raises(UserError):
        build("array", f"data.path={tmp_path}")


def test_array_subsample(tmp_path):
    n = 30
    images = np.repeat(np.arange(n, dtype=np.float32)[:, None], 4, 1).reshape(n, 2, 2)
    np.savez(tmp_path / "a.npz", images=images, labels=np.arange(n), factors=np.arange(n) * 10.0)
    a = build("array", f"data.path={tmp_path / 'a.npz'}", "data.n=7", "data.seed=0")
    b = build("array", f"data.path={tmp_path / 'a.npz'}", "data.n=7", "data.seed=0")
    c = build("array", f"data.path={tmp_path / 'a.npz'}", "data.n=7", "data.seed=1")
    assert len(a) == 7 and torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)
    lab = a.labels.numpy()
    assert (np.diff(lab) > 0).all()
    assert np.array_equal(a.images.numpy()[:, 0, 0, 0], lab.astype(np.float32))  # rows stay aligned
    assert np.array_equal(a.factors.numpy()[:, 0], lab * 10.0)
    with pytest.raises(UserError):
        build("array", f"data.path={tmp_path / 'a.npz'}", f"data.n={n + 1}")


# ---------------------------------------------------------------------------------------------
# images (folders of PNG)


def test_images_grayscale_in_filename_order(tmp_path):
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)
    arrays[0, 0, 0], arrays[1, 0, 0] = 0, 255
    folder = tmp_path / "png"
    folder.mkdir()
    names = ["c.png", "a.png", "b.png"]  # written out of order; read sorted by name
    for name, a in zip(names, arrays):
        Image.fromarray(a, "L").save(folder / name)
    (folder / "notes.txt").write_text("ignored")
    d = build("images", f"data.path={folder}")
    assert d.name == "images" and d.images.dtype == torch.float32
    assert tuple(d.images.shape) == (3, 1, 5, 7)
    np.testing.assert_allclose(d.images.numpy()[:, 0], as255(arrays[[1, 2, 0]]), rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("RGBA", 4)])
def test_images_colour(tmp_path, mode, channels):
    arrays = np.random.default_rng(1).integers(0, 256, (2, 6, 5, channels), dtype=np.uint8)
    folder = tmp_path / "png"
    folder.mkdir()
    for i, a in enumerate(arrays):
        Image.fromarray(a, mode).save(folder / f"{i}.png")
    d = build("images", f"data.path={folder}")
    assert tuple(d.images.shape) == (2, channels, 6, 5)
    x = d.images.numpy()
    assert abs(x[1, channels - 1, 5, 4] - arrays[1, 5, 4, channels - 1] / 255) < 1e-7
    np.testing.assert_allclose(x, as255(arrays.transpose(0, 3, 1, 2)), rtol=0, atol=1e-7)


def test_images_16_bit(tmp_path):
    arrays = np.random.default_rng(2).integers(0, 65536, (2, 4, 6)).astype(np.uint16)
    arrays[0, 0, 0], arrays[0, 0, 1] = 0, 65535
    folder = tmp_path / "png"
    folder.mkdir()
    for i, a in enumerate(arrays):
        im = Image.frombytes("I;16", (6, 4), a.astype("<u2").tobytes())
        im.save(folder / f"{i}.png")
    assert Image.open(folder / "0.png").mode in ("I;16", "I")
    d = build("images", f"data.path={folder}")
    assert tuple(d.images.shape) == (2, 1, 4, 6)
    np.testing.assert_allclose(d.images.numpy()[:, 0], arrays / 65535.0, rtol=0, atol=1e-7)


def _l(a=None, shape=(4, 4)):
    return Image.fromarray(np.zeros(shape, np.uint8) if a is None else a, "L")


@pytest.mark.parametrize(
    "case", ["mixed sizes", "mixed modes", "not a png", "truncated png", "empty folder", "only other files"]
)
def test_images_errors(tmp_path, case):
    folder = tmp_path / "png"
    folder.mkdir()
    if case != "empty folder" and case != "only other files":
        _l().save(folder / "a.png")
    if case == "mixed sizes":
        _l(shape=(4, 5)).save(folder / "b.png")
    elif case == "mixed modes":
        Image.fromarray(np.zeros((4, 4, 3), np.uint8), "RGB").save(folder / "b.png")
    elif case == "not a png":
        (folder / "b.png").write_bytes(b"this is text, not an image")
    elif case == "truncated png":
        _l(np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8), (64, 64)).save(folder / "b.png")
        data = (folder / "b.png").read_bytes()
        (folder / "b.png").write_bytes(data[: len(data) // 2])
        (folder / "a.png").unlink()
    elif case == "only other files":
        (folder / "a.txt").write_text("x")
        _l().save(folder / "a.jpg", format="PNG")
    with pytest.raises(UserError):
        build("images", f"data.path={folder}")


def test_images_path_must_be_a_folder(tmp_path):
    _l().save(tmp_path / "a.png")
    with pytest.raises(UserError):
        build("images", f"data.path={tmp_path / 'a.png'}")
    with pytest.raises(UserError):
        build("images", f"data.path={tmp_path / 'missing'}")


def test_images_subsample(tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    for i in range(12):
        _l(np.full((3, 3), i * 20, np.uint8)).save(folder / f"{i:02d}.png")
    a = build("images", f"data.path={folder}", "data.n=5", "data.seed=0")
    b = build("images", f"data.path={folder}", "data.n=5", "data.seed=0")
    c = build("images", f"data.path={folder}", "data.n=5", "data.seed=1")
    assert len(a) == 5 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    values = np.round(a.images.numpy()[:, 0, 0, 0] * 255 / 20).astype(int)
    assert (np.diff(values) > 0).all() and values.min() >= 0 and values.max() <= 11
    assert len(build("images", f"data.path={folder}")) == 12
    with pytest.raises(UserError):
        build("images", f"data.path={folder}", "data.n=13")


# ---------------------------------------------------------------------------------------------
# config-level


def test_config_squares_mu():
    cfg = load_config(overrides=["data.name=squares", "data.mu=2"])
    assert cfg.data.name == "squares"
    assert cfg.data.params.mu == 2.0 and isinstance(cfg.data.params.mu, float)
    assert cfg.data.params.grid == 3 and cfg.data.params.square == 7 and cfg.data.params.noise_var == 0.25
    d = load_data(DataConfig(name="squares", n=5, params=cfg.data.params))
    assert tuple(d.images.shape) == (5, 1, 21, 21)


def test_config_default_is_points():
    cfg = load_config()
    assert cfg.data.name == "points" and cfg.data.params.p_x == 0.3 and cfg.data.params.p_y == 0.8


def test_config_key_of_another_dataset_is_rejected_with_the_valid_keys():
    with pytest.raises(UserError) as e:
        load_config(overrides=["data.name=points", "data.mu=2"])
    msg = str(e.value)
    assert "data.mu" in msg
    for key in ("data.name", "data.n", "data.seed", "data.path", "data.size", "data.block", "data.p_x", "data.p_y", "data.variant"):
        assert key in msg
    assert "data.grid" not in msg


def test_config_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(UserError) as e:
        load_config(overrides=["data.name=cifar10"])
    for name in ALL_DATASETS:
        assert name in str(e.value)
    assert set(DATASETS) == ALL_DATASETS
    with pytest.raises(UserError) as e:
        load_data(DataConfig(name="cifar10"))
    for name in ALL_DATASETS:
        assert name in str(e.value)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "array", "images"])
def test_config_file_dataset_needs_a_path(name):
    with pytest.raises(UserError) as e:
        load_config(overrides=[f"data.name={name}"])
    assert "data.path" in str(e.value)


@pytest.mark.parametrize("name", ["points", "squares", "squares-test", "digits"])
def test_config_generated_datasets_need_no_path(name):
    assert load_config(overrides=[f"data.name={name}"]).data.path == ""


def test_config_negative_n_is_rejected():
    with pytest.raises(UserError):
        load_config(overrides=["data.n=-1"])


@pytest.mark.parametrize("name", ["points", "digits"])
def test_config_negative_seed_is_a_user_error(name):
    # numpy.random.default_rng refuses negative seeds; that must surface as a UserError
    # (at config time or at load time), not as a ValueError traceback
    with pytest.raises(UserError):
        load_data(load_config(overrides=[f"data.name={name}", "data.n=5", "data.seed=-1"]).data)

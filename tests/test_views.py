"""Latent views (`vaelab latent`, vaelab.latent): traversals, interpolation and embeddings against
hand-made models and known answers, active dims against a posterior with a known KL per dim, and
the verb end to end on tiny digits runs (the PNG tiles compared with decodes of hand-built codes).

Runs: 200 steps of the default fc2 (β = 0.05) on 300 8×8 digits, trained once per module for latent dims 2, 5
and 20, with one torch thread.
"""

from __future__ import annotations

import base64
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error
from PIL import Image
from torch import nn

from vaelab.checkpoint import load_run
from vaelab.data import load_data
from vaelab.latent import MAX_ROWS, TRAVERSAL, active_dims, embedding, interpolation, latent_means, traversals
from vaelab.models.vae import VAE

VIEWS = ["latent", "traversals", "interpolation", "reconstructions", "ood"]


class CodeModel:
    """A stand-in model: decode(z) is z itself as a (1, 1, L) image, so the output shows every code
    it was given."""

    deterministic = False

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim
        self.weight = torch.zeros(1)

    def parameters(self):
        return iter([self.weight])

    def decode(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        return z[:, None, None, :].clone()  # (B, 1, 1, L)


def fixed_posterior_vae(mu: list[float], logvar: list[float], pixels: int = 64) -> VAE:
    """A VAE whose encoder ignores x: q(z|x) = N(mu, diag(exp(logvar))) for every image."""
    latent = len(mu)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 2 * latent))
    decoder = nn.Sequential(nn.Linear(latent, pixels), nn.Unflatten(1, (1, 8, 8)))
    with torch.no_grad():
        encoder[1].weight.zero_()
        encoder[1].bias.copy_(torch.tensor([*mu, *logvar]))
    return VAE(encoder, decoder, latent, "gaussian").eval()


# ---------------------------------------------------------------------------------------------
# traversals


def test_each_traversal_row_varies_exactly_its_dim_over_the_values_and_keeps_the_others_at_the_reference():
    reference = torch.tensor([0.5, -1.25, 2.0, 0.75, -0.1])
    dims = [3, 0, 4]
    out = traversals(CodeModel(5), reference, dims)
    v = len(TRAVERSAL)
    assert v == 9 and torch.equal(TRAVERSAL, torch.tensor([-3.0, -2.25, -1.5, -0.75, 0.0, 0.75, 1.5, 2.25, 3.0]))
    assert out.shape == (len(dims) * v, 1, 1, 5)
    codes = out[:, 0, 0, :]
    for i, d in enumerate(dims):
        for j in range(v):
            expected = reference.clone()
            expected[d] = TRAVERSAL[j]
            assert torch.equal(codes[i * v + j], expected), (i, j)
    assert torch.equal(reference, torch.tensor([0.5, -1.25, 2.0, 0.75, -0.1]))  # not modified


def test_traversal_values_can_be_given_and_rows_follow_the_order_of_dims():
    codes = traversals(CodeModel(3), torch.zeros(3), [2, 1], values=torch.tensor([-1.0, 7.0]))[:, 0, 0, :]
    assert torch.equal(codes, torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 7.0], [0.0, -1.0, 0.0], [0.0, 7.0, 0.0]]))


def test_traversals_of_a_real_vae_are_its_decodes_of_the_hand_built_codes():
    torch.manual_seed(0)
    model = fixed_posterior_vae([0.0] * 4, [0.0] * 4)
    reference = torch.tensor([0.3, -0.2, 1.0, 0.0])
    rows = traversals(model, reference, [1])
    z = reference.repeat(9, 1)
    z[:, 1] = torch.linspace(-3, 3, 9)
    torch.testing.assert_close(rows, model.decode(z).detach())


# ---------------------------------------------------------------------------------------------
# interpolation


def test_interpolation_starts_at_mu_a_ends_at_mu_b_and_mixes_linearly_between():
    a, b = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-3.0, 4.0, 0.5])
    codes = interpolation(CodeModel(3), a, b)[:, 0, 0, :]
    assert codes.shape == (10, 3)
    assert torch.equal(codes[0], a) and torch.equal(codes[-1], b)
    for k in range(10):
        t = k / 9
        torch.testing.assert_close(codes[k], torch.tensor([1 - 4 * t, -2 + 6 * t, 0.5]), rtol=0, atol=1e-6)
    assert interpolation(CodeModel(3), a, b, steps=3)[1, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 0.5])


def test_interpolation_endpoints_of_a_real_vae_are_the_decodes_of_the_two_means():
    torch.manual_seed(1)
    model = fixed_posterior_vae([0.0] * 4, [0.0] * 4)
    a, b = torch.randn(4), torch.randn(4)
    out = interpolation(model, a, b, steps=5)
    assert out.shape == (5, 1, 8, 8)
    torch.testing.assert_close(out[0], model.decode(a[None])[0].detach())
    torch.testing.assert_close(out[-1], model.decode(b[None])[0].detach())
    torch.testing.assert_close(out[2], model.decode(((a + b) / 2)[None])[0].detach())


# ---------------------------------------------------------------------------------------------
# embedding


def test_a_one_dim_latent_is_drawn_against_the_image_index():
    mu = torch.tensor([[0.5], [-1.0], [2.0], [0.0]])
    xy, how = embedding(mu)
    np.testing.assert_array_equal(xy, [[0, 0.5], [1, -1.0], [2, 2.0], [3, 0.0]])
    assert "index" in how


def test_a_two_dim_latent_is_drawn_as_it_is():
    mu = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    xy, _ = embedding(mu)
    np.testing.assert_array_equal(xy, mu.double().numpy())


def three_clusters(n: int = 60, dim: int = 5) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(3)
    centres = 10.0 * torch.eye(dim)[:3]  # 10 apart (×√2), unit-variance clusters
    labels = np.arange(n) % 3
    return centres[labels] + torch.randn(n, dim, generator=g), labels


def test_more_dims_are_embedded_by_tsne_into_n_by_2_deterministically_for_a_seed():
    mu, labels = three_clusters()
    xy, how = embedding(mu, seed=4)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    assert "t-SNE" in how and "5-D" in how
    again, _ = embedding(mu, seed=4)
    np.testing.assert_array_equal(xy, again)
    # a known answer: well separated clusters stay separated (each point's nearest neighbour is its own)
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.diag(np.full(60, np.inf))
    assert (labels[d.argmin(1)] == labels).all()


def test_a_collapsed_posterior_is_drawn_not_embedded():
    # every image with the same code: t-SNE's PCA initialisation would divide by zero (and its
    # Barnes-Hut code crashed the process on the NaNs that followed)
    xy, how = embedding(torch.full((50, 16), 0.25))
    assert xy.shape == (50, 2) and np.isfinite(xy).all() and "collapsed" in how
    xy, how = embedding(torch.full((20, 4), float("nan")))
    assert np.isfinite(xy).all() and "collapsed" in how


def test_tsne_copes_with_a_handful_of_points():
    mu, _ = three_clusters(n=4)
    xy, _ = embedding(mu)  # perplexity must stay below the number of points
    assert xy.shape == (4, 2) and np.isfinite(xy).all()


# ---------------------------------------------------------------------------------------------
# active dims and latent means


def test_active_dims_are_the_dims_with_the_largest_mean_kl():
    # KL of N(m, e^v) from N(0, 1) per dim: ½(m² + e^v − 1 − v)
    mu = [0.0, 2.0, 0.1, 0.0, -3.0, 0.5, 0.0]
    logvar = [0.0, 0.0, 0.0, -4.0, 0.0, 0.0, 1.0]
    kl = [0.5 * (m * m + math.exp(v) - 1 - v) for m, v in zip(mu, logvar)]
    # by hand: 0, 2, 0.005, 1.509, 4.5, 0.125, 0.359
    assert sorted(range(7), key=lambda d: -kl[d])[:3] == [4, 1, 3]
    model = fixed_posterior_vae(mu, logvar)
    images = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert active_dims(model, images, limit=3) == [1, 3, 4]  # sorted
    assert active_dims(model, images, limit=5) == [1, 3, 4, 5, 6]
    assert active_dims(model, images, limit=7) == list(range(7))  # all of them when L ≤ limit
    assert active_dims(model, images) == list(range(7))


def test_active_dims_average_the_kl_over_the_images():
    """μ_d = w_d · x_0 (the first pixel), log σ² = 0: mean KL of dim d is ½ w_d² E[x_0²]; with
    w = (3, 0, −1, 0.5, 2) the order is 0, 4, 2, 3, 1."""
    w = torch.tensor([3.0, 0.0, -1.0, 0.5, 2.0])
    model = fixed_posterior_vae([0.0] * 5, [0.0] * 5)
    with torch.no_grad():
        model.encoder[1].weight[:5, 0] = w
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert active_dims(model, images, limit=2) == [0, 4]
    assert active_dims(model, images, limit=3) == [0, 2, 4]
    assert active_dims(model, images, limit=4) == [0, 2, 3, 4]


def test_at_most_max_rows_dims_are_traversed_by_default():
    model = fixed_posterior_vae([float(d) for d in range(20)], [0.0] * 20)
    assert MAX_ROWS == 16
    assert active_dims(model, torch.zeros(3, 1, 8, 8)) == list(range(4, 20))  # |μ| largest for the last 16


def test_latent_means_are_mu_of_every_image_in_batches():
    torch.manual_seed(2)
    model = fixed_posterior_vae([0.0] * 3, [0.0] * 3)
    with torch.no_grad():
        model.encoder[1].weight.normal_()
    x = torch.rand(150, 1, 8, 8, generator=torch.Generator().manual_seed(2))  # several reading batches on any device
    mu = latent_means(model, x)
    w, b = model.encoder[1].weight[:3].detach(), model.encoder[1].bias[:3].detach()
    torch.testing.assert_close(mu, x.flatten(1) @ w.T + b)


# ---------------------------------------------------------------------------------------------
# `vaelab latent` end to end

# β = 0.05 and lr 3e-3 so that 200 steps leave an informative latent (at β = 1 the posterior
# collapses onto the prior at this size, and every code decodes to nearly the same image)
TRAIN = ["--set", "data.name=digits", "--set", "data.n=300", "--set", "train.steps=200", "--set", "train.lr=3e-3",
         "--set", "loss.beta=0.05", "--set", "sample.n=4", "--quiet"]  # fmt: skip
TILE, PAD = 48, 1  # 8×8 digits are scaled ×6 in a grid, 1 pixel of padding between tiles


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, dict]:
    """latent dim → {dir, report before `vaelab latent`, its result}."""
    out = {}
    for latent in (2, 5, 20):
        d = tmp_path_factory.mktemp("latent") / f"run-{latent}"
        r = cli("train", *TRAIN, "--set", f"model.latent_dim={latent}", "--out", d)
        assert r.rc == 0, r.err
        before = (d / "report.html").read_text()
        out[latent] = {"dir": d, "before": before, "result": cli("latent", d)}
    return out


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def tile(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 8×8 image at (row, col) of a make_grid picture, back at its own resolution (uint8)."""
    top, left = PAD + row * (TILE + PAD), PAD + col * (TILE + PAD)
    return grid[top : top + TILE : 6, left : left + TILE : 6]


def as_pixels(images: torch.Tensor) -> np.ndarray:
    """(N, 1, 8, 8) in [0, 1] → uint8 (N, 8, 8) the way a PNG grid stores them."""
    return (images.detach().clamp(0, 1).numpy()[:, 0] * 255).round().astype(np.uint8)


def assert_tiles(grid: np.ndarray, images: torch.Tensor, positions: list[tuple[int, int]]) -> None:
    expected = as_pixels(images)
    for k, (r, c) in enumerate(positions):
        diff = np.abs(tile(grid, r, c).astype(int) - expected[k].astype(int)).max()
        assert diff <= 1, (r, c, diff)  # one grey level for rounding


@pytest.mark.parametrize("latent", [2, 5, 20])
def test_latent_writes_the_five_views_and_the_traversed_dims(runs, latent):
    run = runs[latent]
    assert run["result"].rc == 0, run["result"].err
    assert run["result"].err == ""
    d = run["dir"] / "latent"
    for name in VIEWS:
        assert (d / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
        assert f"{name}.png" in run["result"].out
    assert "report.html" in run["result"].out
    dims = [int(t) for t in (d / "traversal_dims.txt").read_text().split()]
    assert (d / "traversal_dims.txt").read_text().endswith("\n")
    if latent <= 16:
        assert dims == list(range(latent))
    else:  # the 16 dims of largest mean KL over the test images, by hand
        cfg, model = load_run(run["dir"])  # on the run's device, where `vaelab latent` measured it
        with torch.no_grad():
            mu, logvar = model.posterior_params(load_data(cfg.data).images.to(next(model.parameters()).device))
        kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).mean(0)
        assert dims == sorted(kl.argsort(descending=True)[:16].tolist())
        assert len(dims) == 16 and dims != list(range(16))  # a check that sees the choice


@pytest.mark.parametrize("latent", [2, 5, 20])
def test_the_pictures_are_the_models_decodes_of_hand_built_codes(runs, latent):
    run_dir = runs[latent]["dir"]
    cfg, model = load_run(run_dir)  # on the run's device; codes are built and pictures compared on the CPU
    device = next(model.parameters()).device
    encode = lambda images: model.posterior_params(images.to(device))[0].cpu()  # noqa: E731
    decode = lambda z: model.decode(z.to(device)).cpu()  # noqa: E731
    x = load_data(cfg.data).images  # digits are measured on their own images
    with torch.no_grad():  # the pictures below tell codes apart: the decoder depends on z
        spread = decode(encode(x[:2]))
    assert (spread[0] - spread[1]).abs().max() > 0.1
    dims = [int(t) for t in (run_dir / "latent" / "traversal_dims.txt").read_text().split()]
    with torch.no_grad():
        mu_a, mu_b = encode(x[:1])[0], encode(x[1:2])[0]
        # traversals: row i sets dim dims[i] to -3, -2.25, …, 3; the rest is the first image's mean
        z = torch.stack([torch.cat([mu_a[:d], torch.tensor([-3 + 0.75 * j]), mu_a[d + 1 :]]) for d in dims for j in range(9)])
        grid = read_png(run_dir / "latent" / "traversals.png")
        assert grid.shape == (len(dims) * (TILE + PAD) + PAD, 9 * (TILE + PAD) + PAD)
        assert_tiles(grid, decode(z), [(i, j) for i in range(len(dims)) for j in range(9)])
        # interpolation: 10 decodes in one row from the first image's mean to the second's
        grid = read_png(run_dir / "latent" / "interpolation.png")
        assert grid.shape == (TILE + 2 * PAD, 10 * (TILE + PAD) + PAD)
        ends = decode(torch.stack([mu_a, (5 * mu_a + 4 * mu_b) / 9, mu_b]))
        assert_tiles(grid, ends, [(0, 0), (0, 4), (0, 9)])
        # reconstructions: 16 test inputs in rows of 8, each row above its reconstructions
        grid = read_png(run_dir / "latent" / "reconstructions.png")
        assert grid.shape == (4 * (TILE + PAD) + PAD, 8 * (TILE + PAD) + PAD)
        recon = decode(encode(x[:16]))
        assert_tiles(grid, x[:16], [(2 * (k // 8), k % 8) for k in range(16)])
        assert_tiles(grid, recon, [(2 * (k // 8) + 1, k % 8) for k in range(16)])
    # ood: 8 noise images above what comes out
    ood = read_png(run_dir / "latent" / "ood.png")
    assert ood.shape == (2 * (TILE + PAD) + PAD, 8 * (TILE + PAD) + PAD)
    noise_in = np.stack([tile(ood, 0, k) for k in range(8)]).astype(float) / 255
    assert noise_in.std() > 0.2  # uniform noise: std 1/√12 ≈ 0.29


def test_the_run_report_gains_a_latent_space_section_embedding_every_view(runs):
    run = runs[5]
    assert "Latent space" not in run["before"]
    html = (run["dir"] / "report.html").read_text()
    assert html.count("<h3>Latent space</h3>") == 1
    section = html.split("<h3>Latent space</h3>", 1)[1]
    positions = []
    for name in VIEWS:
        uri = "data:image/png;base64," + base64.b64encode((run["dir"] / "latent" / f"{name}.png").read_bytes()).decode()
        assert uri in section, name
        positions.append(section.index(uri))
    assert positions == sorted(positions)  # in the documented order
    assert cli("report", run["dir"]).rc == 0  # a rebuilt report keeps it
    assert "<h3>Latent space</h3>" in (run["dir"] / "report.html").read_text()


def test_a_second_latent_run_with_the_same_seed_writes_the_same_pictures(runs, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(runs[2]["dir"], d)
    assert cli("latent", d).rc == 0
    for name in VIEWS:
        assert (d / "latent" / f"{name}.png").read_bytes() == (runs[2]["dir"] / "latent" / f"{name}.png").read_bytes(), name


def test_latent_of_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    user_error(cli("latent", tmp_path), "not a vaelab run folder")
    user_error(cli("latent", tmp_path / "missing"), "missing", "does not exist")
    assert not (tmp_path / "latent").exists() and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("args, needles", [(["--n", "-1"], ["--n", "-1"]), (["--n", "5000"], ["5000"]), (["--n", "x"], ["--n"])])
def test_bad_latent_arguments_are_one_line(runs, tmp_path, args, needles):
    d = tmp_path / "copy"
    shutil.copytree(runs[2]["dir"], d)
    shutil.rmtree(d / "latent")
    user_error(cli("latent", d, *args), *needles)
    assert not (d / "latent").exists() or not any((d / "latent").iterdir())


@pytest.mark.parametrize("latent, n", [(2, 1), (5, 1), (5, 2)])
def test_latent_of_one_or_two_test_images_works_or_is_one_line(runs, tmp_path, latent, n):
    d = tmp_path / "copy"
    shutil.copytree(runs[latent]["dir"], d)
    r = cli("latent", d, "--n", n)
    if r.rc == 2:
        user_error(r, "--n")
    else:
        assert r.rc == 0, r.err
        assert all((d / "latent" / f"{name}.png").is_file() for name in VIEWS)

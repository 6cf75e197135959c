"""Latent-recovery metrics (vaelab.metrics.latent) against closed forms and known answers."""

import math

import numpy as np
import pytest
import torch

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.data.synthetic import render_squares
from vaelab.metrics.latent import LinearMap, decoder_mse, fit_linear_map, pmi


def gaussian(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def per_square_means(images: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, 1, g·m, g·m) → (N, g²): the mean intensity of each square, row by row."""
    n, _, h, _ = images.shape
    m = h // grid
    return images.reshape(n, grid, m, grid, m).mean(dim=(2, 4)).reshape(n, grid * grid)


# ---------------------------------------------------------------------------------------------
# pmi: exact linear images, pure noise, and a known signal-to-noise ratio


def test_an_exact_linear_image_of_the_factors_has_zero_pmi():
    f = gaussian(1000, 4, seed=1)
    a, b = gaussian(4, 6, seed=2), gaussian(6, seed=3)
    z = f @ a + b
    fit = fit_linear_map(f[:500], z[:500])  # fit on one half, score the other
    torch.testing.assert_close(fit.weight, a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fit.bias, b, rtol=1e-5, atol=1e-5)
    held_out = pmi(fit, f[500:], z[500:])
    assert held_out["pmi"] < 1e-10
    assert held_out["pmi_r2"] == pytest.approx(1.0, abs=1e-10)


def test_an_independent_noise_representation_has_r2_near_zero_and_pmi_its_variance():
    sigma = 2.0
    f = gaussian(8000, 4, seed=1)
    z = sigma * gaussian(8000, 3, seed=2)  # independent of f
    fit = fit_linear_map(f[:4000], z[:4000])
    held_out = pmi(fit, f[4000:], z[4000:])
    assert abs(held_out["pmi_r2"]) < 0.05
    # the best linear map is the constant 0: the error is the noise variance (± 2% sampling error)
    assert held_out["pmi"] == pytest.approx(sigma**2, rel=0.05)


def test_pmi_r2_of_a_linear_signal_plus_noise_is_its_explained_fraction():
    """z = f A + ε, f ~ N(0, I), ε ~ N(0, σ² I): R² over all dims is ‖A‖²_F / (‖A‖²_F + L σ²),
    and the held-out MSE is σ² (the linear map cannot predict the noise)."""
    sigma, n = 0.5, 20000
    f = gaussian(n, 3, seed=4)
    a = torch.tensor([[1.0, 0.0], [0.5, -1.0], [0.0, 0.25]])
    z = f @ a + sigma * gaussian(n, 2, seed=5) + torch.tensor([3.0, -1.0])
    fit = fit_linear_map(f[: n // 2], z[: n // 2])
    held_out = pmi(fit, f[n // 2 :], z[n // 2 :])
    signal = float(a.pow(2).sum())
    assert held_out["pmi_r2"] == pytest.approx(signal / (signal + 2 * sigma**2), abs=0.01)
    assert held_out["pmi"] == pytest.approx(sigma**2, rel=0.05)


def test_pmi_r2_of_a_constant_representation_is_nan_not_a_crash():
    f = gaussian(300, 4, seed=1)
    for c in (0.0, 0.1, -3.7):
        z = torch.full((300, 2), c)
        fit = fit_linear_map(f, z)
        out = pmi(fit, f, z)
        assert math.isnan(out["pmi_r2"])
        assert out["pmi"] < 1e-12  # a constant is fitted exactly (by the intercept)
        # sgd too: no variance is no variance, however it was fitted
        assert math.isnan(pmi(fit_linear_map(f, z, "sgd"), f, z)["pmi_r2"])


# ---------------------------------------------------------------------------------------------
# fit_linear_map


def test_lstsq_is_the_normal_equations_solution_with_an_intercept():
    rng = np.random.default_rng(0)
    f = rng.uniform(0, 1, size=(400, 5))
    z = f @ rng.normal(size=(5, 3)) + rng.normal(size=3) + 0.3 * rng.normal(size=(400, 3))  # not exactly linear
    x = np.hstack([f, np.ones((400, 1))])
    sol = np.linalg.solve(x.T @ x, x.T @ z)  # (F + 1, L): weights, then the intercept
    fit = fit_linear_map(torch.from_numpy(f).float(), torch.from_numpy(z).float())
    assert fit.weight.shape == (5, 3) and fit.bias.shape == (3,)
    np.testing.assert_allclose(fit.weight.numpy(), sol[:5], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fit.bias.numpy(), sol[5], rtol=1e-4, atol=1e-4)
    # and the map applies as f @ W + b
    np.testing.assert_allclose(fit(torch.from_numpy(f)).numpy(), x @ sol, rtol=1e-4, atol=1e-4)


def easy_problem(seed: int, centred: bool, n: int = 3000):
    """z = f A + 0.5 + N(0, 0.1²) with 4 factors, Gaussian (centred) or uniform on [0, 1]."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 4)) if centred else rng.uniform(0, 1, size=(n, 4))
    a = rng.normal(size=(4, 3))
    z = f @ a + 0.5 + 0.1 * rng.normal(size=(n, 3))
    return torch.from_numpy(f).float(), torch.from_numpy(z).float()


def test_sgd_is_at_or_above_lstsq_on_the_fit_data_and_close_on_an_easy_problem():
    f, z = easy_problem(1, centred=True)
    exact, sgd = fit_linear_map(f, z, "lstsq"), fit_linear_map(f, z, "sgd")  # sgd: 3 epochs, batch 32
    mse_exact, mse_sgd = pmi(exact, f, z)["pmi"], pmi(sgd, f, z)["pmi"]
    assert mse_exact == pytest.approx(0.01, rel=0.1)  # the noise variance
    assert mse_sgd >= mse_exact * (1 - 1e-9)  # least squares is the minimum on the fit data
    assert mse_sgd < 1.05 * mse_exact  # centred, well-conditioned: measured within 0.2%
    # deterministic in its seed, different with another
    again = fit_linear_map(f, z, "sgd")
    assert torch.equal(again.weight, sgd.weight) and torch.equal(again.bias, sgd.bias)
    assert not torch.equal(fit_linear_map(f, z, "sgd", seed=1).weight, sgd.weight)


def test_sgd_stops_short_of_lstsq_on_uncentred_factors():
    """The study's 3 epochs from zero do not reach the optimum when the factors are all positive
    (intercept and weights are correlated): MSE measured 8-10x lstsq's on this problem."""
    f, z = easy_problem(1, centred=False)
    mse_exact, mse_sgd = pmi(fit_linear_map(f, z), f, z)["pmi"], pmi(fit_linear_map(f, z, "sgd"), f, z)["pmi"]
    assert mse_sgd > 3 * mse_exact


def test_sgd_with_more_epochs_approaches_lstsq():
    f = gaussian(2000, 3, seed=1)
    z = f @ gaussian(3, 2, seed=2) + 0.1 * gaussian(2000, 2, seed=3)
    exact = pmi(fit_linear_map(f, z), f, z)["pmi"]
    gaps = [pmi(fit_linear_map(f, z, "sgd", epochs=e), f, z)["pmi"] - exact for e in (1, 10)]
    assert gaps[0] >= -1e-9 and gaps[1] >= -1e-9
    assert gaps[1] < gaps[0] and gaps[1] < 0.01 * exact + 1e-4


def test_unknown_fit_method_is_refused():
    f = gaussian(10, 2)
    with pytest.raises(ValueError, match="lstsq, sgd"):
        fit_linear_map(f, f, "ridge")


# ---------------------------------------------------------------------------------------------
# decoder_mse


def squares_case(n=50, grid=2, square=3, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.05, 0.95, size=(n, grid * grid)).astype(np.float32)
    return torch.from_numpy(s), torch.from_numpy(render_squares(s, grid, square))


def test_decoder_mse_is_zero_when_the_decoder_is_the_generator():
    s, images = squares_case()
    # P a permutation: decoding undoes it exactly, so G(f) and decode(P(f)) are the same image
    perm = torch.eye(4)[[2, 0, 3, 1]]
    fit = LinearMap(perm, torch.zeros(4))
    decode = lambda z: torch.from_numpy(render_squares((z @ perm.T).numpy(), 2, 3))  # noqa: E731
    assert decoder_mse(decode, fit, s, images) == 0.0
    # a fitted general linear map, inverted by the decoder: zero up to float rounding
    a, b = gaussian(4, 4, seed=7, dtype=torch.float64) + 3 * torch.eye(4, dtype=torch.float64), torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    z = (s.double() @ a + b).float()
    fit = fit_linear_map(s, z)
    inverse = torch.linalg.inv(a)
    decode = lambda z: torch.from_numpy(render_squares(((z.double() - b) @ inverse).float().numpy(), 2, 3))  # noqa: E731
    assert decoder_mse(decode, fit, s, images) < 1e-8


def test_decoder_mse_of_a_blank_decoder_is_the_mean_image_energy():
    """decode → 0: the error is the mean over images of Σ pixel²; a square of side m at intensity
    s holds m² pixels, so that is m² · mean_i Σ_j s_ij²."""
    s, images = squares_case(n=50, grid=2, square=3)
    fit = fit_linear_map(s, s)
    blank = lambda z: torch.zeros(len(z), 1, 6, 6)  # noqa: E731
    expected = 9 * float(s.double().pow(2).sum(1).mean())
    assert decoder_mse(blank, fit, s, images) == pytest.approx(expected, rel=1e-6)
    # batches: any split gives the same mean (one ragged last batch included)
    for bs in (1, 7, 50, 4096):
        assert decoder_mse(blank, fit, s, images, batch_size=bs) == pytest.approx(expected, rel=1e-6)
    # and a decoder off by a constant c everywhere: c² per pixel, 36 pixels
    offset = lambda z: torch.from_numpy(render_squares(z.numpy(), 2, 3)) + 0.25  # noqa: E731
    for bs in (3, 4096):
        assert decoder_mse(offset, fit, s, images, batch_size=bs) == pytest.approx(36 * 0.25**2, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# vaelab's own data


def test_per_square_means_of_squares_test_recover_the_factors():
    cfg = load_config(overrides={"data.name": "squares-test", "data.grid": 2})
    data = load_data(cfg.data)
    assert len(data) == 81 and data.factors.shape == (81, 4) and data.shape == (1, 14, 14)
    latents = per_square_means(data.images, 2)  # an exact "encoder"
    even, odd = slice(0, None, 2), slice(1, None, 2)
    fit = fit_linear_map(data.factors[even], latents[even])
    held_out = pmi(fit, data.factors[odd], latents[odd])
    assert held_out["pmi_r2"] > 0.999 and held_out["pmi"] < 1e-10
    # teeth: an encoder that forgets which square is which (sorted intensities) is no linear image
    scrambled = latents.sort(dim=1).values
    fit = fit_linear_map(data.factors[even], scrambled[even])
    assert pmi(fit, data.factors[odd], scrambled[odd])["pmi_r2"] < 0.9


def test_per_square_means_of_noisy_squares_have_the_noise_variance_as_pmi():
    """squares adds N(0, σ²) per pixel: a square's mean over m² pixels is s + N(0, σ²/m²), so the
    best linear map is the identity, the held-out MSE is σ²/m² and R² = 1 − (σ²/m²) / Var(mean)."""
    noise_var, square, n = 0.25, 7, 4000
    cfg = load_config(overrides={"data.name": "squares", "data.grid": 2, "data.n": n, "data.noise_var": noise_var})
    data = load_data(cfg.data)
    latents = per_square_means(data.images, 2)
    half = n // 2
    fit = fit_linear_map(data.factors[:half], latents[:half])
    out = pmi(fit, data.factors[half:], latents[half:])
    per_square = noise_var / square**2
    assert out["pmi"] == pytest.approx(per_square, rel=0.05)
    var = float(latents[half:].double().var(0, unbiased=False).mean())
    assert out["pmi_r2"] == pytest.approx(1 - per_square / var, abs=0.01)
    torch.testing.assert_close(fit.weight, torch.eye(4), rtol=0, atol=0.05)

"""Evaluation tests: the log-likelihoods by hand, the ELBO and the importance-weighted bound against
log p(x) integrated numerically over a 1-D latent, the reconstruction error by hand, and
`vaelab evaluate` end to end on tiny runs (digits, with labels; points, without), with every bad
input as one line and exit code 2.

The CLI runs in-process with one torch thread. The digits run is trained and evaluated once per
module and never modified: tests that write evaluation.json again work on a copy. Feature nets go
to a temporary VAELAB_CACHE, never to ~/.cache.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error

from vaelab.checkpoint import load_run
from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.data import test_data_config as data_test_config  # not collected as a test under this name
from vaelab.evaluate import METRICS, likelihood_bounds, log_likelihood, posterior_diagnostics, recon_mse
from vaelab.metrics import feature_net, fid, prdc
from vaelab.models import build_model
from vaelab.sample import sample
from vaelab.errors import UserError
from vaelab.train import train

ALL_KEYS = {
    "n_test", "dataset", "recon_mse", "elbo", "nll_iw", "nll_iw_k", "feature_net", "fid",
    "precision", "recall", "density", "coverage",
    "class_tv", "class_entropy", "class_entropy_ref", "class_entropy_max",
    "nll_iw_q50", "nll_iw_q90", "nll_iw_q99",
    "active_units", "posterior_kl", "aggregate_kl", "aggregate_mmd", "mutual_info",
}  # fmt: skip
DIGITS_RUN = ["--set", "data.name=digits", "--set", "model.name=fc2", "--set", "train.steps=60", "--set", "model.latent_dim=4"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test's feature nets go to a temporary cache, never to ~/.cache/vaelab."""
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path_factory.getbasetemp() / "featurenet-cache"))


def tiny_vae(likelihood: str = "gaussian", latent_dim: int = 3, seed: int = 0, dtype=torch.float32):
    cfg = load_config(None, overrides={"model.name": "fc2", "model.latent_dim": latent_dim, "model.hidden": [32, 16], "model.likelihood": likelihood})
    torch.manual_seed(seed)
    return build_model(cfg, (1, 8, 8)).to(dtype).eval()


@pytest.fixture(scope="module")
def digit_images():
    return load_data(load_config(None, overrides={"data.name": "digits"}).data).images


# ---------------------------------------------------------------------------------------------
# log_likelihood.


def test_bernoulli_log_likelihood_is_minus_the_summed_bce_by_hand():
    # σ(0) = 1/2, σ(log 3) = 3/4, σ(−log 3) = 1/4
    logits = torch.tensor([[0.0, math.log(3)], [-math.log(3), 0.0]]).view(2, 1, 1, 2)
    x = torch.tensor([[1.0, 0.5], [0.0, 0.25]]).view(2, 1, 1, 2)
    # −BCE(l, t) = t log σ(l) + (1 − t) log(1 − σ(l))
    first = math.log(0.5) + (0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    second = math.log(0.75) + (0.25 * math.log(0.5) + 0.75 * math.log(0.5))
    got = log_likelihood("bernoulli", logits, x)
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx([first, second], rel=1e-6)


def test_gaussian_log_likelihood_is_minus_sse_minus_the_constant_by_hand():
    # fixed variance ½: −log p(x|z) = Σ (x − σ(l))² + (D/2) log π, D = 3 pixels
    logits = torch.tensor([[0.0, math.log(3), -math.log(3)], [0.0, 0.0, 0.0]]).view(2, 1, 1, 3)
    x = torch.tensor([[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]]).view(2, 1, 1, 3)
    sse_first = 0.25 + 0.0625 + 0.0625
    got = log_likelihood("gaussian", logits, x)
    assert got.tolist() == pytest.approx([-(sse_first + 1.5 * math.log(math.pi)), -(1.5 * math.log(math.pi))], rel=1e-6)
    # and it is the density of N(σ(l), ½) per pixel, summed
    normal = torch.distributions.Normal(torch.sigmoid(logits), math.sqrt(0.5)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(got, normal, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# posterior_diagnostics.


class KnownEncoder(torch.nn.Module):
    """q(z|x) with known active dims: z_0 and z_2 are twice the first two pixels, z_1 and z_3 are
    0.3 for every image; σ = 0.5 everywhere."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # where the diagnostics look for the device

    def posterior_params(self, x, y=None):
        p = 2 * x.flatten(1)[:, :2]
        fixed = torch.full_like(p[:, 0], 0.3)
        mu = torch.stack([p[:, 0], fixed, p[:, 1], fixed], 1)  # (B, 4)
        return mu, torch.full_like(mu, 2 * math.log(0.5))


def test_posterior_diagnostics_of_an_encoder_with_known_active_dims():
    x = torch.rand(600, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    figures, per_dim = posterior_diagnostics(KnownEncoder(), x, seed=1)
    assert figures["active_units"] == 2  # Var(2u) = 1/3 for u ~ U(0, 1); the fixed dims do not vary
    mu = np.stack([2 * x[:, 0, 0, 0].numpy(), np.full(600, 0.3), 2 * x[:, 0, 0, 1].numpy(), np.full(600, 0.3)], 1).astype(np.float64)
    want = 0.5 * (mu**2 + 0.25 - 1 - math.log(0.25)).mean(0)  # KL(N(μ, ¼) ‖ N(0, 1)) per dim
    assert per_dim == pytest.approx(want.tolist(), rel=1e-6) and figures["posterior_kl"] == pytest.approx(want.sum(), rel=1e-6)
    assert figures["aggregate_kl"] == math.inf  # the fixed dims make the fit of the means singular
    assert 0 < figures["mutual_info"] < math.log(600) and figures["aggregate_mmd"] > 0.05  # codes in [0, 2] and at 0.3, not N(0, I)


# likelihood_bounds.


def test_likelihood_bounds_is_deterministic_per_seed_and_leaves_the_global_rng_alone(digit_images):
    model, x = tiny_vae(), digit_images[:64]
    torch.manual_seed(99)
    before = torch.get_rng_state()
    a = likelihood_bounds(model, x, k=8, seed=3)
    b = likelihood_bounds(model, x, k=8, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert a == b and set(a) == {"elbo", "nll_iw", "nll_iw_q50", "nll_iw_q90", "nll_iw_q99"}
    c = likelihood_bounds(model, x, k=8, seed=4)
    assert c["nll_iw"] != a["nll_iw"] and c["elbo"] != a["elbo"]
    model.train()
    likelihood_bounds(model, x[:4], k=2)
    assert model.training  # the mode is restored


def test_nll_iw_tightens_as_k_grows_and_stays_below_minus_elbo(digit_images):
    model, x = tiny_vae(latent_dim=4), digit_images[:300]
    nll = {k: likelihood_bounds(model, x, k=k, seed=0)["nll_iw"] for k in (1, 16, 256)}
    elbo = likelihood_bounds(model, x, k=256, seed=0)["elbo"]
    assert nll[1] > nll[16] > nll[256], nll
    assert nll[256] <= -elbo + 1e-6
    assert nll[16] <= -elbo + 1e-6


def test_nll_iw_with_one_sample_is_the_negative_elbo_in_expectation(digit_images):
    # k = 1: −log w = −log p(x|z) − log p(z) + log q(z|x), whose mean over z ~ q is −ELBO. With 64
    # images, each 40 times, both estimates average 2,560 draws; they differ only by the KL's
    # Monte-Carlo estimate against its closed form.
    model = tiny_vae(latent_dim=4)
    x = digit_images[:64].repeat(40, 1, 1, 1)
    b = likelihood_bounds(model, x, k=1, seed=5)
    assert b["nll_iw"] == pytest.approx(-b["elbo"], abs=0.05)
    wide = likelihood_bounds(model, x, k=64, seed=5)
    assert wide["nll_iw"] < b["nll_iw"] - 0.05  # the bound does tighten


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_bounds_match_log_px_integrated_over_a_one_dimensional_latent(likelihood, digit_images):
    """latent_dim = 1: log p(x) = log ∫ p(x|z) N(z; 0, 1) dz and the exact ELBO
    ∫ q(z) log p(x|z) dz − KL(q ‖ p) by the trapezoid rule on a fine grid. The encoder is set to a
    fixed q = N(1, 1.5²), away from the prior and wider than the posterior (bounded weights), so
    that both log p(z) and log q(z|x) matter and the ELBO's gap is large (≥ 0.75 nats); the
    decoder's input weights are scaled ×3 so that the posterior is informative. Tolerances are the
    estimators' own: the standard error of the mean (and, for nll_iw, the delta-method bias
    Var(w)/2k𝔼[w]²) from moments of the weights on the same grid, times 5."""
    qm, qs = 1.0, 1.5
    model = tiny_vae(likelihood, latent_dim=1, dtype=torch.float64)
    with torch.no_grad():
        model.decoder[0].weight.mul_(3.0)
        head = model.encoder[-1]  # Linear(16, 2): [μ, log σ²]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([qm, 2 * math.log(qs)]))
    x = digit_images[:5].double()
    if likelihood == "bernoulli":
        x = (x > 0.5).double()

    z = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    with torch.no_grad():
        logits = model.decoder(z[:, None])  # (G, 1, 8, 8)
        log_lik = torch.stack([log_likelihood(likelihood, logits, xi.expand_as(logits)) for xi in x])  # (5, G)
    log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    log_q = -0.5 * ((z - qm) / qs) ** 2 - math.log(qs * math.sqrt(2 * math.pi))
    q = log_q.exp()

    def integrate(f: torch.Tensor) -> torch.Tensor:
        return torch.trapezoid(f, z, dim=-1)

    joint = log_lik + log_prior  # log p(x, z)
    top = joint.max(1, keepdim=True).values
    log_px = top[:, 0] + integrate((joint - top).exp()).log()  # (5,)
    kl = math.log(1 / qs) + (qs**2 + qm**2) / 2 - 0.5
    elbo = integrate(q * log_lik) - kl  # (5,)
    sd_recon = (integrate(q * log_lik**2) - integrate(q * log_lik) ** 2).sqrt()  # sd of log p(x|z), z ~ q
    rel_w = (2 * joint - log_q - 2 * log_px[:, None]).exp()  # p(x,z)²/(q p(x)²): ∫ = 1 + Var(w/𝔼w)
    var_w = integrate(rel_w) - 1  # (5,)

    # the exact quantities obey Jensen, with a visible gap (q is not the posterior)
    gap = log_px - elbo
    assert (gap > 0.5).all(), gap

    k = 5000
    for i in range(len(x)):
        iw = likelihood_bounds(model, x[i : i + 1], k=k, seed=i)["nll_iw"]
        tol = 5 * math.sqrt(var_w[i].item() / k) + var_w[i].item() / (2 * k)
        assert tol < gap[i].item() / 2  # the check can tell log p(x) from the ELBO
        assert iw == pytest.approx(-log_px[i].item(), abs=tol), (i, iw, -log_px[i].item(), tol)

        copies = 3000  # the ELBO is one z per image: average it over copies of the image
        one_z = likelihood_bounds(model, x[i : i + 1].repeat(copies, 1, 1, 1), k=1, seed=10 + i, batch_size=4096)
        tol = 5 * sd_recon[i].item() / math.sqrt(copies)
        assert one_z["elbo"] == pytest.approx(elbo[i].item(), abs=tol), (i, one_z["elbo"], elbo[i].item(), tol)
        assert -one_z["elbo"] > -log_px[i].item() - tol


# ---------------------------------------------------------------------------------------------
# recon_mse.


def test_recon_mse_is_the_mean_squared_error_through_the_posterior_mean(digit_images):
    model, x = tiny_vae(latent_dim=4), digit_images[:50]
    with torch.no_grad():
        h = model.encoder(x)
        x_hat = 1 / (1 + torch.exp(-model.decoder(h[:, :4])))  # decode μ, never a sample
    expected = ((x_hat - x) ** 2).sum().item() / x.numel()
    assert recon_mse(model, x) == pytest.approx(expected, rel=1e-6)
    assert recon_mse(model, x) == recon_mse(model, x)  # no sampling


# ---------------------------------------------------------------------------------------------
# `vaelab evaluate` on a digits run.


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 60-step fc2 run on digits, evaluated with --n 0 --k 8 (the run folder is never modified
    afterwards); also the CLI's stdout and the cache the feature net went to."""
    root = tmp_path_factory.mktemp("digits-run")
    run, cache = root / "run", root / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(cache))
        r = cli("train", *DIGITS_RUN, "--out", run, "--quiet")
        assert r.rc == 0, r.err
        r = cli("evaluate", run, "--n", "0", "--k", "8")
        assert r.rc == 0, r.err
    return run, r, cache


def copy_run(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_evaluate_writes_every_metric_for_a_labelled_run(digits_run):
    run, r, cache = digits_run
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == ALL_KEYS
    assert ev["n_test"] == 1797 and ev["dataset"] == "digits" and ev["nll_iw_k"] == 8
    assert isinstance(ev["feature_net"], str) and ev["feature_net"].startswith("LeNet") and "digits" in ev["feature_net"]
    numbers = {k: v for k, v in ev.items() if k not in ("dataset", "feature_net")}
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers.values()), numbers
    assert ev["recon_mse"] > 0 and ev["fid"] > 0
    assert all(0 <= ev[m] <= 1 for m in ("precision", "recall", "coverage", "recon_mse", "class_tv"))
    assert ev["density"] >= 0
    assert ev["nll_iw"] <= -ev["elbo"] + 0.1
    assert 0 <= ev["class_entropy"] <= ev["class_entropy_max"] == pytest.approx(math.log(10))
    hist = np.bincount(load_data(load_config(None, overrides={"data.name": "digits"}).data).labels.numpy(), minlength=10) / 1797
    assert ev["class_entropy_ref"] == pytest.approx(float(-(hist * np.log(hist)).sum()), rel=1e-9)
    assert len(list(cache.glob("lenet-*.safetensors"))) == 1
    assert f"wrote {run / 'evaluation.json'}" in r.out and "fid" in r.out and r.err == ""


def test_evaluate_figures_are_the_metric_functions_on_the_run(digits_run):
    run, _, cache = digits_run
    ev = json.loads((run / "evaluation.json").read_text())
    cfg, model = load_run(run)
    train = load_data(cfg.data)
    x = train.images  # digits has no separate test split: the run's own images
    assert ev["recon_mse"] == pytest.approx(recon_mse(model, x), rel=1e-6)
    bounds = likelihood_bounds(model, x, k=8, seed=0)
    assert ev["elbo"] == pytest.approx(bounds["elbo"], rel=1e-6) and ev["nll_iw"] == pytest.approx(bounds["nll_iw"], rel=1e-6)
    net = feature_net(train.images, train.labels, source="digits", cache=cache)  # read from the run's cache
    assert net.name == ev["feature_net"]
    s = cfg.sample
    fake = sample(model, len(x), delta=s.delta, denoise=s.denoise, seed=s.seed)
    real_f, fake_f = net(x), net(fake)
    assert ev["fid"] == pytest.approx(fid(real_f, fake_f), rel=1e-6)
    expected = prdc(real_f, fake_f, k=5)
    assert {m: ev[m] for m in expected} == pytest.approx(expected, abs=1e-9)


def test_evaluate_adds_an_evaluation_section_to_the_report(digits_run):
    run, _, _ = digits_run
    html = (run / "report.html").read_text()
    assert "<h3>Evaluation</h3>" in html
    section = html[html.index("<h3>Evaluation</h3>") :]
    assert "nll_iw" in section and "fid" in section and "class_tv" in section
    assert "LeNet" in section  # the features are named


def test_evaluate_metrics_writes_only_those(digits_run, tmp_path, monkeypatch):
    run = copy_run(digits_run[0], tmp_path)
    cache = digits_run[2]
    monkeypatch.setenv("VAELAB_CACHE", str(cache))  # the feature net the first evaluation trained
    r = cli("evaluate", run, "--k", "4", "--metrics", "recon_mse,elbo")
    assert r.rc == 0, r.err
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == {"n_test", "dataset", "recon_mse", "elbo"}  # nll_iw_k only with nll_iw
    html = (run / "report.html").read_text()
    assert "<h3>Evaluation</h3>" in html and "LeNet" not in html  # the table was rewritten

    r = cli("evaluate", run, "--metrics", " class , fid ")
    assert r.rc == 0, r.err
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == {"n_test", "dataset", "feature_net", "fid", "class_tv", "class_entropy", "class_entropy_ref", "class_entropy_max"}
    first = json.loads((digits_run[0] / "evaluation.json").read_text())
    assert {m: ev[m] for m in ev if m not in ("n_test", "dataset")} == {m: first[m] for m in ev if m not in ("n_test", "dataset")}
    assert len(list(cache.glob("lenet-*.safetensors"))) == 1  # read from the cache, not trained again


def test_evaluate_n_takes_a_subset(digits_run, tmp_path):
    run = copy_run(digits_run[0], tmp_path)
    r = cli("evaluate", run, "--n", "100", "--k", "2", "--metrics", "recon_mse,nll_iw")
    assert r.rc == 0, r.err
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["n_test"] == 100 and set(ev) == {"n_test", "dataset", "recon_mse", "nll_iw", "nll_iw_k", "nll_iw_q50", "nll_iw_q90", "nll_iw_q99"}


# ---------------------------------------------------------------------------------------------
# Runs without labels.


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("points-run") / "run"
    r = cli("train", "--set", "data.name=points", "--set", "data.n=256", "--set", "model.name=fc2", "--set", "train.steps=20", "--out", run, "--quiet")
    assert r.rc == 0, r.err
    return run


def test_evaluate_without_labels_leaves_out_the_feature_metrics(points_run, tmp_path, monkeypatch):
    run = copy_run(points_run, tmp_path)
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    r = cli("evaluate", run, "--k", "16")
    assert r.rc == 0, r.err
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == {"n_test", "dataset", "recon_mse", "elbo", "nll_iw", "nll_iw_k", "nll_iw_q50", "nll_iw_q90", "nll_iw_q99", *METRICS["posterior"].columns}
    assert ev["n_test"] == 2000 and ev["dataset"] == "points"  # 2,000 new draws of the generator
    assert all(math.isfinite(ev[m]) for m in ("recon_mse", "elbo", "nll_iw"))
    assert ev["nll_iw"] <= -ev["elbo"]
    assert "<h3>Evaluation</h3>" in (run / "report.html").read_text()
    assert not (tmp_path / "cache").exists()  # no feature net was trained


@pytest.mark.parametrize("metrics", ["fid", "prdc", "class", "recon_mse,class"])
def test_evaluate_feature_metrics_without_labels_is_a_user_error(points_run, tmp_path, metrics):
    run = copy_run(points_run, tmp_path)
    line = user_error(cli("evaluate", run, "--metrics", metrics), "points", "label")
    assert "digits" in line  # names a labelled dataset to use instead
    assert not (run / "evaluation.json").exists()


def test_evaluate_an_autoencoder_leaves_out_the_likelihood_bounds(tmp_path):
    run = tmp_path / "ae"
    r = cli("train", "--set", "data.name=points", "--set", "data.n=128", "--set", "model.name=ae", "--set", "train.steps=5", "--out", run, "--quiet")
    assert r.rc == 0, r.err
    r = cli("evaluate", run, "--n", "200")
    assert r.rc == 0, r.err
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == {"n_test", "dataset", "recon_mse"} and ev["n_test"] == 200
    cfg, model = load_run(run)
    assert model.deterministic
    test = load_data(data_test_config(cfg.data, 200)).images  # 200 new draws of the generator
    assert test.shape == (200, 1, 24, 24) and not torch.equal(test[:128], load_data(cfg.data).images)
    assert ev["recon_mse"] == pytest.approx(recon_mse(model, test), rel=1e-6)


def test_evaluate_measures_a_sweep_metric_as_a_sweep_would(points_run, tmp_path):
    """One registry: `evaluate --metrics pmi,neg_elbo` gives the figures a sweep cell of the same
    run gets (vaelab.experiments.sweep.measure on the same test set), and only those."""
    from vaelab.evaluate import test_config
    from vaelab.experiments.sweep import measure

    run = copy_run(points_run, tmp_path)
    r = cli("evaluate", run, "--metrics", "pmi,neg_elbo", "--n", "300")
    assert r.rc == 0, r.err
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == {"n_test", "dataset", "pmi", "pmi_r2", "neg_elbo"}
    cfg, model = load_run(run)  # on the device the CLI read it on
    cfg = cfg.override({"sweep.metrics": ["pmi", "neg_elbo"], "sweep.test_n": 300})
    assert measure(model, load_data(test_config(cfg)), cfg) == pytest.approx({k: ev[k] for k in ("pmi", "pmi_r2", "neg_elbo")}, rel=1e-6)


def test_the_recovery_metrics_of_a_run_are_the_functions_on_its_test_codes(points_run, tmp_path):
    from vaelab.latent import latent_means
    from vaelab.metrics.recovery import factor_r2, irs, mcc

    run = copy_run(points_run, tmp_path)
    r = cli("evaluate", run, "--metrics", "mcc,factor_r2,irs", "--n", "300")
    assert r.rc == 0, r.err
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == {"n_test", "dataset", "mcc", "mcc_spearman", "factor_r2", "factor_r2_nonlinear", "irs"}
    cfg, model = load_run(run)
    test = load_data(data_test_config(cfg.data, 300))  # the points' block centres (y, x) are its factors
    mu = latent_means(model, test.images)
    assert ev["mcc"] == pytest.approx(mcc(mu, test.factors)) and ev["mcc_spearman"] == pytest.approx(mcc(mu, test.factors, method="spearman"))
    assert ev["irs"] == pytest.approx(irs(mu, test.factors))
    order = torch.randperm(300, generator=torch.Generator().manual_seed(cfg.data.seed))  # the 80/20 split pmi uses
    fit, held = order[:240], order[240:]
    assert ev["factor_r2"] == pytest.approx(factor_r2(mu[fit], test.factors[fit], mu[held], test.factors[held]).mean())
    assert 0 <= ev["factor_r2_nonlinear"] <= 1


def test_mcc_is_refused_when_the_factors_outnumber_the_latents(tmp_path):
    run = tmp_path / "one-latent"
    assert cli("train", "--set", "data.name=points", "--set", "data.n=64", "--set", "model.latent_dim=1", "--set", "train.steps=2", "--out", run, "--quiet").rc == 0
    user_error(cli("evaluate", run, "--metrics", "mcc"), "--metrics mcc", "2 factors", "model.latent_dim = 1")
    assert cli("evaluate", run, "--metrics", "irs,factor_r2", "--n", "100").rc == 0  # they need no matching


@pytest.mark.parametrize(
    "metrics, needles",
    [
        ("pmi", ["--metrics pmi", "ground-truth factors", "digits"]), ("elbo,nll_iw", []), ("disentanglement", ["renders chosen factors"]),
        ("rare", ["skewed"]), ("udr", ["--metrics udr", "different seeds", "sweep.seeds >= 2"]),
    ],  # fmt: skip
)
def test_evaluate_refuses_a_metric_whose_needs_the_run_lacks(digits_run, tmp_path, metrics, needles):
    run = copy_run(digits_run[0], tmp_path)
    before = (run / "evaluation.json").read_text()
    if not needles:  # digits_run is an fc2: it has an ELBO; an autoencoder would not
        assert cli("evaluate", run, "--metrics", metrics, "--k", "2").rc == 0
        ev = json.loads((run / "evaluation.json").read_text())
        assert set(ev) == {"n_test", "dataset", "elbo", "nll_iw", "nll_iw_k", "nll_iw_q50", "nll_iw_q90", "nll_iw_q99"} and ev["nll_iw_k"] == 2 and ev["nll_iw"] <= -ev["elbo"] + 1e-3
        return
    user_error(cli("evaluate", run, "--metrics", metrics), *needles)
    assert (run / "evaluation.json").read_text() == before


def test_memorisation_of_a_run_is_a_share_and_the_registrys_figure(digits_run, tmp_path):
    run = copy_run(digits_run[0], tmp_path)
    assert cli("evaluate", run, "--metrics", "memorisation", "--n", "200").rc == 0
    ev = json.loads((run / "evaluation.json").read_text())
    assert set(ev) == {"n_test", "dataset", "memorised"} and 0 <= ev["memorised"] <= 1
    assert ev["memorised"] < 0.9  # a 60-step model's samples are no copies of its training digits


def test_an_autoencoder_is_refused_the_likelihood_metrics_in_one_line(tmp_path):
    run = tmp_path / "ae"
    assert cli("train", "--set", "data.name=points", "--set", "data.n=64", "--set", "model.name=ae", "--set", "train.steps=2", "--out", run, "--quiet").rc == 0
    user_error(cli("evaluate", run, "--metrics", "recon_mse,nll_iw"), "--metrics nll_iw", "deterministic autoencoder")


# ---------------------------------------------------------------------------------------------
# Bad input.


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path, digits_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    user_error(cli("evaluate", empty), str(empty))
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("not a run\n")
    user_error(cli("evaluate", unrelated), str(unrelated))
    user_error(cli("evaluate", unrelated / "notes.txt"), "notes.txt")
    user_error(cli("evaluate", tmp_path / "missing"), "missing")
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(digits_run[0] / "config.toml", config_only / "config.toml")
    user_error(cli("evaluate", config_only), "not a vaelab run folder")  # a config alone (no marker, log or weights) is no run
    for d in (empty, unrelated, config_only):
        assert not (d / "evaluation.json").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--metrics", "fid,bogus"], ["'bogus'", "recon_mse", "nll_iw"]),
        (["--metrics", "elbo;nll_iw"], ["elbo;nll_iw"]),
        (["--k", "0"], ["--k"]),
        (["--k", "-3"], ["--k"]),
        (["--n", "-1"], ["--n"]),
        (["--n", "ten"], ["--n", "ten"]),
    ],
)
def test_evaluate_bad_options_are_one_line_errors(digits_run, tmp_path, args, needles):
    run = copy_run(digits_run[0], tmp_path)
    before = (run / "evaluation.json").read_text()
    user_error(cli("evaluate", run, *args), *needles)
    assert (run / "evaluation.json").read_text() == before


def test_ground_truths_render_what_the_datasets_draw():
    import numpy as np

    from vaelab.data import DATASETS

    for name, overrides in (("points", {}), ("sprites", {"data.n": 50})):
        cfg = load_config(None, overrides={"data.name": name, "data.n": 50, **overrides})
        data = load_data(cfg.data)
        truth = DATASETS[name].truth(cfg.data.params)
        factors = data.factors.numpy().astype(np.int64)
        assert torch.equal(truth.images(factors), data.images)  # the same pixels from the same factors
        drawn = truth.sample_factors(500, np.random.default_rng(0))
        assert drawn.shape == (500, len(truth.factor_sizes))
        assert (drawn >= 0).all() and (drawn < np.array(truth.factor_sizes)).all()


def test_disentanglement_of_a_run_and_its_user_errors(tmp_path):
    from vaelab.evaluate import disentanglement

    cfg = load_config(None, overrides={"data.n": 300, "model.name": "fc1", "model.hidden": [32], "model.latent_dim": 2, "train.steps": 20})
    run = train(cfg, quiet=True)
    sizes = dict(n=300, n_test=100, n_votes=64, n_votes_eval=64, n_variance=300, batch_size=16)
    scores = disentanglement(run.model, cfg.data, **sizes)
    names = {"beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap", "modularity", "explicitness"}
    assert set(scores) == names and all(0 <= v <= 1 for v in scores.values())
    assert disentanglement(run.model, cfg.data, **sizes) == scores  # deterministic for a seed
    with pytest.raises(UserError, match="renders chosen factors"):
        disentanglement(run.model, load_config(None, overrides={"data.name": "digits"}).data, **sizes)

"""The conditional VAE (`cvae`) on a known answer: four classes, each one fixed 8×8 pattern (plus a
little noise). A model that uses its label draws, for class k, images close to pattern k and far
from the others; that must hold after `train`, after a checkpoint round trip and `vaelab sample
--class`, for every member of a vectorized group, and for the data a chain generates (whose
labels are the classes it drew). Then evaluation, augmentation labels and every bad input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error

from vaelab.checkpoint import load_run
from vaelab.config import load_config
from vaelab.data import Dataset
from vaelab.evaluate import evaluate_run, likelihood_bounds, neg_elbo
from vaelab.experiments.chain import run_chain
from vaelab.models import build_model, class_labels
from vaelab.sample import sample
from vaelab.train import train
from vaelab.vectorized import train_group

K, N = 4, 400
PATTERNS = (torch.rand(K, 1, 8, 8, generator=torch.Generator().manual_seed(5)) > 0.5).float()  # (K, 1, 8, 8)
TRAIN = ["model.name=cvae", "model.latent_dim=2", "model.hidden=[64]", "train.steps=400", "train.batch_size=32", "train.lr=0.003"]


def pattern_data(n: int = N, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    images = (PATTERNS[labels] + 0.03 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    order = torch.randperm(n, generator=g)  # classes mixed, images and labels together
    return Dataset(images[order], labels[order], name="patterns")


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> str:
    d = pattern_data()
    path = tmp_path_factory.mktemp("cvae") / "patterns.npz"
    np.savez(path, images=d.images.numpy(), labels=d.labels.numpy())
    return str(path)


def config(npz: str, *extra: str):
    return load_config(overrides=["data.name=array", f"data.path={npz}", "data.n=0", *TRAIN, *extra])


def distances(images: torch.Tensor) -> torch.Tensor:
    """(N, K) mean squared distance per pixel of each image to each pattern."""
    return (images[:, None] - PATTERNS[None]).pow(2).flatten(2).mean(2)


def assert_draws_its_classes(model, n_per: int = 16) -> None:
    for k in range(K):
        d = distances(sample(model, n_per, seed=k, labels=torch.full((n_per,), k)))  # (n, K)
        assert d[:, k].max() < 0.1, (k, d[:, k].max())  # close to its own pattern (patterns differ by ≥ 0.37) …
        others = torch.cat([d[:, :k], d[:, k + 1 :]], 1)
        assert others.min() > 0.2, (k, others.min())  # … and far from every other one


def test_pattern_data_labels_are_the_pattern_each_image_shows():
    d = pattern_data()
    assert torch.equal(distances(d.images).argmin(1), d.labels)
    assert torch.equal(torch.bincount(d.labels), torch.full((K,), N // K))


@pytest.fixture(scope="module")
def run(npz, tmp_path_factory):
    return train(config(npz), out=tmp_path_factory.mktemp("cvae") / "run", quiet=True)


def test_cvae_learns_to_draw_the_class_it_is_given(run):
    assert run.config.model.params.classes == K  # taken from the labels
    losses = [r["loss"] for r in run.history]
    assert sum(losses[-20:]) / 20 < 0.2 * sum(losses[:20]) / 20
    assert_draws_its_classes(run.model)


def test_cvae_round_trips_through_its_checkpoint(run):
    cfg, loaded = load_run(run.dir)
    assert cfg.model.params.classes == K and loaded.n_classes == K
    assert 'classes = 4' in (run.dir / "config.toml").read_text()
    device = next(run.model.parameters()).device
    assert next(loaded.parameters()).device == device  # load_run reads the run on the device it trained on
    z, y = torch.randn(12, 2).to(device), (torch.arange(12) % K).to(device)
    with torch.no_grad():
        assert torch.equal(loaded.decode(z, y), run.model.decode(z, y))
    assert_draws_its_classes(loaded)


def test_sample_class_draws_only_that_class(run, tmp_path):
    r = cli("sample", run.dir, "--class", 2, "--n", 20, "--out", tmp_path / "two.npz")
    assert r.rc == 0, r.err
    saved = np.load(tmp_path / "two.npz")
    assert saved["labels"].tolist() == [2] * 20
    assert (distances(torch.from_numpy(saved["images"])).argmin(1) == 2).all()
    r = cli("sample", run.dir, "--n", 8, "--out", tmp_path / "all.npz")  # no --class: every class in turn
    assert r.rc == 0, r.err
    saved = np.load(tmp_path / "all.npz")
    assert saved["labels"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert distances(torch.from_numpy(saved["images"])).argmin(1).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_report_samples_are_one_row_per_class(run):
    from PIL import Image

    grid = Image.open(run.dir / "samples.png")
    cell = grid.width // 8  # 8 images per row
    assert grid.height // cell == K


def test_reconstruct_takes_labels_from_the_data(run, tmp_path):
    r = cli("reconstruct", run.dir, "--n", 8, "--out", tmp_path / "rec.npz")
    assert r.rc == 0, r.err
    saved = np.load(tmp_path / "rec.npz")
    assert np.abs(saved["images"] - saved["inputs"]).max() < 0.25


def test_evaluation_uses_the_labels(run):
    d = pattern_data(200, seed=9)
    bounds = likelihood_bounds(run.model, d.images, labels=d.labels, k=16)
    assert bounds["nll_iw"] <= -bounds["elbo"] + 1e-6
    right = neg_elbo(run.model, d.images, labels=d.labels)["neg_elbo"]
    wrong = neg_elbo(run.model, d.images, labels=(d.labels + 1) % K)["neg_elbo"]
    assert right < 0.2 * wrong  # the wrong class decodes the wrong pattern
    results = evaluate_run(run.dir, metrics=("recon_mse", "elbo", "nll_iw"), k=8)
    assert results["recon_mse"] < 0.01 and results["nll_iw"] <= -results["elbo"] + 1e-6


def test_vectorized_group_members_each_learn_their_classes(npz):
    cfgs = [config(npz, f"loss.beta={b}", f"train.seed={s}") for b, s in ((1.0, 0), (0.5, 1))]
    runs = train_group(cfgs, [pattern_data(), pattern_data()], [None, None], quiet=True, finish=False)
    for r in runs:
        assert r.config.model.params.classes == K
        assert_draws_its_classes(r.model)


def test_chain_generates_labelled_data_from_every_class(npz, tmp_path):
    cfg = config(npz, "chain.generations=2", "chain.holdout=40", "chain.save_data=true", "chain.quantize=false", "chain.metric_samples=100", "data.n=360")
    run_chain(cfg, tmp_path / "chain", quiet=True)
    for g in (1, 2):
        saved = np.load(tmp_path / f"chain/seed-0/gen-{g:03d}/data.npz")
        labels = torch.from_numpy(saved["labels"])
        assert torch.equal(labels, torch.arange(360) % K)  # every class in turn
        assert (distances(torch.from_numpy(saved["images"])).argmin(1) == labels).float().mean() > 0.95
    _, vae1 = load_run(tmp_path / "chain/seed-0/gen-001/vae")  # trained on VAE 0's labelled samples
    assert_draws_its_classes(vae1)


def test_class_labels():
    cfg = load_config(overrides=["model.name=cvae", "model.classes=3"])
    model = build_model(cfg, (1, 8, 8))
    assert class_labels(model, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert class_labels(model, 3, 2).tolist() == [2, 2, 2]
    assert class_labels(build_model(load_config(), (1, 8, 8)), 5) is None


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2.


def test_cvae_on_data_without_labels(tmp_path):
    user_error(cli("train", "--set", "model.name=cvae", "--set", "train.steps=5", "--out", tmp_path / "r"), "cvae", "points", "labels")
    assert not (tmp_path / "r").exists()


def test_cvae_with_too_few_classes_for_the_labels(npz, tmp_path):
    user_error(cli("train", *[a for s in TRAIN for a in ("--set", s)], "--set", "data.name=array", "--set", f"data.path={npz}", "--set", "model.classes=2", "--out", tmp_path / "r"), "model.classes=2", "label 3")


def test_sample_class_out_of_range_or_on_an_unconditional_model(run, tmp_path):
    user_error(cli("sample", run.dir, "--class", K, "--out", tmp_path / "x.png"), "--class", "0..3")
    user_error(cli("sample", run.dir, "--class", -1, "--out", tmp_path / "x.png"), "--class", "0..3")
    plain = train(load_config(overrides=["model.name=fc1", "data.n=50", "train.steps=2"]), out=tmp_path / "plain", quiet=True, finish=False)
    user_error(cli("sample", plain.dir, "--class", 1, "--out", tmp_path / "y.png"), "--class", "not conditional")


def test_anomaly_refuses_a_conditional_model(tmp_path):
    user_error(cli("anomaly", "--set", "data.name=digits", "--set", "model.name=cvae", "--class", 3, "--out", tmp_path / "a"), "cvae", "class")


def test_augment_labels_a_cvae_s_images_by_the_class_it_drew(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    sets = [a for s in ("data.name=digits", "model.name=cvae", "train.steps=300") for a in ("--set", s)]
    r = cli("augment", *sets, "--few", 100, "--generated", 50, "--out", tmp_path / "aug", "--quiet")
    assert r.rc == 0, r.err
    res = json.loads((tmp_path / "aug/augment.json").read_text())
    assert res["generated_labels"] == "conditional"
    assert res["generated_label_counts"] == [5] * 10  # every class in turn, not a classifier's guesses


def test_sweep_trains_and_measures_cvaes_with_their_labels(npz, tmp_path):
    from vaelab.experiments.sweep import run_sweep

    cfg = config(npz, "sweep.metrics=[\"recon_mse\", \"neg_elbo\"]")
    rows = run_sweep(cfg, tmp_path / "sweep", grid=["loss.beta=0.5,1"], quiet=True)
    assert len(rows) == 2
    for row in rows:
        assert row["recon_mse"] < 0.01 < row["recon_mse_untrained"]
        assert row["neg_elbo"] < 0.2 * row["neg_elbo_untrained"]


def test_reconstruct_input_without_labels_or_with_a_class_too_many(run, tmp_path):
    d = pattern_data(20)
    np.savez(tmp_path / "nolabels.npz", images=d.images.numpy())
    user_error(cli("reconstruct", run.dir, "--input", tmp_path / "nolabels.npz", "--out", tmp_path / "r.png"), "cvae", "labels")
    np.savez(tmp_path / "extra.npz", images=d.images.numpy(), labels=np.full(20, K))
    user_error(cli("reconstruct", run.dir, "--input", tmp_path / "extra.npz", "--out", tmp_path / "r.png"), "model.classes=4", "label 4")

"""Applications (`vaelab anomaly`, `vaelab augment`, vaelab.experiments.apps): ROC-AUC against the
brute-force pairwise probability, the 80/20 split, per-image scores against a hand computation, an
anomaly run on 8×8 digits with class 4 held out and an augmentation run on digits (both through the
CLI, in-process, with one torch thread), and every bad input.

Trainings are 300 steps of the default fc2 on the digits pool (1,437 images): about 2 s each.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error
from PIL import Image

from vaelab.checkpoint import load_run
from vaelab.config import load_config
from vaelab.errors import UserError
from vaelab.evaluate import image_scores, neg_elbo
from vaelab.experiments import apps
from vaelab.experiments.apps import roc_auc, run_anomaly, split
from vaelab.models import build_model
from vaelab.runfolder import read_jsonl

DIGITS = ["data.name=digits"]
N_DIGITS, N_POOL, N_TEST = 1797, 1437, 360  # int(0.8 · 1797) = 1437


def sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def brute_auc(scores, positive) -> float:
    """P(score of a positive > score of a negative) + ½ P(equal), over every pair."""
    pos = [float(s) for s, p in zip(scores, positive) if p]
    neg = [float(s) for s, p in zip(scores, positive) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


class TrainSpy:
    """Wraps apps.train: records the data each VAE was trained on."""

    def __init__(self):
        self.original, self.datas = apps.train, []

    def __call__(self, config, data=None, *args, **kwargs):
        self.datas.append(data)
        return self.original(config, data, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# roc_auc


def test_roc_auc_is_the_pairwise_probability_with_ties_counted_half():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (70,), generator=g).float()  # many ties
    positive = torch.arange(70) % 3 == 0
    assert roc_auc(scores, positive) == pytest.approx(brute_auc(scores, positive), abs=1e-12)
    shifted = scores + 2.0 * positive  # positives score higher: the AUC grows
    assert roc_auc(shifted, positive) == pytest.approx(brute_auc(shifted, positive), abs=1e-12)
    assert roc_auc(shifted, positive) > roc_auc(scores, positive)


def test_roc_auc_known_answers():
    positive = torch.tensor([False, True, False, True, True])
    assert roc_auc(torch.tensor([0.1, 0.9, 0.2, 0.8, 0.7]), positive) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.1, 0.8, 0.2, 0.3]), positive) == 0.0
    assert roc_auc(torch.full((5,), 3.0), positive) == 0.5
    # pairs (pos, neg): (2,1) (2,4) (5,1) (5,4) (3,1) (3,4) → 4 wins of 6
    assert roc_auc(torch.tensor([1.0, 2.0, 4.0, 5.0, 3.0]), positive) == pytest.approx(4 / 6)


# ---------------------------------------------------------------------------------------------
# split


def keyed(images: torch.Tensor, labels: torch.Tensor) -> Counter:
    """A multiset of (label, pixels): digits holds duplicate images, so sets would undercount."""
    return Counter((int(y), (x * 16).round().to(torch.int64).flatten().tolist().__repr__()) for x, y in zip(images, labels))


def test_split_is_80_20_disjoint_and_covers_the_dataset():
    from sklearn.datasets import load_digits

    pool, test = split(load_config(None, None, DIGITS), "vaelab anomaly")
    assert (len(pool), len(test)) == (N_POOL, N_TEST)
    bunch = load_digits()
    every = keyed(torch.from_numpy(bunch.images / 16.0)[:, None], torch.from_numpy(bunch.target))
    assert keyed(pool.images, pool.labels) + keyed(test.images, test.labels) == every  # disjoint and covering
    assert sorted(set(test.labels.tolist())) == list(range(10))


def test_split_is_deterministic_for_data_seed_and_changes_with_it():
    a_pool, a_test = split(load_config(None, None, DIGITS), "x")
    b_pool, b_test = split(load_config(None, None, DIGITS), "x")
    assert torch.equal(a_pool.images, b_pool.images) and torch.equal(a_test.labels, b_test.labels)
    c_pool, c_test = split(load_config(None, None, [*DIGITS, "data.seed=1"]), "x")
    assert len(c_pool) == N_POOL and not torch.equal(a_test.images, c_test.images)


def test_split_of_a_dataset_without_labels_is_a_user_error():
    with pytest.raises(UserError, match="no labels"):
        split(load_config(None, None, ["data.name=points", "data.n=50"]), "vaelab anomaly")


# ---------------------------------------------------------------------------------------------
# image_scores


def tiny_model(*extra: str, shape=(1, 8, 8)):
    torch.manual_seed(0)
    model = build_model(load_config(None, None, [*DIGITS, "model.name=fc1", "model.latent_dim=3", "model.hidden=[16]", *extra]), shape)
    with torch.no_grad():  # a posterior far from the prior and a decoder that is not flat
        for p in model.parameters():
            p.mul_(3.0)
    return model


def digits_images(n: int) -> torch.Tensor:
    return split(load_config(None, None, DIGITS), "x")[1].images[:n]


def test_image_scores_are_the_hand_computed_per_image_errors_and_elbos():
    model, x = tiny_model(), digits_images(40)
    scores = image_scores(model, x, seed=7)
    with torch.no_grad():
        h = model.encoder(x)
        mu, logvar = h[:, :3], h[:, 3:]
        x_hat = torch.sigmoid(model.decoder(mu))
        recon_error = ((x_hat - x) ** 2).sum(dim=(1, 2, 3))
        eps = torch.randn(40, 3, generator=torch.Generator().manual_seed(7))
        z = mu + (0.5 * logvar).exp() * eps
        rec = ((torch.sigmoid(model.decoder(z)) - x) ** 2).sum(dim=(1, 2, 3))
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    assert set(scores) == {"neg_elbo", "recon_error"}
    torch.testing.assert_close(scores["recon_error"], recon_error)
    torch.testing.assert_close(scores["neg_elbo"], rec + kl)
    assert (kl > 0.5).all()  # the KL part is there to be seen


def test_the_mean_neg_elbo_score_is_evaluates_neg_elbo_for_the_same_seed():
    model, x = tiny_model(), digits_images(100)
    for batch in (1024, 32):
        scores = image_scores(model, x, seed=3, batch_size=batch)
        assert scores["neg_elbo"].mean().item() == pytest.approx(neg_elbo(model, x, seed=3, batch_size=batch)["neg_elbo"], rel=1e-5)
    assert not torch.equal(image_scores(model, x, seed=4)["neg_elbo"], scores["neg_elbo"])  # the seed is the noise


def test_bernoulli_scores_use_the_cross_entropy_and_the_model_mode_is_kept():
    model, x = tiny_model("model.likelihood=bernoulli"), digits_images(20)
    model.train()
    scores = image_scores(model, x, seed=1)
    assert model.training
    with torch.no_grad():
        mu, logvar = model.posterior_params(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
        logits = model.decoder(z)
        bce = -(x * torch.log(torch.sigmoid(logits)) + (1 - x) * torch.log(1 - torch.sigmoid(logits))).sum(dim=(1, 2, 3))
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    torch.testing.assert_close(scores["neg_elbo"], bce + kl, rtol=1e-4, atol=1e-4)


def test_an_autoencoders_neg_elbo_score_is_its_reconstruction_error():
    model, x = tiny_model("model.name=ae"), digits_images(30)
    scores = image_scores(model, x)
    torch.testing.assert_close(scores["neg_elbo"], scores["recon_error"])


# ---------------------------------------------------------------------------------------------
# vaelab anomaly: digits, class 4 held out
#
# Why class 4 and 300 steps of the default fc2 (β = 1, latent 8): measured over train/data seeds
# 0..4, holding out 4 gives ROC-AUCs of 0.84–0.90 (−ELBO) and 0.81–0.89 (reconstruction error),
# the clearest of the ten digits (7: 0.75–0.84; 1: 0.70–0.81; 3, 5, 9 near chance; 8 *below* it,
# about 0.2, since an 8 is drawn with the strokes of the others). Seed 0 gives 0.894 / 0.876.
# The threshold 0.7 leaves a margin of > 0.1 below the worst seed.

ANOMALY = ["data.name=digits", "train.steps=300"]
HELD_OUT = 4


@pytest.fixture(scope="module")
def anomaly(tmp_path_factory):
    out = tmp_path_factory.mktemp("apps") / "anomaly"
    spy = TrainSpy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(apps, "train", spy)
        r = cli("anomaly", *sets(*ANOMALY), "--class", HELD_OUT, "--out", out, "--quiet")
    assert r.rc == 0, r.err
    return {"out": out, "result": r, "datas": spy.datas, "json": json.loads((out / "anomaly.json").read_text())}


def test_anomaly_prints_both_aucs_and_the_report(anomaly):
    r, res = anomaly["result"], anomaly["json"]
    assert r.err == ""
    assert f"class {HELD_OUT} held out" in r.out and "report.html" in r.out
    assert f"{res['auc_neg_elbo']:.3f}" in r.out and f"{res['auc_recon_error']:.3f}" in r.out


def test_anomaly_json_has_the_documented_keys(anomaly):
    res = anomaly["json"]
    means = {f"mean_{s}_{k}" for s in ("neg_elbo", "recon_error") for k in ("normal", "anomalous")}
    assert set(res) == {"class", "auc_neg_elbo", "auc_recon_error", "n_train", "n_test_normal", "n_test_anomalous", *means}
    assert res["class"] == HELD_OUT
    _, test = split(load_config(None, None, DIGITS), "x")
    assert res["n_test_anomalous"] == int((test.labels == HELD_OUT).sum()) > 20
    assert res["n_test_normal"] + res["n_test_anomalous"] == N_TEST


def test_a_clearly_different_class_is_detected_well_above_chance(anomaly):
    res = anomaly["json"]
    print(f"digits, class {HELD_OUT} held out: AUC −ELBO {res['auc_neg_elbo']:.3f}, reconstruction error {res['auc_recon_error']:.3f}")
    assert res["auc_neg_elbo"] > 0.7 and res["auc_recon_error"] > 0.7
    assert res["mean_neg_elbo_anomalous"] > res["mean_neg_elbo_normal"]
    assert res["mean_recon_error_anomalous"] > res["mean_recon_error_normal"]


def test_the_vae_never_saw_the_held_out_class(anomaly):
    pool, _ = split(load_config(None, None, DIGITS), "x")
    expected = N_POOL - int((pool.labels == HELD_OUT).sum())
    assert anomaly["json"]["n_train"] == expected < N_POOL - 100
    (data,) = anomaly["datas"]
    assert len(data) == expected and HELD_OUT not in data.labels.tolist()
    assert set(data.labels.tolist()) == set(range(10)) - {HELD_OUT}
    # the run folder agrees: an epoch of batches of 32 is ⌈n / 32⌉ steps of n = the training set
    rows = read_jsonl(anomaly["out"] / "vae" / "metrics.jsonl")
    assert len(rows) == 300
    assert sum(r["epoch"] == 0 for r in rows) == math.ceil(expected / 32)


def test_the_aucs_and_means_are_those_of_the_vaes_scores_on_the_test_split(anomaly):
    cfg, model = load_run(anomaly["out"] / "vae")
    _, test = split(load_config(None, None, DIGITS), "x")
    scores = image_scores(model, test.images, seed=cfg.train.seed)
    positive = test.labels == HELD_OUT
    res = anomaly["json"]
    for name, s in scores.items():
        assert res[f"auc_{name}"] == pytest.approx(brute_auc(s, positive), abs=1e-9), name
        assert res[f"mean_{name}_anomalous"] == pytest.approx(s[positive].mean().item(), rel=1e-5)
        assert res[f"mean_{name}_normal"] == pytest.approx(s[~positive].mean().item(), rel=1e-5)


def test_anomaly_writes_scores_png_and_a_report_with_the_vae(anomaly):
    out = anomaly["out"]
    assert (out / "scores.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    html = (out / "report.html").read_text()
    assert f"Anomaly detection: class {HELD_OUT} held out" in html
    assert data_uri(out / "scores.png") in html
    assert "The VAE" in html and data_uri(out / "vae" / "samples.png") in html
    assert (out / "vae" / "model.safetensors").is_file() and (out / "vae" / "report.html").is_file()


def test_an_existing_anomaly_folder_needs_force(anomaly):
    before = (anomaly["out"] / "anomaly.json").read_text()
    user_error(cli("anomaly", *sets(*ANOMALY), "--class", HELD_OUT, "--out", anomaly["out"]), "--force")
    assert (anomaly["out"] / "anomaly.json").read_text() == before


def test_an_autoencoder_scores_the_same_by_both_measures(tmp_path):
    cfg = load_config(None, None, [*DIGITS, "model.name=ae", "train.steps=50"])
    res = run_anomaly(cfg, tmp_path / "ae", anomaly_class=HELD_OUT, quiet=True)
    assert res["auc_neg_elbo"] == res["auc_recon_error"]
    assert res["mean_neg_elbo_normal"] == pytest.approx(res["mean_recon_error_normal"], rel=1e-6)


def test_a_class_missing_from_the_test_split_is_one_line(tmp_path):
    pool, test = split(load_config(None, None, [*DIGITS, "data.n=20"]), "x")
    missing = sorted(set(pool.labels.tolist()) - set(test.labels.tolist()))
    assert missing  # data.n=20: 16 pool images, 4 test images, so some class has no test image
    r = cli("anomaly", *sets(*DIGITS, "data.n=20", "train.steps=5"), "--class", missing[0], "--out", tmp_path / "a", "--quiet")
    user_error(r, str(missing[0]))


# ---------------------------------------------------------------------------------------------
# vaelab augment: digits, 100 real labelled images, 200 generated
#
# Measured over seeds 0..4 with 300 VAE steps: the classifier on 100 real images scores 0.86–0.92
# on the 360 test images (chance 0.1; seed 0: 0.908), with the generated images 0.75–0.90 (this
# VAE's blurry samples are mostly labelled 8). The bar 0.6 is the brief's "well above chance" with
# a margin of > 0.25 below the worst seed.

AUGMENT = ["data.name=digits", "train.steps=300"]


@pytest.fixture(scope="module")
def augment(tmp_path_factory):
    out = tmp_path_factory.mktemp("apps") / "augment"
    spy = TrainSpy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(apps, "train", spy)
        r = cli("augment", *sets(*AUGMENT), "--few", 100, "--generated", 200, "--out", out, "--quiet")
    assert r.rc == 0, r.err
    return {"out": out, "result": r, "datas": spy.datas, "json": json.loads((out / "augment.json").read_text())}


def test_augment_json_has_the_documented_keys_and_sizes(augment):
    res = augment["json"]
    assert set(res) == {"few", "generated", "accuracy_real", "accuracy_augmented", "n_test", "generated_label_counts", "generated_labels"}
    assert (res["few"], res["generated"], res["n_test"]) == (100, 200, N_TEST)
    assert res["generated_labels"] == "classifier"  # an unconditional VAE: the real-only classifier labels its images
    counts = res["generated_label_counts"]
    assert len(counts) == 10 and all(isinstance(c, int) and c >= 0 for c in counts)
    assert sum(counts) == 200


def test_augment_accuracies_are_fractions_of_the_test_set_and_the_real_classifier_beats_chance(augment):
    res, r = augment["json"], augment["result"]
    print(f"digits augment, few 100, generated 200: accuracy {res['accuracy_real']:.3f} real only, {res['accuracy_augmented']:.3f} augmented")
    for key in ("accuracy_real", "accuracy_augmented"):
        assert 0.0 <= res[key] <= 1.0
        assert res[key] * N_TEST == pytest.approx(round(res[key] * N_TEST), abs=1e-6)  # k correct of 360
    assert res["accuracy_real"] > 0.6  # chance is 0.1
    assert r.err == "" and f"{res['accuracy_real']:.3f}" in r.out and f"{res['accuracy_augmented']:.3f}" in r.out


def test_the_augmenting_vae_trains_on_the_whole_unlabelled_pool(augment):
    (data,) = augment["datas"]
    pool, _ = split(load_config(None, None, DIGITS), "x")
    assert len(data) == N_POOL and torch.equal(data.images, pool.images)


def test_augment_writes_a_grid_of_generated_images_and_a_report(augment):
    out = augment["out"]
    grid = np.asarray(Image.open(out / "generated.png"))
    assert grid.shape == (10 * 49 + 1, 10 * 49 + 1)  # 100 of the 200, 10 per row, 8×8 tiles ×6, 1 px padding
    html = (out / "report.html").read_text()
    assert "Data augmentation" in html and data_uri(out / "generated.png") in html
    assert "The VAE" in html and (out / "vae" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written.


@pytest.mark.parametrize(
    "args, needles",
    [
        (["anomaly", *sets(*DIGITS), "--class", "10"], ["--class 10", "digits", "0, 1"]),
        (["anomaly", *sets(*DIGITS), "--class", "-1"], ["--class -1"]),
        (["anomaly", *sets("data.name=points", "data.n=50"), "--class", "0"], ["points", "no labels"]),
        (["anomaly", *sets(*DIGITS)], ["--class"]),
        (["anomaly", *sets(*DIGITS), "--class", "x"], ["--class"]),
        (["augment", *sets("data.name=points", "data.n=50")], ["points", "no labels"]),
        (["augment", *sets(*DIGITS), "--few", "5"], ["--few", "5"]),
        (["augment", *sets(*DIGITS), "--few", str(N_POOL + 1)], ["--few", str(N_POOL)]),
        (["augment", *sets(*DIGITS), "--generated", "0"], ["--generated", "0"]),
        (["augment", *sets(*DIGITS), "--generated", "-3"], ["--generated"]),
        (["anomaly", *sets(*DIGITS, "train.input_noise=-1"), "--class", "1"], ["train.input_noise"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, needles):
    out = tmp_path / "out"
    user_error(cli(*args, "--out", out), *needles)
    assert not out.exists()


def test_augment_and_anomaly_need_out():
    user_error(cli("augment", *sets(*DIGITS)), "--out")
    user_error(cli("anomaly", *sets(*DIGITS), "--class", "1"), "--out")

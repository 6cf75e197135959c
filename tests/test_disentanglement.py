"""Disentanglement scores (vaelab.metrics.disentanglement) against hand-computed cases and known
answers on a synthetic ground truth.

The ground truth has four discrete factors with 3, 4, 5 and 2 values; its "image" of a factor
vector is the vector itself plus tiny noise, laid out as (n, 1, 1, 4). Representations built on it:
- perfect: code i = 2 · factor i + 1 (disentangled, scaled and shifted);
- entangled: the standardised factors times a 4 × 4 Hadamard rotation (every code mixes every
  factor equally);
- noise: codes independent of the images;
- extra dims (a constant or a noise code beside the perfect ones) and a duplicated code.
Sample sizes are a few hundred points so that the module runs in seconds on one thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)

from vaelab.metrics import (
    all_scores,
    beta_vae_score,
    dci,
    dci_completeness,
    dci_disentanglement,
    dci_importance,
    discrete_entropy,
    discrete_mutual_info,
    discretize,
    factor_vae_score,
    mig,
    modularity,
    modularity_explicitness,
    sample_codes,
    sap,
    sap_matrix,
)

SIZES = (3, 4, 5, 2)
F = len(SIZES)
SMALL = dict(n=400, n_test=200, batch_size=16, n_votes=150, n_votes_eval=150, n_variance=400)


class Toy:
    """Independent uniform factors; the observation is the factor vector plus N(0, 1e-3²) noise."""

    def __init__(self, sizes=SIZES, noise=1e-3, seed=0):
        self.factor_sizes = tuple(sizes)
        self.noise = noise
        self.rng = np.random.default_rng(seed)  # the observation noise, not the metric's choices

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(s, size=n) for s in self.factor_sizes], axis=1)  # (n, F)

    def images(self, factors):
        x = factors + self.noise * self.rng.standard_normal(factors.shape)
        return torch.as_tensor(x, dtype=torch.float32).reshape(len(factors), 1, 1, -1)  # (n, 1, 1, F)


def flat(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).double().numpy()  # (n, F)


_sizes = np.array(SIZES)
_mean, _std = (_sizes - 1) / 2, np.sqrt((_sizes**2 - 1) / 12)  # of a uniform factor
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2  # orthogonal


def noise_rep(width=F, seed=7):
    rng = np.random.default_rng(seed)
    return lambda images: rng.standard_normal((len(images), width))


REPS = {
    "perfect": lambda x: 2 * flat(x) + 1,
    "entangled": lambda x: ((flat(x) - _mean) / _std) @ HADAMARD,
    "extra_constant": lambda x: np.c_[flat(x), np.full(len(x), 3.0)],
    "duplicate": lambda x: np.c_[flat(x), -0.5 * flat(x)[:, :1]],  # two codes for factor 0
}


@pytest.fixture(scope="module")
def codes():
    """name → (codes_train, factors_train, codes_test, factors_test), 600 + 300 points."""
    out = {}
    reps = dict(REPS, noise=noise_rep(), extra_noise=None)
    rng_extra = np.random.default_rng(11)
    reps["extra_noise"] = lambda x: np.c_[flat(x), rng_extra.standard_normal(len(x))]
    for name, rep in reps.items():
        gt = Toy()
        out[name] = (*sample_codes(gt, rep, 600, seed=1), *sample_codes(gt, rep, 300, seed=2))
    return out


# ---------------------------------------------------------------------------------------------
# discretize


def test_discretize_uses_equal_width_bins_closed_on_the_left_with_the_maximum_in_the_last():
    x = np.array([0.0, 0.99, 1.0, 2.5, 3.0, 4.0])
    np.testing.assert_array_equal(discretize(x, bins=4), [0, 0, 1, 2, 3, 3])
    # the same partition as numpy's histogram, column by column, for any data
    data = np.random.default_rng(0).normal(size=(1000, 3)) * [1.0, 10.0, 0.01]
    d = discretize(data, bins=20)
    assert d.shape == (1000, 3) and d.dtype == np.int64 and d.min() >= 0 and d.max() == 19
    for j in range(3):
        np.testing.assert_array_equal(np.bincount(d[:, j], minlength=20), np.histogram(data[:, j], bins=20)[0])


def test_discretize_edge_cases():
    np.testing.assert_array_equal(discretize(np.full(5, 2.5)), np.zeros(5))  # a constant: one bin
    np.testing.assert_array_equal(discretize(np.arange(5.0), bins=1), np.zeros(5))
    two = discretize(torch.tensor([[0.0, 7.0], [1.0, 7.0]]), bins=20)  # torch in, one column constant
    np.testing.assert_array_equal(two, [[0, 0], [19, 0]])
    # as many bins as distinct equally spaced values: each value its own bin
    np.testing.assert_array_equal(discretize(np.array([0, 1, 2, 3]), bins=4), [0, 1, 2, 3])
    for bad in (dict(x=np.zeros((2, 2, 2))), dict(x=np.zeros(0)), dict(x=np.array([0.0, np.nan])), dict(x=np.arange(3.0), bins=0)):
        with pytest.raises(ValueError):
            discretize(**bad)


# ---------------------------------------------------------------------------------------------
# Entropy, mutual information and MIG by hand


def test_mutual_information_and_mig_of_a_tiny_example_by_hand():
    """Two fair coins f0, f1; code 0 copies f0, code 1 is f0 AND f1.

    I(z0; f0) = log 2, I(z0; f1) = 0; I(z1; f0) = I(z1; f1) = H(z1) − H(z1 | f) = H(¼) − ½ log 2.
    MIG = mean((log 2 − a) / log 2, (a − 0) / log 2) = ½ whatever a is."""
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    codes = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    h_quarter = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    a = h_quarter - 0.5 * math.log(2)
    np.testing.assert_allclose(discrete_entropy(factors), [math.log(2), math.log(2)])
    expected = np.array([[math.log(2), 0.0], [a, a]])
    np.testing.assert_allclose(discrete_mutual_info(discretize(codes), factors), expected, atol=1e-12)
    assert mig(codes, factors) == pytest.approx(0.5, abs=1e-12)
    assert mig(factors * 3.0 - 1, factors) == pytest.approx(1.0, abs=1e-12)  # each code one factor
    assert mig(factors[:, ::-1], factors) == pytest.approx(1.0, abs=1e-12)  # order does not matter


def test_mutual_information_of_a_function_is_the_entropy_and_of_a_constant_is_zero():
    y = np.random.default_rng(0).integers(5, size=(2000, 1))
    x = np.c_[(y[:, 0] * 7) % 5, np.zeros(2000, dtype=int)]  # a bijection of y, a constant
    mi = discrete_mutual_info(x, y)
    assert mi[0, 0] == pytest.approx(discrete_entropy(y)[0], abs=1e-12)
    assert mi[1, 0] == 0.0


# ---------------------------------------------------------------------------------------------
# DCI, modularity and continuous SAP from matrices by hand


def test_dci_disentanglement_and_completeness_of_hand_made_importance_matrices():
    assert dci_disentanglement(np.eye(3)) == pytest.approx(1.0) and dci_completeness(np.eye(3)) == pytest.approx(1.0)
    assert dci_disentanglement(np.ones((2, 2))) == pytest.approx(0.0, abs=1e-12)
    assert dci_completeness(np.ones((2, 2))) == pytest.approx(0.0, abs=1e-12)
    # an unused code (zero row) carries no weight in D; C is unchanged
    with_zero_row = np.array([[0.7, 0.0], [0.0, 0.3], [0.0, 0.0]])
    assert dci_disentanglement(with_zero_row) == pytest.approx(1.0)
    # one code for both factors: D = 0 (it serves two factors evenly), C = 1 (each factor one code)
    assert dci_disentanglement([[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(0.0, abs=1e-12)
    assert dci_completeness([[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(1.0)
    # code 0 split ¾ / ¼ (weight 4/6), code 1 pure (weight 2/6); factor 0 pure (3/6), factor 1 split 1/3, 2/3 (3/6)
    r = np.array([[3.0, 1.0], [0.0, 2.0]])
    h = lambda *p: -sum(q * math.log(q) for q in p) / math.log(2)  # noqa: E731
    assert dci_disentanglement(r) == pytest.approx(4 / 6 * (1 - h(0.75, 0.25)) + 2 / 6)
    assert dci_completeness(r) == pytest.approx(3 / 6 + 3 / 6 * (1 - h(1 / 3, 2 / 3)))
    assert dci_disentanglement(np.zeros((2, 2))) == 0.0
    with pytest.raises(ValueError):
        dci_disentanglement([[-1.0, 2.0]])


def test_modularity_of_hand_made_mutual_information_matrices():
    assert modularity(np.diag([1.0, 2.0, 0.5])) == pytest.approx(1.0)
    # row 0: squares 4, 1 → δ = 1 / (4 · 1); row 1: ideal
    assert modularity([[2.0, 1.0], [0.0, 3.0]]) == pytest.approx((0.75 + 1.0) / 2)
    # three factors: squares 4, 1, 1 → δ = 2 / (4 · 2) = ¼
    assert modularity([[2.0, 1.0, 1.0]]) == pytest.approx(0.75)
    assert modularity([[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(0.0)  # even split; an empty code
    with pytest.raises(ValueError):
        modularity([[1.0], [2.0]])  # one factor


def test_continuous_sap_is_the_gap_of_squared_correlations():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(500, 2))  # continuous factors
    z = np.c_[y[:, 0], y[:, 0] + y[:, 1], np.zeros(500)]  # a copy, a mix, a constant
    r2 = np.array([[np.corrcoef(z[:, i], y[:, j])[0, 1] ** 2 if i < 2 else 0.0 for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(sap_matrix(z, y, continuous=True), r2, atol=1e-12)
    expected = np.mean(np.sort(r2, axis=0)[-1] - np.sort(r2, axis=0)[-2])
    assert sap(z, y, continuous=True) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# Known answers on the synthetic ground truth


def test_a_perfectly_disentangled_representation_scores_near_one():
    s = all_scores(Toy(), REPS["perfect"], seed=0, **SMALL)
    assert set(s) == {
        "beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness",
        "dci_informativeness", "sap", "modularity", "explicitness",
    }  # fmt: skip
    for key in ("beta_vae", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert s[key] >= 0.99, (key, s[key])
    # explicitness: the one-vs-rest probabilities rank a middle value of a 1-D code almost perfectly
    assert s["explicitness"] > 0.98
    # MIG: 1 less the plug-in bias of the independent codes' mutual information
    assert s["mig"] > 0.96 and s["modularity"] > 0.99
    # SAP: a binary factor is predicted perfectly by a 1-D linear SVM, a factor with more values
    # only partly (the strong regularisation C = 0.01), so even perfect codes stay well below 1
    assert s["sap"] > 0.35


def test_an_entangled_representation_scores_clearly_lower(codes):
    perfect, entangled = codes["perfect"], codes["entangled"]
    assert mig(*perfect[:2]) > 0.95 and mig(*entangled[:2]) < 0.1
    d_perfect, d_entangled = dci(*perfect), dci(*entangled)
    assert d_perfect["disentanglement"] > 0.99 and d_entangled["disentanglement"] < 0.1
    assert d_entangled["informativeness_test"] > 0.95  # still as informative: only rotated
    me_perfect, me_entangled = modularity_explicitness(*perfect), modularity_explicitness(*entangled)
    assert me_perfect["modularity"] > 0.99 and me_entangled["modularity"] < 0.8
    assert me_entangled["explicitness_test"] > 0.95  # a rotation is still linearly explicit
    assert sap(*perfect) > 0.35 and sap(*entangled) < 0.1


def test_a_pure_noise_representation_scores_near_chance(codes):
    gt, rep = Toy(), noise_rep()
    beta = beta_vae_score(gt, rep, batch_size=16, n_train=150, n_eval=300, seed=0)
    factor = factor_vae_score(gt, rep, batch_size=16, n_train=150, n_eval=300, n_variance=400, seed=0)
    assert beta["eval_accuracy"] < 0.4  # chance 1/4
    assert factor["eval_accuracy"] == pytest.approx(1 / F, abs=0.1) and factor["n_active"] == F
    z, y, zt, yt = codes["noise"]
    assert mig(z, y) < 0.05
    d = dci(z, y, zt, yt)
    chance = np.mean([1 / s for s in SIZES])  # ≈ 0.32: guessing
    assert d["informativeness_test"] < chance + 0.1 and d["disentanglement"] < 0.2
    assert modularity_explicitness(z, y, zt, yt)["explicitness_test"] == pytest.approx(0.5, abs=0.1)
    assert sap(z, y, zt, yt) < 0.1


def test_dcis_fast_forest_agrees_with_the_boosted_trees_on_the_known_cases(codes):
    """The forest is the fast choice: on every known answer its D, C and I land within 0.02 of the
    library's boosted trees (a perfect code scores 1, a rotation 0, a duplicated code loses
    completeness only); on noise both guess."""
    for name in ("perfect", "entangled", "duplicate"):
        boosting, forest = dci(*codes[name]), dci(*codes[name], classifier="forest")
        for key in ("disentanglement", "completeness", "informativeness_test"):
            assert forest[key] == pytest.approx(boosting[key], abs=0.02), (name, key)
    noise = dci(*codes["noise"], classifier="forest")
    assert noise["disentanglement"] < 0.05 and noise["completeness"] < 0.05
    assert noise["informativeness_test"] == pytest.approx(np.mean([1 / s for s in SIZES]), abs=0.06)  # chance, as boosting's
    assert dci(*codes["perfect"], classifier="forest")["disentanglement"] > 0.99
    assert dci(*codes["duplicate"], classifier="forest")["completeness"] < 0.95
    with pytest.raises(ValueError, match="classifier must be one of"):
        dci(*codes["perfect"], classifier="lasso")


def test_dci_fits_its_factors_side_by_side_with_the_same_result_as_one_by_one(codes):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = dci_importance(*codes["entangled"], seed=3)
        torch.set_num_threads(3)
        side_by_side = dci_importance(*codes["entangled"], seed=3)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(alone, side_by_side):
        np.testing.assert_array_equal(a, b)


def test_an_extra_useless_code_keeps_dci_disentanglement_high(codes):
    for name in ("extra_constant", "extra_noise"):
        importance, _, test_acc = dci_importance(*codes[name])
        assert importance.shape == (F + 1, F) and test_acc.min() > 0.99
        assert dci_disentanglement(importance) > 0.97, name
        assert importance[F].sum() < 0.05, name  # the useless code hardly matters
    assert dci_importance(*codes["extra_constant"])[0][F].sum() == 0.0  # a constant is never split on
    # FactorVAE prunes the constant code and is not disturbed by it
    s = factor_vae_score(Toy(), REPS["extra_constant"], batch_size=16, n_train=100, n_eval=100, n_variance=200)
    assert s["n_active"] == F and s["eval_accuracy"] == 1.0


def test_a_duplicated_code_lowers_mig_but_not_explicitness(codes):
    z, y, zt, yt = codes["duplicate"]
    # factor 0 has two equally informative codes: its gap is ≈ 0, the other three ≈ 1
    assert mig(z, y) == pytest.approx((F - 1) / F, abs=0.04)
    assert mig(*codes["perfect"][:2]) - mig(z, y) > 0.2
    assert modularity_explicitness(z, y, zt, yt)["explicitness_test"] > 0.98
    assert dci(z, y, zt, yt)["completeness"] < 0.95  # factor 0 is spread over two codes


def test_factor_vae_prunes_collapsed_codes():
    squeezed = lambda x: np.c_[2 * flat(x), 0.01 * flat(x)[:, :1]]  # noqa: E731  (std ≈ 0.008 < 0.05)
    s = factor_vae_score(Toy(), squeezed, batch_size=16, n_train=50, n_eval=50, n_variance=200)
    assert s["n_active"] == F
    collapsed = factor_vae_score(Toy(), lambda x: 0.001 * flat(x), batch_size=8, n_train=10, n_eval=10, n_variance=50)
    assert collapsed == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "n_active": 0}


# ---------------------------------------------------------------------------------------------
# Determinism and bad input


def test_a_seed_fixes_every_score():
    tiny = dict(SMALL, n=200, n_test=100, n_votes=60, n_votes_eval=60, n_variance=200)
    rep = REPS["entangled"]  # not perfect: the scores are not all 1 and could move
    a = all_scores(Toy(), rep, seed=3, **tiny)
    b = all_scores(Toy(), rep, seed=3, **tiny)
    c = all_scores(Toy(), rep, seed=4, **tiny)
    assert a == b
    assert a != c


def test_torch_inputs_give_the_same_scores_as_numpy(codes):
    z, y, zt, yt = codes["entangled"]
    assert mig(torch.from_numpy(z), torch.from_numpy(y)) == mig(z, y)
    t = [torch.from_numpy(a) for a in (z, y, zt, yt)]
    assert sap(*t) == sap(z, y, zt, yt)


def test_bad_shapes_and_values_raise_value_error(codes):
    z, y, zt, yt = codes["perfect"]
    cases = [
        lambda: mig(z[:, 0], y),  # 1-D codes
        lambda: mig(z[:, :1], y),  # one code: no gap
        lambda: mig(z[:10], y),  # rows differ
        lambda: mig(z, y + 0.5),  # continuous factors
        lambda: mig(z, np.c_[y, np.zeros(len(y), dtype=int)]),  # a constant factor
        lambda: mig(np.where(z > 3, np.nan, z), y),  # NaN
        lambda: dci(z, y, zt[:, :2], yt),  # widths differ
        lambda: sap(z, y),  # discrete SAP without a test set
        lambda: modularity_explicitness(z, y[:, :1].ravel(), zt, yt),  # 1-D factors
        lambda: sample_codes(Toy(), lambda x: flat(x)[:, 0], 10),  # represent returns (n,)
        lambda: sample_codes(Toy(), lambda x: flat(x)[:-1], 10),  # represent drops a row
        lambda: beta_vae_score(Toy(sizes=(3, 1)), REPS["perfect"], n_train=5, n_eval=5),  # a 1-value factor
        lambda: factor_vae_score(Toy(), REPS["perfect"], batch_size=1, n_train=5, n_eval=5),
        lambda: all_scores(Toy(), REPS["perfect"], n=0),
    ]
    for i, case in enumerate(cases):
        with pytest.raises(ValueError):
            case()
            pytest.fail(f"case {i} raised nothing")


# ---------------------------------------------------------------------------------------------
# The disentangling families train on sprites


def test_every_disentangling_family_lowers_its_loss_on_sprites():
    """β-TCVAE, DIP-VAE-I and -II and the annealed capacity (one vectorized group of small cnn
    VAEs), and FactorVAE, each 150 steps on 512 sprites: the loss of the last 20 steps is well
    below that of the first 20."""
    from vaelab.config import load_config
    from vaelab.data import load_data
    from vaelab.train import train
    from vaelab.vectorized import train_group

    base = {"data.name": "sprites", "data.n": 512, "model.latent_dim": 10, "model.likelihood": "bernoulli", "train.steps": 150, "train.batch_size": 32, "train.lr": 1e-3}
    cnn = {**base, "model.name": "cnn", "model.channels": [8, 8]}
    families = [
        {"loss.tc_weight": 5.0},
        {"loss.dip": "i", "loss.dip_offdiag": 10.0, "loss.dip_diag": 100.0},
        {"loss.dip": "ii", "loss.dip_offdiag": 10.0, "loss.dip_diag": 10.0},
        {"loss.beta": 100.0, "loss.capacity_max": 10.0, "loss.capacity_steps": 100},
    ]
    configs = [load_config(overrides={**cnn, **f}) for f in families]
    data = load_data(configs[0].data)
    runs = train_group(configs, [data] * 4, [None] * 4, quiet=True)
    runs.append(train(load_config(overrides={**base, "model.name": "factorvae", "model.channels": [8], "model.discriminator": [64, 64]}), data, quiet=True))
    for f, run in zip([*families, "factorvae"], runs):
        losses = [r["loss"] for r in run.history]
        assert sum(losses[-20:]) / 20 < 0.7 * sum(losses[:20]) / 20, f

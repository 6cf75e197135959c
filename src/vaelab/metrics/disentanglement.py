"""Supervised disentanglement scores, as compared by Locatello et al. 2019 ("Challenging Common
Assumptions in the Unsupervised Learning of Disentangled Representations", disentanglement_lib),
with that study's default sample sizes:

- BetaVAE score: Higgins et al. 2017, "β-VAE: Learning Basic Visual Concepts with a Constrained
  Variational Framework";
- FactorVAE score: Kim & Mnih 2018, "Disentangling by Factorising";
- MIG: Chen et al. 2018, "Isolating Sources of Disentanglement in Variational Autoencoders";
- DCI: Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of Disentangled
  Representations";
- SAP: Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
  Observations";
- modularity and explicitness: Ridgeway & Zemel 2018, "Learning Deep Disentangled Embeddings With
  the F-Statistic Loss".

    scores = all_scores(gt, represent, seed=0)             # the nine numbers, flat keys
    codes, factors = sample_codes(gt, represent, 10_000)   # (N, L) and (N, F)
    mig(codes, factors)                                    # any score on its own

The two sampling scores (BetaVAE, FactorVAE) draw observations with chosen factors from a
`GroundTruth`; the rest are functions of a representation matrix `codes` (N, L) and a matrix of
discrete factors (N, F) (integers; pass continuous factors through `discretize` first).
`represent` maps images (n, C, H, W) to codes (n, L), e.g. an encoder's mean. Every random choice
comes from one numpy Generator made from `seed` (an int or a Generator), so a seed fixes a score.

Mutual information is in nats, estimated from counts (plug-in) after discretising each code into
20 equal-width bins between its minimum and maximum; the estimate is biased upwards by about
(bins − 1)(values − 1) / 2N, so an independent code scores a little above 0.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

Seed = int | np.random.Generator
Represent = Callable[[torch.Tensor], "np.ndarray | torch.Tensor"]

_CHUNK = 4096
"""At most this many images go to `GroundTruth.images` and `represent` at once."""


class GroundTruth(Protocol):
    """A generator of observations from known discrete factors (dSprites-like)."""

    factor_sizes: tuple[int, ...]
    """The number of values of each of the F factors; factor j takes values 0 … sizes[j] − 1."""

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, F) int: n factor vectors drawn from the data distribution."""
        ...

    def images(self, factors: np.ndarray) -> torch.Tensor:
        """(n, C, H, W) float: one observation for each row of factors (n, F)."""
        ...


# ---------------------------------------------------------------------------------------------
# Input checks and conversions


def _numpy(x) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    x = x.detach().cpu()
    return x.float().numpy() if x.dtype in (torch.bfloat16, torch.float16) else x.numpy()  # NumPy has no bfloat16


def _codes(codes, name: str = "codes") -> np.ndarray:
    """(N, L) finite float64."""
    z = _numpy(codes)
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"{name} must be a (N, L) matrix with N ≥ 2 and L ≥ 1, got shape {z.shape}")
    z = z.astype(np.float64)
    if not np.isfinite(z).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return z


def _factors(factors, n: int | None = None, name: str = "factors") -> np.ndarray:
    """(N, F) int64 with integer values (and N = n when given)."""
    y = _numpy(factors)
    if y.ndim != 2 or y.shape[1] < 1:
        raise ValueError(f"{name} must be a (N, F) matrix with F ≥ 1, got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows but the codes have {n}")
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.isfinite(y).all() or (y != np.round(y)).any():
            raise ValueError(f"{name} must be discrete (integers); pass continuous factors through discretize()")
    return y.astype(np.int64)


def _varying(factors: np.ndarray, name: str = "factors") -> None:
    """A classifier needs two classes: every factor must take two values or more."""
    for j in range(factors.shape[1]):
        if np.unique(factors[:, j]).size < 2:
            raise ValueError(f"factor {j} takes a single value in {name}; drop it (nothing can be predicted)")


def _same_width(train: np.ndarray, test: np.ndarray, what: str) -> None:
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test {what} differ in width: {train.shape[1]} and {test.shape[1]}")


def _sklearn_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


# ---------------------------------------------------------------------------------------------
# Discretisation, entropy and mutual information


def discretize(x, bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins, column by column: disentanglement_lib's histogram discretiser.

    Each column's range [min, max] is cut into `bins` equal intervals, closed on the left, the last
    one also on the right (numpy.histogram's edges); a constant column falls in one bin (0).

    Arguments:
        x: (N,) or (N, D) finite values.
        bins: the number of intervals, ≥ 1.
    Returns:
        int64 bin indices in 0 … bins − 1, the shape of x.
    """
    a = _numpy(x)
    if a.ndim not in (1, 2) or a.shape[0] == 0:
        raise ValueError(f"discretize takes a non-empty (N,) or (N, D) array, got shape {a.shape}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an integer ≥ 1, got {bins!r}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("discretize got NaN or infinite values")
    cols = a.reshape(a.shape[0], -1)  # (N, D)
    out = np.zeros(cols.shape, dtype=np.int64)
    for d in range(cols.shape[1]):
        lo, hi = cols[:, d].min(), cols[:, d].max()
        if hi > lo:
            inner = np.linspace(lo, hi, bins + 1)[1:-1]  # the bins − 1 interior edges
            out[:, d] = np.searchsorted(inner, cols[:, d], side="right")
    return out.reshape(a.shape)


def _labels(column: np.ndarray) -> tuple[np.ndarray, int]:
    """Values → 0 … k − 1 and k."""
    values, inverse = np.unique(column, return_inverse=True)
    return inverse.reshape(-1), values.size


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def discrete_entropy(factors) -> np.ndarray:
    """H(y_j) in nats of each column of a discrete matrix (N, F), from counts: (F,)."""
    y = _factors(factors)
    return np.array([_entropy(np.bincount(_labels(y[:, j])[0]) / len(y)) for j in range(y.shape[1])])


def discrete_mutual_info(a, b) -> np.ndarray:
    """I(a_i; b_j) in nats between the columns of two discrete matrices (N, A) and (N, B), from the
    counts of their joint values (the plug-in estimate): (A, B)."""
    x, y = _factors(a, name="a"), _factors(b, name="b")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"a and b differ in length: {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    mi = np.zeros((x.shape[1], y.shape[1]))
    ys = [_labels(y[:, j]) for j in range(y.shape[1])]
    for i in range(x.shape[1]):
        xi, kx = _labels(x[:, i])
        for j, (yj, ky) in enumerate(ys):
            if kx == 1 or ky == 1:  # a constant column: exactly 0, not a rounding error's ±1e-16
                continue
            joint = np.bincount(xi * ky + yj, minlength=kx * ky).reshape(kx, ky) / n  # (kx, ky)
            px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
            nz = joint > 0
            value = float((joint[nz] * np.log(joint[nz] / (px @ py)[nz])).sum())
            mi[i, j] = value if value > 1e-12 else 0.0  # exact independence reads 0, not rounding noise
    return mi


def _top_two_gap(scores: np.ndarray) -> np.ndarray:
    """Per column of (L, F), the best score minus the second best: (F,)."""
    top = np.sort(scores, axis=0)  # ascending
    return top[-1] - top[-2]


# ---------------------------------------------------------------------------------------------
# Drawing codes from a ground truth


def _draw_factors(gt: GroundTruth, n: int, rng: np.random.Generator) -> np.ndarray:
    f = np.array(gt.sample_factors(n, rng), dtype=np.int64)  # a writable copy
    if f.shape != (n, len(gt.factor_sizes)):
        raise ValueError(f"sample_factors({n}) returned shape {f.shape}, expected {(n, len(gt.factor_sizes))}")
    return f


@torch.no_grad()
def _represent(gt: GroundTruth, represent: Represent, factors: np.ndarray) -> np.ndarray:
    """Codes (n, L) float64 of the observations of factors (n, F), in chunks."""
    parts = []
    for start in range(0, len(factors), _CHUNK):
        f = factors[start : start + _CHUNK]
        z = _numpy(represent(gt.images(f)))
        if z.ndim != 2 or z.shape[0] != len(f):
            raise ValueError(f"represent must return a (n, L) matrix for n = {len(f)} images, got shape {z.shape}")
        parts.append(z.astype(np.float64))
    codes = np.concatenate(parts)
    if not np.isfinite(codes).all():
        raise ValueError("represent returned NaN or infinite codes")
    return codes


def _check_gt(gt: GroundTruth) -> int:
    sizes = tuple(gt.factor_sizes)
    if not sizes or min(sizes) < 2:
        raise ValueError(f"every factor needs two values or more, got factor_sizes {sizes}; drop the constant ones")
    return len(sizes)


def _positive(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")


def sample_codes(gt: GroundTruth, represent: Represent, n: int, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """n factor vectors from the data distribution and the codes of their observations.

    Returns:
        codes: (n, L) float64; factors: (n, F) int64.
    """
    _positive(n=n)
    rng = np.random.default_rng(seed)
    factors = _draw_factors(gt, n, rng)
    return _represent(gt, represent, factors), factors


# ---------------------------------------------------------------------------------------------
# BetaVAE score


def _beta_vae_points(gt, represent, n_points: int, batch_size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n_points training points: (features (n, L), labels (n,))."""
    n_factors = len(gt.factor_sizes)
    labels = rng.integers(n_factors, size=n_points)  # (n,) the factor each pair shares
    per_chunk = max(1, _CHUNK // (2 * batch_size))
    features = []
    for start in range(0, n_points, per_chunk):
        k = labels[start : start + per_chunk]
        m, rows = len(k), np.arange(len(k))
        f1 = _draw_factors(gt, m * batch_size, rng).reshape(m, batch_size, n_factors)
        f2 = _draw_factors(gt, m * batch_size, rng).reshape(m, batch_size, n_factors)
        f2[rows, :, k] = f1[rows, :, k]  # pair b of point i shares factor k_i
        z = _represent(gt, represent, np.concatenate([f1, f2]).reshape(-1, n_factors))  # (2 m B, L)
        z1, z2 = z[: m * batch_size], z[m * batch_size :]
        features.append(np.abs(z1 - z2).reshape(m, batch_size, -1).mean(1))  # (m, L)
    return np.concatenate(features), labels


def beta_vae_score(
    gt: GroundTruth,
    represent: Represent,
    *,
    batch_size: int = 64,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    seed: Seed = 0,
) -> dict[str, float]:
    """The BetaVAE score: how well a linear classifier tells which factor a batch of pairs shares.

    Each point: a factor k drawn uniformly, `batch_size` pairs of observations that agree on
    factor k (the rest drawn independently), the feature the mean over the batch of |z₁ − z₂|
    (L,), the label k. A logistic regression (scikit-learn's defaults, C = 1, L-BFGS; max_iter
    raised to 1000 so it converges) is fitted on n_train points and scored on n_eval others.

    Returns:
        train_accuracy, eval_accuracy: in [0, 1]; chance is about 1/F.
    """
    _check_gt(gt)
    _positive(batch_size=batch_size, n_train=n_train, n_eval=n_eval)
    rng = np.random.default_rng(seed)
    x_train, y_train = _beta_vae_points(gt, represent, n_train, batch_size, rng)
    x_eval, y_eval = _beta_vae_points(gt, represent, n_eval, batch_size, rng)
    if np.unique(y_train).size < 2:
        raise ValueError(f"all {n_train} training points drew the same factor; use a larger n_train")
    clf = LogisticRegression(max_iter=1000, random_state=_sklearn_seed(rng)).fit(x_train, y_train)
    return {"train_accuracy": float(clf.score(x_train, y_train)), "eval_accuracy": float(clf.score(x_eval, y_eval))}


# ---------------------------------------------------------------------------------------------
# FactorVAE score


def _factor_vae_votes(gt, represent, n_points, batch_size, rng, global_var, active) -> np.ndarray:
    """(F, L) counts of (fixed factor, code of least normalised variance) over n_points batches."""
    n_factors, n_codes = len(gt.factor_sizes), len(global_var)
    active_idx = np.flatnonzero(active)
    labels = rng.integers(n_factors, size=n_points)  # (n,) the factor held fixed
    votes = np.zeros((n_factors, n_codes), dtype=np.int64)
    per_chunk = max(1, _CHUNK // batch_size)
    for start in range(0, n_points, per_chunk):
        k = labels[start : start + per_chunk]
        m, rows = len(k), np.arange(len(k))
        f = _draw_factors(gt, m * batch_size, rng).reshape(m, batch_size, n_factors)
        f[rows, :, k] = f[rows, 0, k][:, None]  # factor k_i fixed across batch i
        z = _represent(gt, represent, f.reshape(-1, n_factors)).reshape(m, batch_size, n_codes)
        local = z.var(axis=1, ddof=1)[:, active] / global_var[active]  # (m, active L)
        np.add.at(votes, (k, active_idx[local.argmin(1)]), 1)
    return votes


def factor_vae_score(
    gt: GroundTruth,
    represent: Represent,
    *,
    batch_size: int = 64,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    n_variance: int = 10_000,
    prune_threshold: float = 0.05,
    seed: Seed = 0,
) -> dict[str, float]:
    """The FactorVAE score: how well a majority vote tells which factor a batch holds fixed.

    The per-code variance over n_variance observations (ddof 1) normalises the codes; codes whose
    standard deviation is below `prune_threshold` (collapsed to the prior; disentanglement_lib's
    prune_dims.threshold, which compares the square root of the variance) are left out. Each vote:
    a factor k drawn uniformly, a batch of `batch_size` observations sharing a value of factor k,
    and the active code of least variance over the batch divided by its global variance. The
    classifier maps each code to the factor it got most training votes for.

    Returns:
        train_accuracy, eval_accuracy: in [0, 1]; chance is about 1/F (both 0 if no code is
        active); n_active: the number of codes kept.
    """
    _check_gt(gt)
    _positive(n_train=n_train, n_eval=n_eval)
    if batch_size < 2 or n_variance < 2:
        raise ValueError(f"batch_size and n_variance must be ≥ 2 (a variance), got {batch_size} and {n_variance}")
    rng = np.random.default_rng(seed)
    global_var = _represent(gt, represent, _draw_factors(gt, n_variance, rng)).var(axis=0, ddof=1)  # (L,)
    active = (np.sqrt(global_var) >= prune_threshold) & (global_var > 0)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "n_active": 0}
    train = _factor_vae_votes(gt, represent, n_train, batch_size, rng, global_var, active)
    evaluate = _factor_vae_votes(gt, represent, n_eval, batch_size, rng, global_var, active)
    vote = train.argmax(0)  # (L,) each code's factor
    codes = np.arange(train.shape[1])
    return {
        "train_accuracy": float(train[vote, codes].sum() / train.sum()),
        "eval_accuracy": float(evaluate[vote, codes].sum() / evaluate.sum()),
        "n_active": int(active.sum()),
    }


# ---------------------------------------------------------------------------------------------
# MIG


def mig(codes, factors, *, bins: int = 20) -> float:
    """The mutual information gap: for each factor, the mutual information of its most informative
    code minus that of the second, over the factor's entropy; the mean over factors.

    Arguments:
        codes: (N, L) representation, L ≥ 2; discretised into `bins` equal-width bins per code.
        factors: (N, F) discrete factors, each taking two values or more.
    Returns:
        MIG in [0, 1] (1: each factor is captured by one code and ignored by the others).
    """
    z = _codes(codes)
    y = _factors(factors, len(z))
    if z.shape[1] < 2:
        raise ValueError(f"MIG needs at least 2 codes (a gap between the top two), got {z.shape[1]}")
    _varying(y)
    mi = discrete_mutual_info(discretize(z, bins), y)  # (L, F)
    return float(np.mean(_top_two_gap(mi) / discrete_entropy(y)))


# ---------------------------------------------------------------------------------------------
# DCI


DCI_CLASSIFIERS = {
    "boosting": lambda seed: GradientBoostingClassifier(random_state=seed),
    "forest": lambda seed: RandomForestClassifier(max_features=None, random_state=seed),
}
"""the tree ensembles DCI can take its importances from (a random seed → an unfitted classifier).
boosting: disentanglement_lib's, scikit-learn's GradientBoostingClassifier with its defaults (100
stages of depth-3 trees, learning rate 0.1; one tree per stage and factor *value*, so sprites'
113 values grow 11,300 trees per model). forest: Eastwood & Williams' own choice, a
RandomForestClassifier of 100 full-depth trees, each for all of a factor's values, every code a
candidate at every split (as their random forests had it; scikit-learn's √L would spread a perfect
code's importance over useless ones): about 6× faster on sprites. docs/disentanglement.md gives how
far it moves the scores."""


def dci_importance(
    codes_train, factors_train, codes_test, factors_test, *, classifier: str = "boosting", seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One tree ensemble per factor (`DCI_CLASSIFIERS[classifier]`) predicting the factor from all
    codes, the factors fitted side by side on torch's threads (the same result on any number).

    Arguments:
        codes_train, codes_test: (N, L) and (M, L); factors_train, factors_test: (N, F) and (M, F).
        classifier: boosting (disentanglement_lib's) or forest (fast).
    Returns:
        importance (L, F): each ensemble's impurity-based feature importances (columns sum to 1);
        train_accuracy (F,); test_accuracy (F,).
    """
    if classifier not in DCI_CLASSIFIERS:
        raise ValueError(f"classifier must be one of {sorted(DCI_CLASSIFIERS)}, got {classifier!r}")
    z, zt = _codes(codes_train, "codes_train"), _codes(codes_test, "codes_test")
    y, yt = _factors(factors_train, len(z), "factors_train"), _factors(factors_test, len(zt), "factors_test")
    _same_width(z, zt, "codes")
    _same_width(y, yt, "factors")
    _varying(y, "factors_train")
    rng = np.random.default_rng(seed)
    seeds = [_sklearn_seed(rng) for _ in range(y.shape[1])]  # drawn in factor order: the same whatever the threads
    fit = lambda j: DCI_CLASSIFIERS[classifier](seeds[j]).fit(z, y[:, j])  # noqa: E731
    with ThreadPoolExecutor(max(1, min(y.shape[1], torch.get_num_threads()))) as pool:  # the trees release the GIL: factors fit side by side
        models = list(pool.map(fit, range(y.shape[1])))
    importance = np.stack([np.abs(m.feature_importances_) for m in models], axis=1)  # (L, F)
    train_acc = np.array([np.mean(m.predict(z) == y[:, j]) for j, m in enumerate(models)])
    test_acc = np.array([np.mean(m.predict(zt) == yt[:, j]) for j, m in enumerate(models)])
    return importance, train_acc, test_acc


def _weighted_specificity(weights: np.ndarray) -> float:
    """Σ_rows (share of the total) · (1 − H(row normalised) / log(columns)) of a (R, K) matrix ≥ 0."""
    total = weights.sum()
    if total <= 0:
        return 0.0
    k = weights.shape[1]
    score = 0.0
    for row in weights:
        s = row.sum()
        if s > 0:
            score += s / total * (1.0 if k == 1 else 1.0 - _entropy(row / s) / np.log(k))
    return float(score)


def _importance(importance) -> np.ndarray:
    r = _numpy(importance).astype(np.float64)
    if r.ndim != 2 or r.size == 0 or not np.isfinite(r).all() or (r < 0).any():
        raise ValueError(f"importance must be a non-empty (L, F) matrix of finite values ≥ 0, got shape {r.shape}")
    return r


def dci_disentanglement(importance) -> float:
    """D = Σ_i ρ_i (1 − H_F(P_i·)): P_i· code i's importance spread over the F factors (entropy in
    base F), ρ_i its share of the total importance. 1: every code matters for one factor only.
    An all-zero matrix scores 0; with one factor every code scores 1."""
    return _weighted_specificity(_importance(importance))


def dci_completeness(importance) -> float:
    """C = Σ_j ρ_j (1 − H_L(P_·j)): factor j's importance spread over the L codes (entropy in base
    L), weighted by the factor's share of the total. 1: every factor is captured by one code."""
    return _weighted_specificity(_importance(importance).T)


def dci(codes_train, factors_train, codes_test, factors_test, *, classifier: str = "boosting", seed: Seed = 0) -> dict[str, float]:
    """Disentanglement, completeness and informativeness from `dci_importance` (its `classifier`).

    Returns:
        disentanglement, completeness: in [0, 1];
        informativeness_train, informativeness_test: the trees' mean accuracy over factors (as
        disentanglement_lib reports it; the paper states informativeness as a prediction error).
    """
    importance, train_acc, test_acc = dci_importance(codes_train, factors_train, codes_test, factors_test, classifier=classifier, seed=seed)
    return {
        "disentanglement": dci_disentanglement(importance),
        "completeness": dci_completeness(importance),
        "informativeness_train": float(train_acc.mean()),
        "informativeness_test": float(test_acc.mean()),
    }


# ---------------------------------------------------------------------------------------------
# SAP


def sap_matrix(
    codes_train,
    factors_train,
    codes_test=None,
    factors_test=None,
    *,
    continuous: bool = False,
    C: float = 0.01,
    seed: Seed = 0,
) -> np.ndarray:
    """The (L, F) score matrix of SAP: how well each single code predicts each factor.

    Discrete factors: the test accuracy of a linear SVM (scikit-learn's LinearSVC, C = 0.01,
    class_weight "balanced") fitted on the one code, unscaled, to the factor's values.
    Continuous factors (`continuous=True`, any real factors_train; the test set is not used): the
    squared correlation of code and factor on the training set (0 for a constant code or factor).
    """
    z = _codes(codes_train, "codes_train")
    if continuous:
        y = _numpy(factors_train).astype(np.float64)
        if y.ndim != 2 or y.shape[0] != len(z) or not np.isfinite(y).all():
            raise ValueError(f"factors_train must be a finite (N, F) matrix with N = {len(z)}, got shape {y.shape}")
        zc, yc = z - z.mean(0), y - y.mean(0)
        cov = zc.T @ yc / (len(z) - 1)  # (L, F)
        var_z, var_y = zc.var(0, ddof=1)[:, None], yc.var(0, ddof=1)[None, :]  # (L, 1), (1, F)
        ok = (var_z > 1e-12) & (var_y > 1e-12)  # (L, F)
        return np.where(ok, cov**2 / np.where(ok, var_z * var_y, 1.0), 0.0)
    if codes_test is None or factors_test is None:
        raise ValueError("SAP with discrete factors needs a test set (codes_test, factors_test)")
    zt = _codes(codes_test, "codes_test")
    y, yt = _factors(factors_train, len(z), "factors_train"), _factors(factors_test, len(zt), "factors_test")
    _same_width(z, zt, "codes")
    _same_width(y, yt, "factors")
    _varying(y, "factors_train")
    rng = np.random.default_rng(seed)
    scores = np.zeros((z.shape[1], y.shape[1]))
    for i in range(z.shape[1]):
        for j in range(y.shape[1]):
            svm = LinearSVC(C=C, class_weight="balanced", random_state=_sklearn_seed(rng))
            svm.fit(z[:, i : i + 1], y[:, j])
            scores[i, j] = np.mean(svm.predict(zt[:, i : i + 1]) == yt[:, j])
    return scores


def sap(
    codes_train,
    factors_train,
    codes_test=None,
    factors_test=None,
    *,
    continuous: bool = False,
    C: float = 0.01,
    seed: Seed = 0,
) -> float:
    """The separated attribute predictability: the mean over factors of the gap between the two
    codes that predict the factor best, on `sap_matrix`'s scores. Needs L ≥ 2."""
    scores = sap_matrix(codes_train, factors_train, codes_test, factors_test, continuous=continuous, C=C, seed=seed)
    if scores.shape[0] < 2:
        raise ValueError(f"SAP needs at least 2 codes (a gap between the top two), got {scores.shape[0]}")
    return float(np.mean(_top_two_gap(scores)))


# ---------------------------------------------------------------------------------------------
# Modularity and explicitness


def modularity(mutual_info) -> float:
    """Modularity of a code-by-factor mutual information matrix (L, F), F ≥ 2.

    Each code i is compared with the ideal template that keeps only its largest entry θ_i:
    δ_i = Σ_{j ≠ argmax} m_ij² / (θ_i² (F − 1)), modularity_i = 1 − δ_i (0 for a code that carries
    no information). Returns the mean over codes, in [0, 1].
    """
    m = _importance(mutual_info)
    if m.shape[1] < 2:
        raise ValueError(f"modularity needs at least 2 factors, got {m.shape[1]}")
    sq = m**2
    top = sq.max(1)  # (L,)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (sq.sum(1) - top) / (top * (m.shape[1] - 1))
    return float(np.mean(np.where(top > 0, score, 0.0)))


def _explicitness(z, y, zt, yt, seed: int) -> tuple[float, float]:
    """Macro ROC-AUC (train, test) of a one-vs-rest logistic regression predicting y from z."""
    clf = OneVsRestClassifier(LogisticRegression(max_iter=1000, random_state=seed)).fit(z, y)

    def auc(x, labels) -> float:
        proba = clf.predict_proba(x)  # (n, K) in clf.classes_ order, rows normalised to sum 1
        per_value = [
            roc_auc_score(labels == c, proba[:, k]) for k, c in enumerate(clf.classes_) if 0 < np.sum(labels == c) < len(labels)
        ]  # an AUC needs both classes: skip a value absent from the set, or the only one in it
        return float(np.mean(per_value)) if per_value else float("nan")

    return auc(z, y), auc(zt, yt)


def modularity_explicitness(
    codes_train, factors_train, codes_test, factors_test, *, bins: int = 20, seed: Seed = 0
) -> dict[str, float]:
    """Modularity (of the training codes' mutual information with the factors, codes discretised
    into `bins` bins) and explicitness: for each factor, a one-vs-rest logistic regression (one
    binary "this value or another" classifier per value; scikit-learn's defaults, C = 1, L-BFGS,
    max_iter 1000) on all codes, standardised with the training mean and standard deviation; its
    class probabilities (the binary ones, normalised to sum to 1 over values) give one ROC-AUC per
    value, averaged over values (a value absent from a set, or the only one in it, is skipped
    there) and then over factors.

    Returns:
        modularity, explicitness_train, explicitness_test: in [0, 1]; chance explicitness is 0.5.
    """
    z, zt = _codes(codes_train, "codes_train"), _codes(codes_test, "codes_test")
    y, yt = _factors(factors_train, len(z), "factors_train"), _factors(factors_test, len(zt), "factors_test")
    _same_width(z, zt, "codes")
    _same_width(y, yt, "factors")
    _varying(y, "factors_train")
    mod = modularity(discrete_mutual_info(discretize(z, bins), y))
    mean, std = z.mean(0), z.std(0)
    std = np.where(std > 0, std, 1.0)
    zn, ztn = (z - mean) / std, (zt - mean) / std
    rng = np.random.default_rng(seed)
    pairs = [_explicitness(zn, y[:, j], ztn, yt[:, j], _sklearn_seed(rng)) for j in range(y.shape[1])]
    train, test = np.array(pairs).T
    return {"modularity": mod, "explicitness_train": float(np.mean(train)), "explicitness_test": float(np.mean(test))}


# ---------------------------------------------------------------------------------------------
# Everything at once


SCORES = {
    "beta_vae": "BetaVAE score (Higgins et al. 2017): eval accuracy of a linear classifier naming the factor two batches share, from their codes' differences",
    "factor_vae": "FactorVAE score (Kim & Mnih 2018): eval accuracy of a majority vote naming the fixed factor from the latent of least normalised variance",
    "mig": "mutual information gap (Chen et al. 2018): per factor, the gap between its two most informative latents over its entropy, averaged",
    "dci_disentanglement": "DCI disentanglement (Eastwood & Williams 2018): how far each latent predicts one factor only (boosted trees' importances)",
    "dci_completeness": "DCI completeness: how far each factor is captured by one latent only",
    "dci_informativeness": "DCI informativeness: test accuracy of the trees predicting the factors from the latents",
    "sap": "SAP score (Kumar et al. 2018): per factor, the gap in linear predictability between its two best latents",
    "modularity": "modularity (Ridgeway & Mozer 2018): how far each latent depends on one factor only",
    "explicitness": "explicitness (Ridgeway & Mozer 2018): test ROC-AUC of logistic regressions predicting each factor value from the latents",
}
"""the scores `all_scores` gives, each with what it measures"""


def all_scores(
    gt: GroundTruth,
    represent: Represent,
    *,
    n: int = 10_000,
    n_test: int = 5_000,
    batch_size: int = 64,
    n_votes: int = 10_000,
    n_votes_eval: int = 5_000,
    n_variance: int = 10_000,
    bins: int = 20,
    dci_classifier: str = "boosting",
    seed: Seed = 0,
) -> dict[str, float]:
    """The nine scores with disentanglement_lib's defaults, as one flat dict.

    MIG, DCI, SAP, modularity and explicitness share one sample of n training and n_test test
    points (disentanglement_lib draws a fresh sample per score; the expectations are the same).

    Arguments:
        gt, represent: the ground truth and the representation (see `GroundTruth`).
        n, n_test: points for the matrix scores (MIG uses the n training points).
        batch_size, n_votes, n_votes_eval: the BetaVAE and FactorVAE batches and training/eval
            points; n_variance: the points for FactorVAE's global variances.
        bins: the histogram bins for MIG and modularity.
        dci_classifier: DCI's trees (`DCI_CLASSIFIERS`): boosting (disentanglement_lib's), forest.
        seed: an int or a numpy Generator; every random choice comes from it.
    The time goes to encoding the images (BetaVAE's 128 and FactorVAE's 64 per point) and to DCI's
    boosted trees: one per factor value and stage, so factors with many values (dSprites' 32
    positions) take minutes at the default n; dci_classifier="forest" is about 6× faster.
    Returns:
        beta_vae, factor_vae (eval accuracies), mig, dci_disentanglement, dci_completeness,
        dci_informativeness (test accuracy), sap, modularity, explicitness (test).
    """
    _check_gt(gt)
    _positive(n=n, n_test=n_test)
    rng = np.random.default_rng(seed)
    beta = beta_vae_score(gt, represent, batch_size=batch_size, n_train=n_votes, n_eval=n_votes_eval, seed=rng)
    factor = factor_vae_score(
        gt, represent, batch_size=batch_size, n_train=n_votes, n_eval=n_votes_eval, n_variance=n_variance, seed=rng
    )
    z, y = sample_codes(gt, represent, n, rng)
    zt, yt = sample_codes(gt, represent, n_test, rng)
    d = dci(z, y, zt, yt, classifier=dci_classifier, seed=rng)
    me = modularity_explicitness(z, y, zt, yt, bins=bins, seed=rng)
    return {
        "beta_vae": beta["eval_accuracy"],
        "factor_vae": factor["eval_accuracy"],
        "mig": mig(z, y, bins=bins),
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness_test"],
        "sap": sap(z, y, zt, yt, seed=rng),
        "modularity": me["modularity"],
        "explicitness": me["explicitness_test"],
    }

"""Latent → factor recovery: how far a representation carries the ground-truth factors.

`pmi` (vaelab.metrics.latent) fits the other direction, factors → latents, and scores its mean
squared error: a collapsed posterior (every latent mean constant) fits that perfectly. The scores
here read the latents and ask for the factors, so a representation that carries nothing scores 0:

- MCC, the mean correlation coefficient (Khemakhem et al. 2020, "Variational Autoencoders and
  Nonlinear ICA"): the absolute correlation of every latent with every factor, each factor
  matched to its own latent by the Hungarian algorithm, averaged over the factors; Pearson
  (linear) or Spearman (any monotone relation).
- R² of a regression from the latents to each factor, fitted on training codes and scored on
  held-out ones: linear, and a small multilayer perceptron for relations no line captures.
  Below 0 (worse than predicting the training mean) is reported as 0.
- IRS, the interventional robustness score (Suter et al. 2019, "Robustly Disentangled Causal
  Mechanisms"), as disentanglement_lib computes it: for each latent and factor, how little the
  latent moves while the factor is held fixed (its 99 % quantile of deviations from the mean
  given the factor's value), against the latent's largest deviation overall; each latent's best
  factor, averaged with weights its spread.

    mcc(codes, factors)                                         # Pearson; method="spearman"
    factor_r2(codes, factors, test_codes, test_factors)         # (F,) held-out R², linear
    irs(codes, factors)

codes (N, L) and factors (N, F) are arrays or tensors; MCC and IRS need no split. The factors may
be continuous (MCC, R²); IRS discretizes them into equal-width bins first.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

from vaelab.errors import UserError
from vaelab.metrics.disentanglement import discretize

CORRELATIONS = ("pearson", "spearman")
"""the correlations MCC takes"""


def _matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise ValueError(f"{name} must be (N, D) with N >= 2, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _pair(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    z, y = _matrix(codes, "codes"), _matrix(factors, "factors")
    if len(z) != len(y):
        raise ValueError(f"codes and factors must have as many rows, got {len(z)} and {len(y)}")
    return z, y


def correlations(codes, factors, method: str = "pearson") -> np.ndarray:
    """(L, F) |correlation| of each latent with each factor; a constant column correlates 0.

    Arguments:
        method: pearson, or spearman (Pearson's on the ranks, ties averaged).
    """
    if method not in CORRELATIONS:
        raise ValueError(f"method must be one of {CORRELATIONS}, got {method!r}")
    z, y = _pair(codes, factors)
    moves = np.outer(np.ptp(z, axis=0) > 0, np.ptp(y, axis=0) > 0)  # (L, F) neither column constant
    if method == "spearman":
        z, y = rankdata(z, axis=0), rankdata(y, axis=0)
    z, y = z - z.mean(0), y - y.mean(0)
    scale = np.outer(np.linalg.norm(z, axis=0), np.linalg.norm(y, axis=0))  # (L, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.abs(z.T @ y) / scale
    return np.where(moves, np.clip(r, 0.0, 1.0), 0.0)


def mcc(codes, factors, *, method: str = "pearson") -> float:
    """The mean correlation coefficient: each factor matched to its own latent (Hungarian
    algorithm on |correlation|, the total maximised), the matched correlations averaged.

    1 for any representation whose latents are the factors up to order, sign and (Spearman:
    monotone) rescaling; 0 for constant latents. Needs at least as many latents as factors.
    """
    r = correlations(codes, factors, method)  # (L, F)
    if r.shape[0] < r.shape[1]:
        raise UserError(f"MCC matches each of the {r.shape[1]} factors to its own latent, but the representation has only {r.shape[0]} latents")
    rows, cols = linear_sum_assignment(r, maximize=True)
    return float(r[rows, cols].mean())


def factor_r2(codes_train, factors_train, codes_test, factors_test, *, nonlinear: bool = False, seed: int = 0) -> np.ndarray:
    """(F,) held-out R² of a regression from the latents to each factor, below 0 reported as 0.

    The latents are standardized on the training codes; each factor is scored against its own
    test-set variance (1 − residual sum of squares / total), so predicting the training mean
    scores about 0.

    Arguments:
        nonlinear: False: least squares; True: a multilayer perceptron (two hidden layers of 32
            ReLUs, Adam at 0.01, early stopping on a tenth of the training codes) predicting every
            standardized factor at once.
        seed: the perceptron's initialisation and split.
    """
    z, y = _pair(codes_train, factors_train)
    zt, yt = _pair(codes_test, factors_test)
    if z.shape[1] != zt.shape[1] or y.shape[1] != yt.shape[1]:
        raise ValueError(f"training and test sets differ in width: codes {z.shape[1]} vs {zt.shape[1]}, factors {y.shape[1]} vs {yt.shape[1]}")
    scale = StandardScaler().fit(z)
    z, zt = scale.transform(z), scale.transform(zt)
    y_mean, y_std = y.mean(0), np.where(y.std(0) > 0, y.std(0), 1.0)
    if nonlinear:
        model = MLPRegressor(hidden_layer_sizes=(32, 32), learning_rate_init=0.01, max_iter=500, early_stopping=True, random_state=seed)
    else:
        model = LinearRegression()
    target = (y - y_mean) / y_std  # (N, F)
    model.fit(z, target[:, 0] if target.shape[1] == 1 else target)
    pred = model.predict(zt).reshape(len(zt), -1) * y_std + y_mean  # (N_test, F)
    total = ((yt - yt.mean(0)) ** 2).sum(0)  # (F,)
    residual = ((yt - pred) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - residual / total
    return np.clip(np.where(total > 0, r2, 0.0), 0.0, 1.0)


def irs(codes, factors, *, bins: int = 20, quantile: float = 0.99) -> float:
    """The interventional robustness score: at most 1, about 0 for latents that move as far with
    every factor held fixed as without.

    The factors are put into `bins` equal-width bins (`discretize`); latents that never move are
    left out (none left: 0). For latent l and factor f, the deviation of l from its mean given
    each value of f (its `quantile` quantile over the codes with that value), averaged over f's
    values and divided by l's largest deviation from its overall mean, is how far l moves with f
    held fixed; 1 minus it, maximised over f, is l's robustness; the score averages it over the
    latents, weighted by their largest deviations.
    """
    z, y = _pair(codes, factors)
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    z = z[:, np.ptp(z, axis=0) > 0]  # (N, L') the latents that move
    if z.shape[1] == 0:
        return 0.0
    y = discretize(y, bins)
    spread = np.abs(z - z.mean(0)).max(0)  # (L',) each latent's largest deviation
    moved = np.zeros((z.shape[1], y.shape[1]))  # (L', F)
    for f in range(y.shape[1]):
        values = np.unique(y[:, f])
        for v in values:
            held = z[y[:, f] == v]
            moved[:, f] += np.quantile(np.abs(held - held.mean(0)), quantile, axis=0)
        moved[:, f] /= len(values)
    robustness = (1.0 - moved / spread[:, None]).max(1)  # (L',)
    return float(np.average(robustness, weights=spread))

"""The Fréchet distance between Gaussian fits of two feature sets (Heusel et al. 2017, "GANs
Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"), and the class
distribution of generated images.

    fid(features_real, features_fake)               # any features: (N, D) and (M, D)
    fid(extract(real), extract(fake))               # extract: images → features, e.g. a FeatureNet

    FD = ‖μ₁ − μ₂‖² + Tr(C₁) + Tr(C₂) − 2 Tr((C₁ C₂)^½)

The trace of the matrix square root is computed without a general (non-symmetric) square root:
(C₁ C₂)^½ is similar to (C₁^½ C₂ C₁^½)^½, a symmetric positive semi-definite matrix, so
Tr((C₁ C₂)^½) = Σ √λᵢ over the eigenvalues λᵢ of C₁^½ C₂ C₁^½, clipped at 0. Two symmetric
eigendecompositions in float64; rank-deficient covariances (fewer images than features) and tiny
negative eigenvalues from rounding are handled without an imaginary part to discard.

A FID figure is only comparable with figures on the same features: vaelab's built-in feature net
is a small classifier trained on the dataset itself (`vaelab.metrics.featurenet`), so its numbers
are not Inception-FID and are always labelled with the net that made them.
"""

from __future__ import annotations

import math

import torch


def _psd_sqrt(c: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped)."""
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), covariance (D, D)) of features (N, D), in float64, unbiased (N − 1)."""
    f = features.detach().double().flatten(1)
    if f.shape[0] < 2:
        raise ValueError(f"a Gaussian fit needs at least 2 feature vectors, got {f.shape[0]}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """FD between N(mu1, cov1) and N(mu2, cov2); means (D,), covariances (D, D), symmetric PSD."""
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s1 = _psd_sqrt((cov1 + cov1.T) / 2)
    middle = s1 @ cov2 @ s1
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = eig.clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return max(float(value), 0.0)


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussian fits of two feature sets (N, D) and (M, D)."""
    if features_a.shape[1:] != features_b.shape[1:]:
        raise ValueError(f"feature sets differ in shape: {tuple(features_a.shape)} and {tuple(features_b.shape)}")
    return frechet_distance(*gaussian_fit(features_a), *gaussian_fit(features_b))


def class_distribution(predicted: torch.Tensor, reference: torch.Tensor, n_classes: int) -> dict[str, float]:
    """How the classes of generated images (labels predicted by a classifier) are spread, against
    a reference label set (the training labels): the study's "accuracy about number distribution".

    Arguments:
        predicted: (N,) int labels of the generated images.
        reference: (M,) int labels of the reference set.
        n_classes: K.
    Returns:
        class_tv: total-variation distance between the two label histograms (0 = the same spread);
        class_entropy: entropy of the predicted histogram, in nats (log K is perfectly even);
        class_entropy_ref: the same for the reference.
    """
    p = torch.bincount(predicted.long().flatten(), minlength=n_classes)[:n_classes].double()
    q = torch.bincount(reference.long().flatten(), minlength=n_classes)[:n_classes].double()
    p, q = p / p.sum(), q / q.sum()
    entropy = lambda h: float(-(h[h > 0] * h[h > 0].log()).sum()) + 0.0  # noqa: E731  (+ 0.0: no "-0.0")
    return {"class_tv": 0.5 * float((p - q).abs().sum()), "class_entropy": entropy(p), "class_entropy_ref": entropy(q), "class_entropy_max": math.log(n_classes)}

"""Metrics: pure functions of image tensors (and features); they import nothing from the layers
that train or build models. The disentanglement scores load scikit-learn, so they are imported
when first used (`from vaelab.metrics import mig` works as for the others)."""

import importlib

from vaelab.metrics.datasets import mean_intensity, occupancy, occupancy_distance, variability
from vaelab.metrics.featurenet import FeatureNet, FeatureNetConfig, feature_net
from vaelab.metrics.fid import class_distribution, fid, frechet_distance, gaussian_fit
from vaelab.metrics.latent import LinearMap, decoder_mse, fit_linear_map, pmi
from vaelab.metrics.points import block_centres, marginal_histograms, total_variation
from vaelab.metrics.prdc import knn_radii, prdc

DISENTANGLEMENT = (
    "GroundTruth",
    "all_scores",
    "beta_vae_score",
    "dci",
    "dci_completeness",
    "dci_disentanglement",
    "dci_importance",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "factor_vae_score",
    "mig",
    "modularity",
    "modularity_explicitness",
    "sample_codes",
    "sap",
    "sap_matrix",
)
"""the names vaelab.metrics.disentanglement provides here, on first use"""


def __getattr__(name: str):
    if name in DISENTANGLEMENT:
        return getattr(importlib.import_module("vaelab.metrics.disentanglement"), name)
    raise AttributeError(f"module 'vaelab.metrics' has no attribute {name!r}")


__all__ = [
    "FeatureNet",
    "FeatureNetConfig",
    "GroundTruth",
    "LinearMap",
    "all_scores",
    "beta_vae_score",
    "block_centres",
    "class_distribution",
    "dci",
    "dci_completeness",
    "dci_disentanglement",
    "dci_importance",
    "decoder_mse",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "factor_vae_score",
    "feature_net",
    "fid",
    "fit_linear_map",
    "frechet_distance",
    "gaussian_fit",
    "marginal_histograms",
    "mean_intensity",
    "knn_radii",
    "mig",
    "modularity",
    "modularity_explicitness",
    "occupancy",
    "occupancy_distance",
    "pmi",
    "prdc",
    "sample_codes",
    "sap",
    "sap_matrix",
    "total_variation",
    "variability",
]

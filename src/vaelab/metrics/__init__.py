"""Metrics: pure functions of image tensors (and features); they import nothing from the layers
that train or build models."""

from vaelab.metrics.datasets import mean_intensity, occupancy, occupancy_distance, variability
from vaelab.metrics.featurenet import FeatureNet, FeatureNetConfig, feature_net
from vaelab.metrics.fid import class_distribution, fid, frechet_distance, gaussian_fit
from vaelab.metrics.latent import LinearMap, decoder_mse, fit_linear_map, pmi
from vaelab.metrics.points import block_centres, marginal_histograms, total_variation
from vaelab.metrics.prdc import knn_radii, prdc

__all__ = [
    "FeatureNet",
    "FeatureNetConfig",
    "LinearMap",
    "block_centres",
    "class_distribution",
    "decoder_mse",
    "feature_net",
    "fid",
    "fit_linear_map",
    "frechet_distance",
    "gaussian_fit",
    "marginal_histograms",
    "mean_intensity",
    "knn_radii",
    "occupancy",
    "occupancy_distance",
    "pmi",
    "prdc",
    "total_variation",
    "variability",
]

"""Metrics: pure functions of image tensors (and features); they import nothing from the layers
that train or build models."""

from vaelab.metrics.datasets import mean_intensity, occupancy, occupancy_distance, variability
from vaelab.metrics.latent import LinearMap, decoder_mse, fit_linear_map, pmi
from vaelab.metrics.points import block_centres, marginal_histograms, total_variation
from vaelab.metrics.prdc import knn_radii, prdc

__all__ = [
    "LinearMap",
    "block_centres",
    "decoder_mse",
    "fit_linear_map",
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

"""Metrics: pure functions of image tensors (and features); they import nothing from the layers
that train or build models."""

from vaelab.metrics.datasets import mean_intensity, occupancy, occupancy_distance, variability
from vaelab.metrics.points import block_centres, marginal_histograms, total_variation
from vaelab.metrics.prdc import knn_radii, prdc

__all__ = [
    "block_centres",
    "marginal_histograms",
    "mean_intensity",
    "knn_radii",
    "occupancy",
    "occupancy_distance",
    "prdc",
    "total_variation",
    "variability",
]

"""Datasets: a name → builder registry (`DATASETS`) and the `Dataset` record.

Images are float32 (N, C, H, W) in [0, 1], with optional labels (N,) and factors (N, F).
"""

from vaelab.data.registry import DATASETS, Dataset, DatasetSpec, load_data, register, test_data_config
from vaelab.data import bundled, files, synthetic  # noqa: F401  (registers the datasets)
from vaelab.data import fontdigits  # noqa: F401  (registers fontdigits)
from vaelab.data import sprites  # noqa: F401  (registers sprites)

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "load_data", "register", "test_data_config"]

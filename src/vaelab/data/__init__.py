"""Datasets: a name → builder registry (`DATASETS`) and the `Dataset` record.

Images are float32 (N, C, H, W) in [0, 1], with optional labels (N,) and factors (N, F).
"""

from vaelab.data.registry import DATASETS, Dataset, DatasetSpec, load_data, register, test_data_config
from vaelab.data import bundled, files, synthetic  # noqa: F401  (registers the datasets)
from vaelab.data import fontdigits  # noqa: F401  (registers fontdigits)
from vaelab.data import sprites  # noqa: F401  (registers sprites)

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "listing", "load_data", "register", "test_data_config"]


def listing() -> str:
    """What `vaelab datasets` prints: each dataset, its description and its parameters with their
    defaults. `vaelab datasets` prints it from LISTING, this text written into the package, so it
    loads no PyTorch; a test checks the file is current."""
    from dataclasses import fields

    lines = []
    for name, spec in sorted(DATASETS.items()):
        params = ", ".join(f"data.{f.name}={f.default!r}" for f in fields(spec.params))
        lines.append(f"{name:<14} {spec.description}" + (f"\n{'':<14} {params}" if params else ""))
    return "\n".join(lines) + "\n"

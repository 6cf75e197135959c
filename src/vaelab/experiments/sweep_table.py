"""sweep.csv: its columns, what each holds, and the one place it is written and read.

One row per cell (grid point × seed): the cell's folder name, its seed, its family (when the grid
has families), each swept key's value (empty for another family's keys),
the figures of `sweep.metrics` (vaelab.evaluate.METRICS' sweep columns), the same figures of the
untrained model (`<column>_untrained`), the training columns, and the step where it diverged.
"""

from __future__ import annotations

import math
from pathlib import Path

from vaelab.config import parse_value
from vaelab.evaluate import METRICS
from vaelab.runfolder import read_csv, write_csv

SWEEP_TABLE = "sweep.csv"
"""the sweep's table, in the sweep folder (rewritten as each group of cells finishes)"""

TRAIN_COLUMNS = {
    "train_loss": "training loss (mean of the last 100 steps)",
    "train_recon": "training reconstruction term (mean of the last 100 steps)",
    "train_kl": "training KL term (mean of the last 100 steps)",
    "train_seconds": "training time in seconds",
}
"""the columns every row has beside its metrics, each with what it holds"""

DIVERGED_COLUMN = "diverged_at"
"""the step at which a cell's training diverged (its other columns then stay empty); empty if it did not"""


def columns(keys: list[str], metrics: tuple[str, ...]) -> list[str]:
    """The header of a sweep over `keys` measuring `metrics` (names of METRICS)."""
    figures = [c for m in metrics for c in METRICS[m].sweep_columns]
    return ["cell", "seed", *keys, *figures, *(f"{c}_untrained" for c in figures), *TRAIN_COLUMNS, DIVERGED_COLUMN]


def figure_columns(header: list[str], keys: list[str]) -> list[str]:
    """The columns of `header` that hold a trained cell's figures (its metrics and training terms;
    not its names, the untrained model's figures, the time or the divergence)."""
    return [c for c in header if c not in ("cell", "seed", *keys, "train_seconds", DIVERGED_COLUMN) and not c.endswith("_untrained")]


def diverged_step(row: dict) -> int | None:
    """The step at which the cell of a row diverged, or None."""
    value = row.get(DIVERGED_COLUMN, math.nan)
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def write_table(path: Path, rows: list[dict], header: list[str]) -> None:
    """Write rows (in the order given) as a sweep.csv with `header` (`columns`)."""
    write_csv(path, rows, header)


def read_table(path: Path, keys: list[str]) -> list[dict]:
    """Rows of a sweep.csv over the key columns `keys` (`grid.key_columns`), typed as written: cell
    and family strings, seed an int, each swept value parsed back as it was given (4 stays an int,
    0.5 a float, true a bool; NaN where the cell's family does not sweep it), the figures floats
    (NaN when empty). A missing file has no rows."""
    rows = read_csv(path, int_columns=("seed",), str_columns=("cell", *keys))
    swept = [k for k in keys if k != "family"]
    for row in rows:
        row.update({k: parse_value(row[k], f"{path}: {k}") if row[k] else math.nan for k in swept})
    return rows

"""chain.csv: its columns, what each holds, and the one place it is written and read.

One row per seed × generation; generation 0 is the original data, g the data VAE g−1 generated.
"""

from __future__ import annotations

from pathlib import Path

from vaelab.evaluate import METRICS as MODEL_METRICS
from vaelab.evaluate import TAIL_QUANTILES
from vaelab.runfolder import read_csv, write_csv

CHAIN_TABLE = "chain.csv"
"""the chain's table: in the chain folder every seed's rows, in each seed folder that seed's own
(its resume point, written after every generation)"""

VARIABILITY_PAIRS = 10_000
"""random pairs of images the variability is averaged over"""

PRDC = ("precision", "recall", "density", "coverage")
_AGAINST = {"train": "the generator's own training set", "orig": "the original data"}
_PRDC_MEANING = {
    "precision": "share of this data's images inside the k-NN balls (k = 5, pixels) of {}: fidelity",
    "recall": "share of the images of {} inside this data's k-NN balls: diversity",
    "density": "how many balls of {} hold each image of this data, over k",
    "coverage": "share of the images of {} whose ball holds an image of this data",
}

POSTERIOR_COLUMNS = tuple(MODEL_METRICS["posterior"].columns)
"""the generating VAE's posterior diagnostics (vaelab.evaluate's `posterior` metric)"""
TAIL_COLUMNS = ("nll_iw", *(f"nll_iw_q{q}" for q in TAIL_QUANTILES), "tail_share")
"""the generating VAE's likelihood of held-out originals, and how much of it lies in VAE 0's tail"""

METRICS: dict[str, str] = {
    "variability": f"mean L2 distance of {VARIABILITY_PAIRS:,} random pairs of images (the original points score about 3.85)",
    "mean_intensity": "mean pixel value",
    "distribution_diff_train": "L2 distance between the occupancy maps (sum of the images over its maximum) of this data and of the generator's training set",
    "distribution_diff_orig": "the same against the original data",
    **{f"{m}_{side}": _PRDC_MEANING[m].format(against) for side, against in _AGAINST.items() for m in PRDC},
    "x_tv": "points: total-variation distance of the block centres' x marginal from the true one",
    "y_tv": "points: the same for y",
    "x_mean": "points: mean block-centre x",
    "y_mean": "points: mean block-centre y",
    "neg_elbo": "the generating VAE's negative ELBO (β = 1, vaelab.evaluate.neg_elbo) on held-out original images; empty at generation 0",
    **{c: f"the generating VAE on held-out originals: {MODEL_METRICS['posterior'].columns[c]}" for c in POSTERIOR_COLUMNS},
    "nll_iw": "the generating VAE's importance-weighted bound on −log p(x) of held-out originals (chain.iw_samples samples each), mean",
    **{f"nll_iw_q{q}": f"its {q} % quantile over the held-out originals" for q in TAIL_QUANTILES},
    "tail_share": "share of held-out originals whose nll_iw exceeds VAE 0's 99 % quantile (0.01 at generation 1): how much of the original data has fallen into the tail",
    "memorised": "share of (image, training image) pairs where this data's image is nearer the generator's training set than that training image is to its nearest other (pixels): ½ for fresh draws, 1 for copies; empty at generation 0",
}
"""each metric column of chain.csv → what it holds (the report's table and docs/chain.md read it)"""

PANELS: dict[str, str] = {
    "variability": "variability (mean pair L2)",
    "mean_intensity": "mean intensity",
    "distribution_diff_orig": "occupancy L2 vs original",
    "distribution_diff_train": "occupancy L2 vs own training set",
    "precision_orig": "precision vs original",
    "recall_orig": "recall vs original",
    "density_orig": "density vs original",
    "coverage_orig": "coverage vs original",
    "precision_train": "precision vs own training set",
    "recall_train": "recall vs own training set",
    "x_tv": "TV(x marginal, truth)",
    "y_tv": "TV(y marginal, truth)",
    "neg_elbo": "−ELBO on held-out originals",
    "active_units": "active latent units",
    "posterior_kl": "KL term (held-out originals)",
    "aggregate_kl": "KL(Gaussian fit of the codes ‖ prior)",
    "aggregate_mmd": "MMD²(posterior draws, prior draws)",
    "mutual_info": "I(x; z), nats",
    "nll_iw_q99": "99 % quantile of nll_iw (originals)",
    "tail_share": "share of originals past VAE 0's 99 % nll",
    "memorised": "memorisation (½: fresh draws, 1: copies)",
}
"""the columns a chain's report draws along the generations, each with its panel's title"""

COLUMNS = ("seed", "generation", "n_train", *METRICS)


def write_table(path: Path, rows: list[dict]) -> None:
    """Write rows as a chain.csv, sorted by seed and generation."""
    write_csv(path, sorted(rows, key=lambda r: (r["seed"], r["generation"])), COLUMNS)


def read_table(path: Path) -> list[dict]:
    """The rows of a chain.csv: ints for seed/generation/n_train, floats (NaN when empty) elsewhere."""
    return read_csv(path, int_columns=("seed", "generation", "n_train"))

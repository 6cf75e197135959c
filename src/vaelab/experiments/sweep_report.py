"""A sweep's report: the sections `vaelab sweep` writes into report.html, built from the sweep
folder's files alone (`vaelab report DIR` rebuilds them); metric titles come from METRICS."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from vaelab.evaluate import METRICS
from vaelab.report import PLOT_LIMIT, Section, fig_png, img, plain, plottable, plt, read_config, smooth, table, write_page
from vaelab.experiments.grid import key_columns, parse_grid
from vaelab.experiments.sweep_table import SWEEP_TABLE, TRAIN_COLUMNS, diverged_step, figure_columns, read_table
from vaelab.runfolder import atomic_write, csv_text, read_metrics

def panel_title(column: str) -> str:
    """A panel's title: the column and what it holds (vaelab.evaluate.METRICS), wrapped."""
    meaning = next((m.columns[column] for m in METRICS.values() if column in m.columns), TRAIN_COLUMNS.get(column, ""))
    return textwrap.fill(f"{column}: {meaning}" if meaning else column, 56)


def read_sweep(sweep_dir: Path) -> tuple[list[str], list[str], list[dict]]:
    """(swept keys, figure columns, rows) of a sweep folder; a swept key's values are floats where
    every value is a number, as sweep.csv writes them otherwise."""
    cfg = read_config(sweep_dir / "config.toml")
    keys = key_columns(parse_grid(cfg.get("sweep", {}).get("grid", [])))
    rows = read_table(sweep_dir / SWEEP_TABLE, keys)
    for k in keys:
        numeric = all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in rows)
        for r in rows:
            r[k] = float(r[k]) if numeric else csv_text(r[k])
    return keys, figure_columns(list(rows[0]) if rows else [], keys), rows


def _mean(values) -> float:
    v = [x for x in values if isinstance(x, float) and not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def _levels(rows: list[dict], key: str) -> list:
    vals = list(dict.fromkeys(r[key] for r in rows))
    return sorted(vals) if all(isinstance(v, float) for v in vals) else vals


def _label(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:g}"  # NaN: a key another family sweeps
    return plain(str(v))


def sweep_line_figure(rows: list[dict], key: str, metrics: list[str]) -> bytes:
    """One panel per metric against the swept key: mean over seeds, band min–max, and the
    untrained model's value as a dashed line."""
    levels = _levels(rows, key)
    numeric = all(isinstance(v, float) for v in levels)
    x = plottable(levels) if numeric else np.arange(len(levels))
    cols = min(3, len(metrics)) or 1
    nrows = math.ceil(len(metrics) / cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        at = [[r[m] for r in rows if r[key] == v] for v in levels]
        mean = plottable([_mean(a) for a in at])
        low = plottable([np.nanmin(a) if not all(math.isnan(q) for q in a) else np.nan for a in at])
        high = plottable([np.nanmax(a) if not all(math.isnan(q) for q in a) else np.nan for a in at])
        ax.plot(x, mean, marker="o", ms=3, lw=1.5, color="#1f4e79", label="trained")
        if len({r["seed"] for r in rows}) > 1:
            ax.fill_between(x, low, high, color="#1f4e79", alpha=0.2, lw=0)
        base = _mean([r.get(f"{m}_untrained", math.nan) for r in rows])
        if abs(base) < PLOT_LIMIT:  # not NaN, and a value the axis can hold
            ax.axhline(base, color="#888", ls="--", lw=1, label=f"untrained ({base:.3g})")
            ax.legend(fontsize=7)
        if numeric and np.nanmin(x, initial=np.inf) > 0 and np.nanmax(x, initial=0) / np.nanmin(x, initial=np.inf) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(x, [_label(v) for v in levels], rotation=30, fontsize=8)
        ax.set_title(panel_title(m), fontsize=9)
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig_png(fig)


def sweep_heatmap(rows: list[dict], keys: tuple[str, str], metric: str) -> bytes:
    """The metric over the first two swept keys (x: the first, y: the second), mean over seeds and
    over any further keys, each cell annotated; the untrained value in the title."""
    kx, ky = keys
    xs, ys = _levels(rows, kx), _levels(rows, ky)
    grid = plottable([[_mean([r[metric] for r in rows if r[kx] == x and r[ky] == y]) for x in xs] for y in ys])
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(xs), max(2.4, 1.0 + 0.42 * len(ys))))  # room for the two-line title over one row
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.05)
    ax.set_xticks(range(len(xs)), [_label(v) for v in xs], fontsize=8)
    ax.set_yticks(range(len(ys)), [_label(v) for v in ys], fontsize=8)
    ax.set_xlabel(kx)
    ax.set_ylabel(ky)
    if len(xs) * len(ys) <= 160:
        finite = grid[np.isfinite(grid)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=6.5, color="white" if v < mid else "black")
    base = _mean([r.get(f"{metric}_untrained", math.nan) for r in rows])
    heading = panel_title(metric) + (f"\nuntrained model: {base:.4g}" if not math.isnan(base) else "")
    ax.set_title(heading, fontsize=9)
    fig.tight_layout()
    return fig_png(fig)


def rank_correlation_figure(rows: list[dict], metrics: list[str]) -> bytes:
    """Spearman's rank correlation between every two metrics over the trained cells (each pair on
    the cells where both are finite; blank where fewer than 3 are): do the metrics rank the
    models alike? (Locatello et al. 2019's Figure 3)"""
    values = {m: np.array([r.get(m, math.nan) for r in rows], dtype=float) for m in metrics}
    rho = np.full((len(metrics), len(metrics)), np.nan)
    for i, a in enumerate(metrics):
        for j, b in enumerate(metrics):
            both = np.isfinite(values[a]) & np.isfinite(values[b])
            if both.sum() >= 3 and np.ptp(values[a][both]) > 0 and np.ptp(values[b][both]) > 0:
                rho[i, j] = spearmanr(values[a][both], values[b][both]).statistic
    side = 1.2 + 0.45 * len(metrics)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(rho, vmin=-1, vmax=1, cmap="RdBu_r")
    fig.colorbar(im, ax=ax, fraction=0.05)
    ax.set_xticks(range(len(metrics)), metrics, rotation=90, fontsize=7)
    ax.set_yticks(range(len(metrics)), metrics, fontsize=7)
    for (i, j), v in np.ndenumerate(rho):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5.5, color="white" if abs(v) > 0.6 else "black")
    ax.set_title("Spearman rank correlation between metrics, over the trained cells", fontsize=9)
    fig.tight_layout()
    return fig_png(fig)


def sweep_training_figure(sweep_dir: Path, keys: list[str], rows: list[dict]) -> bytes | None:
    """The training loss of every cell (seed 0): one panel per value of the second swept key, one
    line per value of the first (keys ["cell"]: one line per cell), smoothed."""
    rows = [r for r in rows if r["seed"] == 0]
    if not rows:
        return None
    k1 = keys[0] if keys else None
    k2 = keys[1] if len(keys) > 1 else None
    panels = _levels(rows, k2) if k2 else [None]
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.6 * nrows), squeeze=False, sharey=True)
    levels = _levels(rows, k1) if k1 else [None]
    cmap = plt.get_cmap("viridis")
    for ax, p in zip(axes.flat, panels):
        for i, v in enumerate(levels):
            match = [r for r in rows if (k2 is None or r[k2] == p) and (k1 is None or r[k1] == v)]
            if not match or not (sweep_dir / match[0]["cell"] / "metrics.jsonl").is_file():
                continue
            hist = read_metrics(sweep_dir / match[0]["cell"] / "metrics.jsonl")
            if not hist:
                continue
            steps = np.array([h["step"] for h in hist])
            loss = smooth(plottable([h["loss"] for h in hist]), max(1, len(hist) // 50))
            every = max(1, len(hist) // 400)
            label = f"{k1.split('.')[-1]}={_label(v)}" if k1 not in (None, "cell") else _label(v).removeprefix("cell-") if k1 else "loss"
            ax.plot(steps[::every], loss[::every], lw=1.1, color=cmap(i / max(1, len(levels) - 1)), label=label)
        ax.set_title(f"{k2} = {_label(p)}" if k2 else "training loss", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6.5, ncol=1 if len(levels) < 8 else 2)
    fig.tight_layout()
    return fig_png(fig)


def sweep_sections(sweep_dir: Path | str) -> list[Section]:
    """The sections of a sweep's report, built from its files."""
    sweep_dir = Path(sweep_dir)
    cfg = read_config(sweep_dir / "config.toml")
    keys, metrics, rows = read_sweep(sweep_dir)
    d, m, tr, sw = (cfg.get(k, {}) for k in ("data", "model", "train", "sweep"))
    summary = {
        "data": f"{d.get('name')} (n = {d.get('n') or 'default'})",
        "model": f"{m.get('name')}, latent {m.get('latent_dim')}" + (f", hidden {m['hidden']}" if "hidden" in m else ""),
        "training": f"{tr.get('steps') or tr.get('epochs')} {'steps' if tr.get('steps') else 'epochs'}, batch {tr.get('batch_size')}, lr {tr.get('lr')}",
        "grid": "; ".join(sw.get("grid", [])) or "(none)",
        "seeds": sw.get("seeds"),
        "metrics": ", ".join(sw.get("metrics", [])) or "(training terms only)",
        "cells done": len(rows),
        "cells diverged": ", ".join(r["cell"] for r in rows if diverged_step(r) is not None) or "none",
    }
    sections = [Section("Sweep", table([summary]))]
    if not rows:
        return sections + [Section("Results", "<p>No cell has finished yet.</p>")]
    shown = [k for k in metrics if any(not math.isnan(r.get(k, math.nan)) for r in rows)]
    if "family" in keys:
        sections += family_sections(sweep_dir, parse_grid(sw.get("grid", [])), rows, shown)
    elif len(keys) == 1:
        png = sweep_line_figure(rows, keys[0], shown)
        atomic_write(sweep_dir / "metrics.png", png)
        sections.append(Section("Metrics", img(png, "mean over seeds (band: min–max); dashed: the untrained model", pixelated=False)))
    elif len(keys) >= 2:
        note = "" if len(keys) == 2 else f" (mean over {', '.join(keys[2:])})"
        figs = []
        for metric in shown:
            png = sweep_heatmap(rows, (keys[0], keys[1]), metric)
            atomic_write(sweep_dir / f"{metric}.png", png)
            figs.append(img(png, metric + note, pixelated=False))
        sections.append(Section("Heatmaps", '<div class="grid">' + "".join(figs) + "</div>"))
    curves = sweep_training_figure(sweep_dir, ["cell"] if "family" in keys else keys, rows)  # families: a line per cell
    if curves is not None:
        atomic_write(sweep_dir / "training.png", curves)
        sections.append(Section("Training loss per cell (seed 0)", img(curves, "moving average; log scale", pixelated=False)))
    views = [(r["cell"], sweep_dir / r["cell"] / "latent" / "traversals.png") for r in rows if r["seed"] == 0]
    views = [(c, p) for c, p in views if p.is_file()]
    if views:
        items = "".join(img(p.read_bytes(), c.removeprefix("cell-"), width=300) for c, p in views)
        sections.append(Section("Latent traversals per cell (seed 0)", '<p class="muted">each row one latent over [−3, 3], the others at a reference code</p><div class="grid">' + items + "</div>"))
    means = []
    for cell in dict.fromkeys(r["cell"].split(",seed=")[0] for r in rows):
        at = [r for r in rows if r["cell"].split(",seed=")[0] == cell]
        row = {k: _label(at[0][k]) for k in keys}
        row.update({k: _mean([r.get(k, math.nan) for r in at]) for k in shown + [f"{s}_untrained" for s in shown if f"{s}_untrained" in at[0]]})
        row["seeds"] = len(at)
        means.append(row)
    sections.append(Section("Table (mean over seeds; sweep.csv has every row)", table(means)))
    return sections


def family_sections(sweep_dir: Path, axes: list, rows: list[dict], metrics: list[str]) -> list[Section]:
    """A sweep over model families: each family's metrics against its hyperparameter (its first
    own swept key), and the metrics' rank correlations over every trained cell."""
    figs = []
    for family in dict.fromkeys(r["family"] for r in rows):
        own = [k for a in axes if a.family == family for k in a.keys] or [k for a in axes if not a.family for k in a.keys]
        if own:
            png = sweep_line_figure([r for r in rows if r["family"] == family], own[0], metrics)
            atomic_write(sweep_dir / f"family-{family}.png", png)
            figs.append(img(png, f"{family}: against {own[0]} (mean over seeds; dashed: the untrained model)", pixelated=False))
    sections = [Section("Each family against its hyperparameter", "".join(figs))]
    trained = [r for r in rows if diverged_step(r) is None]
    if len(trained) >= 3 and len(metrics) >= 2:
        png = rank_correlation_figure(trained, metrics)
        atomic_write(sweep_dir / "rank-correlations.png", png)
        sections.append(Section("Do the metrics agree?", img(png, "Spearman's ρ between metrics over every trained cell and seed", pixelated=False)))
    return sections


def write_sweep_report(sweep_dir: Path | str) -> Path:
    sweep_dir = Path(sweep_dir)
    return write_page(sweep_dir / "report.html", f"vaelab sweep: {sweep_dir.name}", sweep_sections(sweep_dir), str(sweep_dir))

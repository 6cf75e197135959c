"""A chain's report and the comparison of chains: the sections `vaelab chain` writes into
report.html, built from the chain folder's files alone (`vaelab report DIR` rebuilds them)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from vaelab.experiments.chain_table import CHAIN_TABLE, PANELS, read_table
from vaelab.report import Section, fig_png, img, matplotlib, plain, plottable, plt, read_config, report_path, table, write_page
from vaelab.runfolder import atomic_write


def by_generation(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(generations, mean, low, high) of a metric over seeds; low/high are the min and max."""
    gens = sorted({r["generation"] for r in rows})
    mean, low, high = [], [], []
    for g in gens:
        v = plottable([r.get(metric, np.nan) for r in rows if r["generation"] == g])
        v = v[~np.isnan(v)]
        mean.append(v.mean() if len(v) else np.nan)
        low.append(v.min() if len(v) else np.nan)
        high.append(v.max() if len(v) else np.nan)
    return np.array(gens), np.array(mean), np.array(low), np.array(high)


def has_metric(rows: list[dict], metric: str) -> bool:
    return any(not math.isnan(r.get(metric, math.nan)) for r in rows)


def curves_figure(tables: dict[str, list[dict]], panels, cols: int = 3, size=(4.2, 3.0), expected: tuple[np.ndarray, np.ndarray, str] | None = None) -> bytes:
    """One panel per metric, one line per table (mean over seeds, min–max band when seeds > 1);
    `expected` (generations, values, label) is drawn dashed on the first panel."""
    panels = [(m, t) for m, t in panels if any(has_metric(rows, m) for rows in tables.values())]
    cols = min(cols, len(panels)) or 1
    nrows = math.ceil(len(panels) / cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(size[0] * cols, size[1] * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, title) in zip(axes.flat, panels):
        for i, (label, rows) in enumerate(tables.items()):
            g, mean, low, high = by_generation(rows, metric)
            c = colors[i % len(colors)]
            ax.plot(g, mean, marker="o", ms=3, lw=1.5, color=c, label=plain(label))
            if len({r["seed"] for r in rows}) > 1:
                ax.fill_between(g, low, high, color=c, alpha=0.2, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if expected is not None:
        axes.flat[0].plot(expected[0], expected[1], ls="--", lw=1.2, color="black", label=expected[2])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if len(tables) > 1 or len(panels) == 1:
        axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig_png(fig)


def generation_details(chain_dir: Path, key: str, seed: int = 0) -> list[dict]:
    """The metrics.json of each generation of `seed` that holds `key`, in order."""
    files = sorted((chain_dir / f"seed-{seed}").glob("gen-*/metrics.json"))
    details = [json.loads(f.read_text()) for f in files]
    return [d for d in details if key in d]


def sampling_error(cfg: dict, rows: list[dict]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """For a gaussian-fit chain in replace mode, the variability sampling error alone would leave:
    refitting M samples shrinks every variance by (M − 1)/M in expectation, so from generation 1
    (the first Gaussian data) E[vₙ] ≈ v₁ ((M − 1)/M)^((n − 1)/2), the mean pair distance scaling as
    the square root of the variance. None for any other chain."""
    if cfg.get("model", {}).get("name") != "gaussian-fit" or cfg.get("chain", {}).get("mode") != "replace":
        return None
    g, mean, _, _ = by_generation(rows, "variability")
    later = g >= 1
    if not later.any():
        return None
    m = max(r["n_train"] for r in rows)  # the images each Gaussian is fitted to
    gens = g[later]
    return gens, mean[later][0] * ((m - 1) / m) ** ((gens - gens[0]) / 2), f"sampling error alone, M = {m:,}"


def kl_dims_figure(chain_dir: Path, seed: int = 0) -> bytes | None:
    """A heat map of the generating VAE's KL per latent dim (rows: generations): which latents the
    KL term switched off, and when."""
    details = generation_details(chain_dir, "kl_per_dim", seed)
    if not details:
        return None
    grid = np.array([d["kl_per_dim"] for d in details])  # (generations, L)
    fig, ax = plt.subplots(figsize=(min(12, 2.5 + 0.35 * grid.shape[1]), 0.9 + 0.22 * len(grid)))
    shown = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(grid)), [str(d["generation"]) for d in details], fontsize=7)
    ax.set_xlabel("latent dim")
    ax.set_ylabel("generation")
    ax.set_title("KL per latent dim of the generating VAE (held-out originals)")
    fig.colorbar(shown, ax=ax, label="nats")
    fig.tight_layout()
    return fig_png(fig)


def tails_figure(chain_dir: Path, seed: int = 0) -> bytes | None:
    """Heat maps of the share of held-out originals in VAE 0's tail, per value of each factor
    (rows: generations; the points' block x and y): which positions are lost first."""
    first = generation_details(chain_dir, "generation", seed)
    names = sorted({k for d in first for k in d if k.startswith("tail_by_")})
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 1.2 + 0.22 * len(first)), squeeze=False)
    for ax, name in zip(axes.flat, names):
        details = [d for d in first if name in d]
        values = sorted({v for d in details for v, _ in d[name]})
        grid = np.array([[dict(d[name]).get(v, np.nan) for v in values] for d in details])
        shown = ax.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest", vmin=0, vmax=1)
        ax.set_yticks(range(len(details)), [str(d["generation"]) for d in details], fontsize=7)
        ax.set_xticks(range(len(values)), [f"{v:g}" for v in values], fontsize=6)
        ax.set_xlabel(name.removeprefix("tail_by_"))
        ax.set_title(f"share in VAE 0's tail, by {name.removeprefix('tail_by_')}")
        fig.colorbar(shown, ax=ax)
    fig.tight_layout()
    return fig_png(fig)


def marginals_figure(chain_dir: Path, seed: int = 0) -> bytes | None:
    """Heatmaps of the x and y marginals of the block centres (rows: generations), truth on top."""
    details = generation_details(chain_dir, "x_marginal", seed)
    if not details:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.9 + 0.22 * (len(details) + 1)), squeeze=False)
    for ax, axis in zip(axes.flat, ("x", "y")):
        grid = np.array([details[0][f"{axis}_true"]] + [d[f"{axis}_marginal"] for d in details])
        ax.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_yticks(range(len(grid)), ["truth"] + [str(d["generation"]) for d in details], fontsize=7)
        ax.set_xlabel(f"block centre {axis}")
        ax.set_title(f"{axis} marginal per generation")
    fig.tight_layout()
    return fig_png(fig)


def gallery(chain_dir: Path, name: str, width: int, seed: int = 0, limit: int = 26) -> str:
    """Each generation's picture `name` (samples.png, occupancy.png) side by side, captioned."""
    files = sorted((chain_dir / f"seed-{seed}").glob(f"gen-*/{name}"))
    if len(files) > limit:  # long chains: an even selection, always with the first and last
        keep = sorted({round(i * (len(files) - 1) / (limit - 1)) for i in range(limit)})
        files = [files[i] for i in keep]
    items = [img(f.read_bytes(), f"generation {int(f.parent.name[4:])}", width=width) for f in files]
    return '<div class="grid">' + "".join(items) + "</div>"


def chain_sections(chain_dir: Path | str, seconds: float | None = None) -> list[Section]:
    """The sections of a chain's report, built from its files."""
    chain_dir = Path(chain_dir)
    cfg = read_config(chain_dir / "config.toml")
    rows = read_table(chain_dir / CHAIN_TABLE)
    ch, m, lo, tr, s, d = (cfg.get(k, {}) for k in ("chain", "model", "loss", "train", "sample", "data"))
    summary = {
        "data": f"{d.get('name')} (n = {d.get('n') or 'default'})",
        "model": f"{m.get('name')}, latent {m.get('latent_dim')}",
        "β": lo.get("beta"),
        "variability weight": lo.get("variability_weight"),
        "δ": s.get("delta"),
        "denoise": s.get("denoise"),
        "mode": f"{ch.get('mode')}" + (f" (real {ch.get('real_fraction')})" if ch.get("mode") in ("mix", "fresh") else ""),
        "init": ch.get("init"),
        "epochs": tr.get("steps") or tr.get("epochs"),
        "generations": ch.get("generations"),
        "seeds": ch.get("seeds"),
    }
    if seconds is not None:
        summary["wall time (s)"] = round(seconds, 1)
    sections = [Section("Chain", table([summary]))]
    if not rows:
        return sections + [Section("Results", "<p>No generation has finished yet.</p>")]
    label = {chain_dir.name: rows}
    var = curves_figure(label, [("variability", "variability of each generation's data")], cols=1, size=(7, 3.6), expected=sampling_error(cfg, rows))
    atomic_write(chain_dir / "variability.png", var)
    allm = curves_figure(label, list(PANELS.items()))
    atomic_write(chain_dir / "metrics.png", allm)
    sections.append(
        Section(
            "Variability along the chain",
            img(var, "mean L2 distance of 10,000 random pairs; generation 0 is the original data", pixelated=False),
        )
    )
    sections.append(Section("Samples per generation (seed 0)", gallery(chain_dir, "samples.png", 170)))
    sections.append(Section("Occupancy maps (seed 0)", gallery(chain_dir, "occupancy.png", 96)))
    marg = marginals_figure(chain_dir)
    if marg is not None:
        sections.append(Section("Where the blocks are (seed 0)", img(marg, "empirical pmf of block centres; top row: the true distribution", pixelated=False)))
    tails = tails_figure(chain_dir)
    if tails is not None:
        sections.append(Section("Which originals fall into the tail first (seed 0)", img(tails, "row g: the VAE that generated D_g; a bright cell: originals of that factor value its likelihood has lost (nll_iw beyond VAE 0's 99 % quantile)", pixelated=False)))
    kl_dims = kl_dims_figure(chain_dir)
    if kl_dims is not None:
        sections.append(Section("Which latents the KL term keeps (seed 0)", img(kl_dims, "row g: the VAE that generated D_g; a dark column is a latent the posterior no longer uses", pixelated=False)))
    sections.append(Section("Every metric", img(allm, "mean over seeds, band min–max", pixelated=False)))
    shown = ["generation", "n_train", *[k for k in PANELS if has_metric(rows, k)]]
    means = []
    for g in sorted({r["generation"] for r in rows}):
        at = [r for r in rows if r["generation"] == g]
        row = {"generation": g, "n_train": at[0]["n_train"]}
        for k in shown[2:]:
            v = [r[k] for r in at if not math.isnan(r[k])]
            row[k] = float(np.mean(v)) if v else ""
        means.append(row)
    sections.append(Section("Table (mean over seeds; chain.csv has every row)", table(means, shown)))
    return sections


def write_chain_report(chain_dir: Path | str, seconds: float | None = None) -> Path:
    chain_dir = Path(chain_dir)
    return write_page(report_path(chain_dir), f"vaelab chain: {chain_dir.name}", chain_sections(chain_dir, seconds), str(chain_dir))


def write_compare_report(out: Path, tables: dict[str, list[dict]], sources: list[str]) -> Path:
    """Overlaid curves of several chains (`tables`: label → chain.csv rows)."""
    var = curves_figure(tables, [("variability", "variability")], cols=1, size=(8, 4.2))
    atomic_write(out / "variability.png", var)
    allm = curves_figure(tables, list(PANELS.items()))
    atomic_write(out / "metrics.png", allm)
    last = []
    for label, rows in tables.items():
        g_last = max(r["generation"] for r in rows)
        at = [r for r in rows if r["generation"] == g_last]
        first = [r for r in rows if r["generation"] == 0]
        last.append(
            {
                "chain": label,
                "generations": g_last,
                "variability at 0": float(np.mean([r["variability"] for r in first])),
                "variability at last": float(np.mean([r["variability"] for r in at])),
                "precision_orig at last": float(np.mean([r["precision_orig"] for r in at])),
                "recall_orig at last": float(np.mean([r["recall_orig"] for r in at])),
            }
        )
    sections = [
        Section("Variability", img(var, "mean over seeds (band: min–max)", pixelated=False)),
        Section("Every metric", img(allm, "", pixelated=False)),
        Section("At the last generation", table(last)),
        Section("Sources", "<ul>" + "".join(f"<li><code>{html.escape(s)}</code></li>" for s in sources) + "</ul>"),
    ]
    return write_page(out / "report.html", "vaelab chain comparison", sections)

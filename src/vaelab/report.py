"""Reports: matplotlib figures and self-contained HTML pages built from run-folder files.

A report reads only files (config.toml, metrics.jsonl, *.png, model.safetensors' header), so it
can be rebuilt at any time with `vaelab report DIR`. Images are embedded as data URIs: the HTML
file is all a reader needs.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from vaelab.errors import DIVERGED, UserError  # noqa: E402
from vaelab.runfolder import atomic_write, read_csv, read_metrics, read_toml  # noqa: E402

TERM_ORDER = ("loss", "recon", "kl", "variability", "beta")
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #3b6ea5;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;color:#3b6ea5}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f3f6fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.pix{image-rendering:pixelated;max-width:100%}img.fig{max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.grid figure{margin:0}
figcaption{font-size:.85em;color:#555}.muted{color:#777;font-size:.85em}
details{margin:.5em 0}summary{cursor:pointer;color:#3b6ea5}
"""


@dataclass(frozen=True)
class Section:
    """One titled part of a report page; `body` is an HTML fragment."""

    title: str
    body: str


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def img(png: bytes, caption: str = "", pixelated: bool = True, width: int | None = None) -> str:
    style = f' style="width:{width}px"' if width else ""
    cls = "pix" if pixelated else "fig"
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img class="{cls}" src="{data_uri(png)}"{style} alt="{html.escape(caption)}">{cap}</figure>'


def fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or (list(rows[0]) if rows else [])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = ""
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            if isinstance(v, float):
                cells.append(f'<td class="num">{v:.4g}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f'<div style="overflow-x:auto"><table><tr>{head}</tr>{body}</table></div>'


def page(title: str, sections: list[Section], subtitle: str = "") -> str:
    parts = [f"<h2>{html.escape(s.title)}</h2>\n{s.body}" for s in sections]
    sub = f'<p class="muted">{html.escape(subtitle)}</p>' if subtitle else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{sub}\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_page(path: Path | str, title: str, sections: list[Section], subtitle: str = "") -> Path:
    return atomic_write(path, page(title, sections, subtitle))


# ---------------------------------------------------------------------------------------------
# Training runs.


PLOT_LIMIT = 1e300
"""values of a larger magnitude are drawn as gaps: near the float maximum matplotlib's margins and
ticks overflow (a damaged or hand-edited file can hold any number)"""


def plottable(values) -> np.ndarray:
    """`values` as floats, those that matplotlib cannot place on an axis (NaN, ±inf, beyond
    ±PLOT_LIMIT) as NaN, which it leaves out."""
    a = np.asarray(values, dtype=float)
    return np.where(np.abs(a) < PLOT_LIMIT, a, np.nan)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (window shrinks at the start)."""
    if window <= 1 or len(values) < 2:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def loss_terms(history: list[dict]) -> list[str]:
    keys = [k for k in history[0] if k not in ("step", "epoch", "time")] if history else []
    return sorted(keys, key=lambda k: (TERM_ORDER.index(k) if k in TERM_ORDER else len(TERM_ORDER), k))


def loss_figure(history: list[dict]) -> bytes:
    """One panel per logged term against step: raw values, light, and a moving average."""
    terms = loss_terms(history)
    if "beta" in terms and len({r.get("beta") for r in history}) <= 1:
        terms.remove("beta")  # a constant β says nothing as a curve
    cols = min(len(terms), 3) or 1
    rows = math.ceil(len(terms) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    steps = np.array([r["step"] for r in history])
    window = max(1, len(history) // 50)
    for ax, term in zip(axes.flat, terms):
        v = plottable([r.get(term, np.nan) for r in history])
        ax.plot(steps, v, color="#9bb7d4", lw=0.6, label="per step")
        ax.plot(steps, smooth(v, window), color="#1f4e79", lw=1.5, label=f"mean of {window}")
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if term in ("loss", "recon") and np.nanmin(v) > 0 and np.nanmax(v) / np.nanmin(v) > 20:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(terms) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig_png(fig)


def checkpoint_facts(path: Path) -> dict:
    """The parameter count and the device that trained it, from model.safetensors' header
    ({} when the file is missing or corrupt: the report then says nothing of them)."""
    if not path.is_file():
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
            return {"parameters": count, "device": (f.metadata() or {}).get("device", "")}
    except Exception:  # a corrupt file: the report says nothing of it rather than failing
        return {}


LATENT_VIEWS = (
    ("latent.png", "latent means of test images, by label"),
    ("traversals.png", "traversals: one latent per row over [−3, 3], the others at a reference code"),
    ("interpolation.png", "interpolation between two test images' codes"),
    ("reconstructions.png", "test inputs (odd rows) and reconstructions (even rows)"),
    ("ood.png", "out of distribution: uniform noise in (odd rows), what comes out (even rows)"),
)
"""the pictures `vaelab latent` writes into a run's latent/ folder, shown in its report"""


def read_config(path: Path) -> dict[str, dict]:
    """A folder's config.toml as a report reads it: sections, each a table of keys (a section of
    another kind, e.g. `model = "x"`, is a UserError naming the file)."""
    cfg = read_toml(path)
    for section, value in cfg.items():
        if not isinstance(value, dict):
            raise UserError(f"{path}: config section {section!r} must be a table of keys, got {value!r:.60}")
    return cfg


def _read_json(path: Path) -> dict:
    """The object in a small JSON file vaelab wrote; {} when it is missing or damaged."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # also a number of over 4,300 digits, or nesting past Python's limit
        return {}
    return value if isinstance(value, dict) else {}


def run_section(run_dir: Path | str, title: str = "Training run") -> Section:
    """The report of one training run: summary, loss curves, samples, reconstructions, config."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir} is not a vaelab run folder (no config.toml)")
    cfg = read_config(run_dir / "config.toml")
    history = read_metrics(run_dir / "metrics.jsonl")
    facts = checkpoint_facts(run_dir / "model.safetensors")
    parts = []
    summary = {
        "model": cfg.get("model", {}).get("name", "?"),
        "dataset": cfg.get("data", {}).get("name", "?"),
        "latent dim": cfg.get("model", {}).get("latent_dim", "?"),
        "parameters": facts.get("parameters") or "?",
        "trained on": facts.get("device") or "?",
        "steps": len(history),
        "train time (s)": float(history[-1]["time"]) if history and "time" in history[-1] else "?",
    }
    if history:
        tail = history[-max(1, len(history) // 20) :]
        for term in loss_terms(history):
            if term == "beta":
                continue
            summary[f"final {term}"] = float(np.mean([r[term] for r in tail if term in r]))
    diverged = _read_json(run_dir / DIVERGED)
    if diverged:
        summary["diverged"] = f"at step {diverged.get('step', '?')}: {diverged.get('what', '?')}; checkpoint kept: step {diverged.get('checkpoint') or 'none'}"
    parts.append(table([summary]))
    if history:
        png = loss_figure(history)
        atomic_write(run_dir / "loss.png", png)
        parts.append("<h3>Loss terms</h3>" + img(png, "every term per step, and its moving average", pixelated=False))
    pictures = []
    per_class = "; one row per class, 0 at the top" if cfg.get("model", {}).get("classes") else ""
    for name, caption in (("samples.png", f"samples from the prior{per_class}"), ("reconstructions.png", "inputs (odd rows) and their reconstructions (even rows)")):
        if (run_dir / name).is_file():
            pictures.append(img((run_dir / name).read_bytes(), caption))
    if pictures:
        parts.append('<div class="grid">' + "".join(pictures) + "</div>")
    views = [(f, c) for f, c in LATENT_VIEWS if (run_dir / "latent" / f).is_file()]
    if views:
        items = [img((run_dir / "latent" / f).read_bytes(), c, pixelated=f != "latent.png") for f, c in views]
        parts.append('<h3>Latent space</h3><div class="grid">' + "".join(items) + "</div>")
    ev = _read_json(run_dir / "evaluation.json")  # {} when missing or damaged: no evaluation shown
    if ev:
        named = ev.pop("feature_net", None)
        parts.append("<h3>Evaluation</h3>" + table([ev]) + (f'<p class="muted">features: {html.escape(str(named))}</p>' if named else ""))
    rows = [{"key": f"{s}.{k}", "value": v} for s, d in cfg.items() if isinstance(d, dict) for k, v in d.items()]
    parts.append(f"<details><summary>configuration</summary>{table(rows, ['key', 'value'])}</details>")
    return Section(title, "\n".join(parts))


def report_path(folder: Path | str) -> Path:
    """`folder`'s report.html, refused in one line before any work when a folder stands there."""
    path = Path(folder) / "report.html"
    if path.is_dir():
        raise UserError(f"{path} is a directory, where vaelab writes the report; move it away")
    return path


def write_run_report(run_dir: Path | str) -> Path:
    """(Re)build report.html of a training run from its files."""
    run_dir = Path(run_dir)
    path = report_path(run_dir)
    section = run_section(run_dir)
    return write_page(path, f"vaelab run: {run_dir.name}", [section], str(run_dir))


# ---------------------------------------------------------------------------------------------
# Chains (vaelab chain) and their comparison.

CHAIN_PANELS = (
    ("variability", "variability (mean pair L2)"),
    ("mean_intensity", "mean intensity"),
    ("distribution_diff_orig", "occupancy L2 vs original"),
    ("distribution_diff_train", "occupancy L2 vs own training set"),
    ("precision_orig", "precision vs original"),
    ("recall_orig", "recall vs original"),
    ("density_orig", "density vs original"),
    ("coverage_orig", "coverage vs original"),
    ("precision_train", "precision vs own training set"),
    ("recall_train", "recall vs own training set"),
    ("x_tv", "TV(x marginal, truth)"),
    ("y_tv", "TV(y marginal, truth)"),
    ("neg_elbo", "−ELBO on held-out originals"),
)


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


def curves_figure(tables: dict[str, list[dict]], panels, cols: int = 3, size=(4.2, 3.0)) -> bytes:
    """One panel per metric, one line per table (mean over seeds, min–max band when seeds > 1)."""
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
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if len(tables) > 1 or len(panels) == 1:
        axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig_png(fig)


def marginals_figure(chain_dir: Path, seed: int = 0) -> bytes | None:
    """Heatmaps of the x and y marginals of the block centres (rows: generations), truth on top."""
    files = sorted((chain_dir / f"seed-{seed}").glob("gen-*/metrics.json"))
    details = [json.loads(f.read_text()) for f in files]
    details = [d for d in details if "x_marginal" in d]
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
    rows = read_csv(chain_dir / "chain.csv", int_columns=("seed", "generation", "n_train"))
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
    var = curves_figure(label, [("variability", "variability of each generation's data")], cols=1, size=(7, 3.6))
    atomic_write(chain_dir / "variability.png", var)
    allm = curves_figure(label, CHAIN_PANELS)
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
    sections.append(Section("Every metric", img(allm, "mean over seeds, band min–max", pixelated=False)))
    shown = ["generation", "n_train", *[k for k, _ in CHAIN_PANELS if has_metric(rows, k)]]
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
    allm = curves_figure(tables, CHAIN_PANELS)
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


# ---------------------------------------------------------------------------------------------
# Sweeps.

SWEEP_TITLES = {
    "pmi": "pmi: held-out MSE of the linear map factors → latents (lower is better)",
    "pmi_r2": "pmi_r2: R² of that map (1 is perfect)",
    "decoder_mse": "decoder_mse: ‖G(z) − decode(P(z))‖², test-set mean",
    "neg_elbo": "−ELBO on the test set",
    "recon_mse": "reconstruction error on the test set (summed over pixels)",
    "train_loss": "training loss (mean of the last 100 steps)",
    "train_recon": "training reconstruction term (last 100 steps)",
    "train_kl": "training KL term (last 100 steps)",
}


def read_sweep(sweep_dir: Path) -> tuple[list[str], list[str], list[dict]]:
    """(swept keys, metric columns, rows) of a sweep folder; swept values are floats where every
    value is a number, strings otherwise."""
    cfg = read_config(sweep_dir / "config.toml")
    keys = list(dict.fromkeys(e.partition("=")[0].strip() for e in cfg.get("sweep", {}).get("grid", [])))
    rows = read_csv(sweep_dir / "sweep.csv", int_columns=("seed",), str_columns=("cell", *keys))
    for k in keys:
        try:
            vals = [float(r[k]) for r in rows]
        except ValueError:
            continue
        for r, v in zip(rows, vals):
            r[k] = v
    header = list(rows[0]) if rows else []
    metrics = [c for c in header if c not in ("cell", "seed", *keys, "train_seconds", "diverged_at") and not c.endswith("_untrained")]
    return keys, metrics, rows


def _mean(values) -> float:
    v = [x for x in values if isinstance(x, float) and not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def _levels(rows: list[dict], key: str) -> list:
    vals = list(dict.fromkeys(r[key] for r in rows))
    return sorted(vals) if all(isinstance(v, float) for v in vals) else vals


def _label(v) -> str:
    return f"{v:g}" if isinstance(v, float) else plain(str(v))


def plain(text: str) -> str:
    """`text` (a folder name, a swept value) drawn as written in a plot: a `$` would start
    matplotlib's math mode."""
    return text.replace("$", r"\$")


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
        ax.set_title(SWEEP_TITLES.get(m, m), fontsize=9)
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
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(xs), 1.0 + 0.42 * len(ys)))
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
    title = SWEEP_TITLES.get(metric, metric) + (f"\nuntrained model: {base:.4g}" if not math.isnan(base) else "")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig_png(fig)


def sweep_training_figure(sweep_dir: Path, keys: list[str], rows: list[dict]) -> bytes | None:
    """The training loss of every cell (seed 0): one panel per value of the second swept key, one
    line per value of the first, smoothed."""
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
            label = f"{k1.split('.')[-1]}={_label(v)}" if k1 else "loss"
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
        "model": f"{m.get('name')}, hidden {m.get('hidden')}, latent {m.get('latent_dim')}",
        "training": f"{tr.get('steps') or tr.get('epochs')} {'steps' if tr.get('steps') else 'epochs'}, batch {tr.get('batch_size')}, lr {tr.get('lr')}",
        "grid": "; ".join(sw.get("grid", [])) or "(none)",
        "seeds": sw.get("seeds"),
        "metrics": ", ".join(sw.get("metrics", [])) or "(training terms only)",
        "cells done": len(rows),
        "cells diverged": ", ".join(r["cell"] for r in rows if not math.isnan(r.get("diverged_at", math.nan))) or "none",
    }
    sections = [Section("Sweep", table([summary]))]
    if not rows:
        return sections + [Section("Results", "<p>No cell has finished yet.</p>")]
    shown = [k for k in metrics if any(not math.isnan(r.get(k, math.nan)) for r in rows)]
    if len(keys) == 1:
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
    curves = sweep_training_figure(sweep_dir, keys, rows)
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


def write_sweep_report(sweep_dir: Path | str) -> Path:
    sweep_dir = Path(sweep_dir)
    return write_page(sweep_dir / "report.html", f"vaelab sweep: {sweep_dir.name}", sweep_sections(sweep_dir), str(sweep_dir))


# ---------------------------------------------------------------------------------------------
# Applications (vaelab anomaly, vaelab augment).


def write_apps_report(out: Path | str, kind: str) -> Path:
    """report.html of an anomaly or augmentation run, from its json, pictures and VAE folder."""
    out = Path(out)
    results = json.loads((out / f"{kind}.json").read_text())
    if kind == "anomaly":
        head = Section(
            f"Anomaly detection: class {results['class']} held out",
            "<p>The VAE never saw this class; each test image is scored by its negative ELBO and by its "
            "reconstruction error. ROC-AUC 1 separates the class perfectly, 0.5 is chance.</p>"
            + table([results])
            + img((out / "scores.png").read_bytes(), "score histograms (density)", pixelated=False),
        )
    else:
        shown = {k: v for k, v in results.items() if k != "generated_label_counts"}
        head = Section(
            "Data augmentation",
            f"<p>A classifier trained on {results['few']} real labelled images, against one trained on them plus "
            f"{results['generated']} VAE samples labelled by the first.</p>"
            + table([shown])
            + img((out / "generated.png").read_bytes(), "generated images, sorted by the label they were given"),
        )
    return write_page(out / "report.html", f"vaelab {kind}: {out.name}", [head, run_section(out / "vae", "The VAE")], str(out))


REBUILDERS = {
    "run": write_run_report,
    "chain": write_chain_report,
    "sweep": write_sweep_report,
    "anomaly": functools.partial(write_apps_report, kind="anomaly"),
    "augment": functools.partial(write_apps_report, kind="augment"),
}
"""the report each kind of folder (`vaelab.runfolder.folder_kind`) rebuilds from its files (`vaelab report DIR`)"""

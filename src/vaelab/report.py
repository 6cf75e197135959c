"""Reports: matplotlib figures and self-contained HTML pages built from run-folder files.

A report reads only files (config.toml, metrics.jsonl, *.png, model.safetensors' header), so it
can be rebuilt at any time with `vaelab report DIR`. Images are embedded as data URIs: the HTML
file is all a reader needs.
"""

from __future__ import annotations

import base64
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
from vaelab.runfolder import atomic_write, read_metrics, read_toml  # noqa: E402

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


HEADER_KEYS = ("format", "step", "image_shape", "device")
"""what every model.safetensors header records; any other key is a figure of a stage after
training (vaelab.checkpoint.take_checkpoint's `figures`, e.g. a VQ-VAE's prior_nll)"""


def checkpoint_facts(path: Path) -> dict:
    """The parameter count, the device that trained it and the figures of a stage after training
    (`figures`), from model.safetensors' header ({} when the file is missing or corrupt: the report
    then says nothing of them)."""
    if not path.is_file():
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
            meta = f.metadata() or {}
            return {"parameters": count, "device": meta.get("device", ""), "figures": {k: v for k, v in meta.items() if k not in HEADER_KEYS}}
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
    for name, value in facts.get("figures", {}).items():
        summary[f"after training: {name}"] = value
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


def plain(text: str) -> str:
    """`text` (a folder name, a swept value) drawn as written in a plot: a `$` would start
    matplotlib's math mode."""
    return text.replace("$", r"\$")

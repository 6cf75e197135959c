"""Reports: matplotlib figures and self-contained HTML pages built from run-folder files.

A report reads only files (config.toml, metrics.jsonl, *.png, model.safetensors' header), so it
can be rebuilt at any time with `vaelab report DIR`. Images are embedded as data URIs: the HTML
file is all a reader needs.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vaelab.errors import UserError  # noqa: E402
from vaelab.runfolder import atomic_write, read_jsonl, read_toml  # noqa: E402

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
    columns = columns or list(rows[0]) if rows else []
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
    return f"<table><tr>{head}</tr>{body}</table>"


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
        v = np.array([r.get(term, np.nan) for r in history], dtype=float)
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


def parameter_count(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:  # a corrupt file: the report says nothing of it rather than failing
        return None


def run_section(run_dir: Path | str, title: str = "Training run") -> Section:
    """The report of one training run: summary, loss curves, samples, reconstructions, config."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir} is not a vaelab run folder (no config.toml)")
    cfg = read_toml(run_dir / "config.toml")
    history = read_jsonl(run_dir / "metrics.jsonl")
    parts = []
    summary = {
        "model": cfg.get("model", {}).get("name", "?"),
        "dataset": cfg.get("data", {}).get("name", "?"),
        "latent dim": cfg.get("model", {}).get("latent_dim", "?"),
        "parameters": parameter_count(run_dir / "model.safetensors") or "?",
        "steps": len(history),
        "train time (s)": float(history[-1]["time"]) if history and "time" in history[-1] else "?",
    }
    if history:
        tail = history[-max(1, len(history) // 20) :]
        for term in loss_terms(history):
            if term == "beta":
                continue
            summary[f"final {term}"] = float(np.mean([r[term] for r in tail if term in r]))
    parts.append(table([summary]))
    if history:
        png = loss_figure(history)
        atomic_write(run_dir / "loss.png", png)
        parts.append("<h3>Loss terms</h3>" + img(png, "every term per step, and its moving average", pixelated=False))
    pictures = []
    for name, caption in (("samples.png", "samples from the prior"), ("reconstructions.png", "inputs (odd rows) and their reconstructions (even rows)")):
        if (run_dir / name).is_file():
            pictures.append(img((run_dir / name).read_bytes(), caption))
    if pictures:
        parts.append('<div class="grid">' + "".join(pictures) + "</div>")
    rows = [{"key": f"{s}.{k}", "value": v} for s, d in cfg.items() if isinstance(d, dict) for k, v in d.items()]
    parts.append(f"<details><summary>configuration</summary>{table(rows, ['key', 'value'])}</details>")
    return Section(title, "\n".join(parts))


def write_run_report(run_dir: Path | str) -> Path:
    """(Re)build report.html of a training run from its files."""
    run_dir = Path(run_dir)
    section = run_section(run_dir)
    return write_page(run_dir / "report.html", f"vaelab run: {run_dir.name}", [section], str(run_dir))

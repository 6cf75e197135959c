"""Reports: what every report is made of: self-contained HTML pages of titled sections, tables,
matplotlib figures embedded as data URIs (the HTML file is all a reader needs), and the folder's
config.toml and report.html.

What each report shows belongs to its study, and is built from its folder's files alone, so it
can be rebuilt at any time with `vaelab report DIR`: a training run's in vaelab.run_report, a
chain's in experiments/chain_report.py, a sweep's in experiments/sweep_report.py, the anomaly and
augmentation studies' in experiments/apps.py.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from vaelab.errors import UserError  # noqa: E402
from vaelab.runfolder import atomic_write, read_toml  # noqa: E402

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
# Plots and folders.


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


def read_config(path: Path) -> dict[str, dict]:
    """A folder's config.toml as a report reads it: sections, each a table of keys (a section of
    another kind, e.g. `model = "x"`, is a UserError naming the file)."""
    cfg = read_toml(path)
    for section, value in cfg.items():
        if not isinstance(value, dict):
            raise UserError(f"{path}: config section {section!r} must be a table of keys, got {value!r:.60}")
    return cfg


def report_path(folder: Path | str) -> Path:
    """`folder`'s report.html, refused in one line before any work when a folder stands there."""
    path = Path(folder) / "report.html"
    if path.is_dir():
        raise UserError(f"{path} is a directory, where vaelab writes the report; move it away")
    return path


def plain(text: str) -> str:
    """`text` (a folder name, a swept value) drawn as written in a plot: a `$` would start
    matplotlib's math mode."""
    return text.replace("$", r"\$")

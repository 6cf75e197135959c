"""A training run's report.html, built from the run folder's files alone (`vaelab report DIR`).

Its parts, in order: what training wrote (a summary, the loss curves, samples and
reconstructions), the pictures `vaelab latent` adds (latent/), the table `vaelab evaluate` adds
(evaluation.json), and the config. A part whose files are missing is left out, so the report can
be rebuilt at any stage. vaelab.report draws and assembles; this file decides what a run shows.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
from safetensors import safe_open

from vaelab.errors import DIVERGED, UserError
from vaelab.report import Section, fig_png, img, plottable, plt, read_config, report_path, smooth, table, write_page
from vaelab.runfolder import atomic_write, read_metrics

TERM_ORDER = ("loss", "recon", "kl", "variability", "beta")
"""the loss terms a report shows first, in this order; any other logged term follows by name"""


def loss_terms(history: list[dict]) -> list[str]:
    """The loss terms of metrics.jsonl's rows (every key but step, epoch and time), in TERM_ORDER."""
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
        with safe_open(str(path), framework="pt") as f:
            count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
            meta = f.metadata() or {}
            return {"parameters": count, "device": meta.get("device", ""), "figures": {k: v for k, v in meta.items() if k not in HEADER_KEYS}}
    except Exception:  # a corrupt file: the report says nothing of it rather than failing
        return {}


def _read_json(path: Path) -> dict:
    """The object in a small JSON file vaelab wrote; {} when it is missing or damaged."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # also a number of over 4,300 digits, or nesting past Python's limit
        return {}
    return value if isinstance(value, dict) else {}


def summary_part(run_dir: Path, cfg: dict, history: list[dict]) -> str:
    """One row: model, dataset, size, device, steps, time, each term's final value (the mean of the
    last 5 % of steps), the figures of stages after training, and where training diverged."""
    facts = checkpoint_facts(run_dir / "model.safetensors")
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
    return table([summary])


def losses_part(run_dir: Path, cfg: dict, history: list[dict]) -> str:
    """The loss curves, also written to loss.png."""
    if not history:
        return ""
    png = loss_figure(history)
    atomic_write(run_dir / "loss.png", png)
    return "<h3>Loss terms</h3>" + img(png, "every term per step, and its moving average", pixelated=False)


def pictures_part(run_dir: Path, cfg: dict, history: list[dict]) -> str:
    """The samples and reconstructions training drew."""
    per_class = "; one row per class, 0 at the top" if cfg.get("model", {}).get("classes") else ""
    named = (("samples.png", f"samples from the prior{per_class}"), ("reconstructions.png", "inputs (odd rows) and their reconstructions (even rows)"))
    pictures = [img((run_dir / name).read_bytes(), caption) for name, caption in named if (run_dir / name).is_file()]
    return '<div class="grid">' + "".join(pictures) + "</div>" if pictures else ""


LATENT_VIEWS = (
    ("latent.png", "latent means of test images, by label"),
    ("traversals.png", "traversals: one latent per row over [−3, 3], the others at a reference code"),
    ("interpolation.png", "interpolation between two test images' codes"),
    ("reconstructions.png", "test inputs (odd rows) and reconstructions (even rows)"),
    ("ood.png", "out of distribution: uniform noise in (odd rows), what comes out (even rows)"),
)
"""the pictures `vaelab latent` (vaelab.latent.latent_views) writes into a run's latent/ folder"""


def latent_part(run_dir: Path, cfg: dict, history: list[dict]) -> str:
    """The latent views, when `vaelab latent` has drawn them."""
    views = [(f, c) for f, c in LATENT_VIEWS if (run_dir / "latent" / f).is_file()]
    if not views:
        return ""
    items = [img((run_dir / "latent" / f).read_bytes(), c, pixelated=f != "latent.png") for f, c in views]
    return '<h3>Latent space</h3><div class="grid">' + "".join(items) + "</div>"


def evaluation_part(run_dir: Path, cfg: dict, history: list[dict]) -> str:
    """evaluation.json's figures (vaelab.evaluate.evaluate_run), and the features fid and prdc used."""
    ev = _read_json(run_dir / "evaluation.json")  # {} when missing or damaged: no evaluation shown
    if not ev:
        return ""
    named = ev.pop("feature_net", None)
    return "<h3>Evaluation</h3>" + table([ev]) + (f'<p class="muted">features: {html.escape(str(named))}</p>' if named else "")


def config_part(run_dir: Path, cfg: dict, history: list[dict]) -> str:
    """Every key of config.toml, folded."""
    rows = [{"key": f"{s}.{k}", "value": v} for s, d in cfg.items() for k, v in d.items()]
    return f"<details><summary>configuration</summary>{table(rows, ['key', 'value'])}</details>"


PARTS = (summary_part, losses_part, pictures_part, latent_part, evaluation_part, config_part)
"""a run report's parts in order, each (run folder, its config, metrics.jsonl's rows) → HTML ("" when it has nothing to show)"""


def run_section(run_dir: Path | str, title: str = "Training run") -> Section:
    """The report of one training run: every part of PARTS its files allow."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir} is not a vaelab run folder (no config.toml)")
    cfg = read_config(run_dir / "config.toml")
    history = read_metrics(run_dir / "metrics.jsonl")
    parts = [part(run_dir, cfg, history) for part in PARTS]
    return Section(title, "\n".join(p for p in parts if p))


def write_run_report(run_dir: Path | str) -> Path:
    """(Re)build report.html of a training run from its files."""
    run_dir = Path(run_dir)
    path = report_path(run_dir)
    section = run_section(run_dir)
    return write_page(path, f"vaelab run: {run_dir.name}", [section], str(run_dir))

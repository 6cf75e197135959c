"""`vaelab demo`: the default study on built-in data, ending in runs/demo/report.html.

It grows as studies land: a conv VAE trained on `points`, a short VAE chain, a small β × μ sweep
of the bias study (nine cells trained at once as one vectorized model), and a CNN VAE on
fontdigits with its evaluation (FID) and latent views (traversals).
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from vaelab.config import load_config, read_preset
from vaelab.experiments.chain import run_chain
from vaelab.experiments.chain_report import chain_sections
from vaelab.evaluate import evaluate_run
from vaelab.experiments.sweep import run_sweep
from vaelab.experiments.sweep_report import sweep_sections
from vaelab.latent import latent_views
from vaelab.runfolder import prepare_out
from vaelab.report import Section, write_page
from vaelab.run_report import run_section
from vaelab.train import train

CHAIN = {"data.n": 2000, "train.epochs": 3, "chain.generations": 4, "chain.holdout": 500, "chain.metric_samples": 500}
"""the demo's chain: the study's conv chain, shrunk to 2,000 images, 3 epochs and 4 generations"""
SWEEP = {"data.n": 2000, "train.steps": 600, "sweep.test_n": 2000}
"""the demo's sweep: the bias study's preset on 3 × 3 cells, 2,000 images, 600 steps"""
SWEEP_GRID = ["loss.beta=0.25,1,4", "data.mu=0,2,4"]
DIGITS = {"data.n": 3000, "train.epochs": 4}
"""the demo's evaluation: the MNIST study's CNN VAE on 3,000 fontdigits for 4 epochs"""


PARTS = 4
"""the demo's parts, in the progress lines it prints"""


def _part(number: int, what: str, quiet: bool) -> float:
    """Say which part starts (unless quiet); returns its start time."""
    if not quiet:
        print(f"[{number}/{PARTS}] {what} …", flush=True)
    return time.perf_counter()


def _done(start: float, quiet: bool) -> float:
    """Say how long the part took (unless quiet); returns the seconds."""
    seconds = time.perf_counter() - start
    if not quiet:
        print(f"      done in {seconds:.0f} s", flush=True)
    return seconds


def run_demo(out: Path | str = "runs/demo", *, overrides=(), quiet: bool = False) -> Path:
    """Run the demo into `out` (replacing an earlier demo there); returns the report's path.

    Arguments:
        overrides: config overrides applied to every part (e.g. a smaller budget for a smoke test).
        quiet: no progress bars and no progress lines (each part's name and time).
    """
    out = prepare_out(Path(out), "demo", force=True)  # an earlier demo is replaced; any other folder refused
    start = time.perf_counter()
    t0 = _part(1, "a conv VAE on points", quiet)
    run = train(load_config("demo", overrides=overrides), out=out / "train", force=True, quiet=quiet)
    _done(t0, quiet)
    chain_cfg = load_config("chain-conv", overrides=CHAIN).override(overrides)
    t0 = _part(2, "a VAE chain of 4 generations", quiet)
    run_chain(chain_cfg, out / "chain", force=True, quiet=quiet)
    chain_seconds = _done(t0, quiet)
    t0 = _part(3, "a 3 x 3 beta x mu sweep of the bias study", quiet)
    sweep_cfg = load_config("bias-robustness", overrides=SWEEP).override(overrides)
    run_sweep(sweep_cfg, out / "sweep", grid=SWEEP_GRID, force=True, quiet=quiet)
    sweep_seconds = _done(t0, quiet)
    t0 = _part(4, "a CNN VAE on fontdigits, evaluated and drawn", quiet)
    digits = train(load_config("fontdigits-cnn", overrides=DIGITS).override(overrides), out=out / "digits", force=True, quiet=quiet)
    evaluate_run(digits.dir, n=1000, k=16)
    latent_views(digits.dir, n=1000)
    digits_seconds = _done(t0, quiet)
    intro = Section(
        "About this demo",
        f"<p>This demo trains {html.escape(read_preset('demo')['description'])}, then runs a short VAE chain: "
        f"the chain study's conv VAE on 2,000 points for 4 generations, each VAE trained from scratch on "
        f"the samples of the one before; and a 3 × 3 sweep of the bias study (β × μ on noisy squares), "
        f"nine small VAEs trained at once, with the latent-recovery metrics as heatmaps; and the MNIST study's "
        f"CNN VAE on 3,000 fontdigits (digits rendered from matplotlib's fonts), evaluated (FID on LeNet features, "
        f"likelihood bounds, class spread) and drawn (latent space, traversals). Rebuild any part with <code>vaelab report {html.escape(str(out / 'train'))}</code>; "
        f"every run folder holds its config, per-step metrics and weights.</p>"
        f'<p class="muted">finished in {time.perf_counter() - start:.0f} s; training took {run.seconds:.0f} s, the chain {chain_seconds:.0f} s, '
        f"the sweep {sweep_seconds:.0f} s, the fontdigits VAE with its evaluation {digits_seconds:.0f} s</p>",
    )
    chain = [Section(f"VAE chain: {s.title}", s.body) for s in chain_sections(out / "chain", chain_seconds)]
    sweep = [Section(f"β × μ sweep: {s.title}", s.body) for s in sweep_sections(out / "sweep")]
    digits_part = run_section(out / "digits", "A CNN VAE on fontdigits, evaluated")
    return write_page(out / "report.html", "vaelab demo", [intro, run_section(out / "train", "A VAE on points"), *chain, *sweep, digits_part])

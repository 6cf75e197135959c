"""`vaelab demo`: the default study on built-in data, ending in runs/demo/report.html.

It grows as studies land: a conv VAE trained on `points`, then a short VAE chain.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from vaelab.config import load_config, read_preset
from vaelab.experiments.chain import run_chain
from vaelab.report import Section, chain_sections, run_section, write_page
from vaelab.train import train

CHAIN = {"data.n": 2000, "train.epochs": 3, "chain.generations": 4, "chain.holdout": 500, "chain.metric_samples": 500}
"""the demo's chain: the study's conv chain, shrunk to 2,000 images, 3 epochs and 4 generations"""


def run_demo(out: Path | str = "runs/demo", *, overrides=(), quiet: bool = False) -> Path:
    """Run the demo into `out` (replacing an earlier demo there); returns the report's path.

    Arguments:
        overrides: config overrides applied to every part (e.g. a smaller budget for a smoke test).
    """
    out = Path(out)
    start = time.perf_counter()
    run = train(load_config("demo", overrides=overrides), out=out / "train", force=True, quiet=quiet)
    chain_cfg = load_config("chain-conv", overrides=CHAIN).override(overrides)
    t0 = time.perf_counter()
    run_chain(chain_cfg, out / "chain", force=True, quiet=quiet)
    chain_seconds = time.perf_counter() - t0
    intro = Section(
        "About this demo",
        f"<p>This demo trains {html.escape(read_preset('demo')['description'])}, then runs a short VAE chain: "
        f"the chain study's conv VAE on 2,000 points for 4 generations, each VAE trained from scratch on "
        f"the samples of the one before. Rebuild any part with <code>vaelab report {html.escape(str(out / 'train'))}</code>; "
        f"every run folder holds its config, per-step metrics and weights.</p>"
        f'<p class="muted">finished in {time.perf_counter() - start:.0f} s; training took {run.seconds:.0f} s, the chain {chain_seconds:.0f} s</p>',
    )
    chain = [Section(f"VAE chain: {s.title}", s.body) for s in chain_sections(out / "chain", chain_seconds)]
    return write_page(out / "report.html", "vaelab demo", [intro, run_section(out / "train", "A VAE on points"), *chain])

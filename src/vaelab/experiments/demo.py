"""`vaelab demo`: the default study on built-in data, ending in runs/demo/report.html.

It grows as studies land: today it trains the chain study's conv VAE on `points`.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from vaelab.config import load_config, read_preset
from vaelab.report import Section, run_section, write_page
from vaelab.train import train


def run_demo(out: Path | str = "runs/demo", *, overrides=(), quiet: bool = False) -> Path:
    """Run the demo into `out` (replacing an earlier demo there); returns the report's path.

    Arguments:
        overrides: config overrides for the demo's training (e.g. a smaller budget).
    """
    out = Path(out)
    start = time.perf_counter()
    cfg = load_config("demo", overrides=overrides)
    run = train(cfg, out=out / "train", force=True, quiet=quiet)
    intro = Section(
        "About this demo",
        f"<p>This demo trains {html.escape(read_preset('demo')['description'])}. Rebuild any part with "
        f"<code>vaelab report {html.escape(str(out / 'train'))}</code>; the run folder holds the "
        f"config, the per-step metrics and the weights.</p>"
        f'<p class="muted">finished in {time.perf_counter() - start:.0f} s; training took {run.seconds:.0f} s</p>',
    )
    return write_page(out / "report.html", "vaelab demo", [intro, run_section(out / "train", "A VAE on points")])

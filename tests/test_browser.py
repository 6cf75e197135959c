"""Every kind of report opened in headless Chromium (tests/browser.py): no console message, every
image decodes, nothing requested from the network, no sideways scrolling, crafted strings escaped.
The demo's reports are opened in test_demo.py, on the demo that test runs."""

from __future__ import annotations

import numpy as np

import browser
from clihelp import cli, one_thread  # noqa: F401  (one_thread: a module fixture)

CRAFTED = "<b class=injected onclick=1>&amp;\"'"
"""a string that is markup if a report does not escape it (no slash: it names folders too)"""
RUN = ["data.name=points", "data.n=64", "train.steps=4", "train.batch_size=32", "model.name=fc1", "model.hidden=[16]", "sample.n=8", "train.device=cpu"]
CHAIN = ["data.n=64", "train.steps=4", "chain.holdout=16", "chain.metric_samples=16", "sample.n=8", "model.hidden=[16,8]", "chain.generations=2", "train.device=cpu"]
SWEEP = ["data.n=64", "train.steps=4", "train.batch_size=32", "sweep.test_n=64", "model.hidden=[16,8]", "train.device=cpu", "sweep.metrics=[pmi,decoder_mse,mcc]"]


def sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


def ok(r) -> None:
    assert r.rc == 0, r.err


def assert_clean(chromium, path, *texts: str) -> None:
    """The page has no problem and shows each of `texts` as text."""
    assert browser.problems(chromium, path) == []
    shown = browser.visit(chromium, path)
    assert shown["images"] > 0
    for text in texts:
        assert text in shown["text"], text


# ---------------------------------------------------------------------------------------------
# The checker finds what it looks for.


def test_the_checker_finds_every_kind_of_problem(chromium, tmp_path):
    good = tmp_path / "good.html"
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
    good.write_text(f'<html><body><img src="{png}"><div style="overflow-x:auto"><table><tr><td style="min-width:3000px">wide</td></tr></table></div></body></html>')
    assert browser.problems(chromium, good) == []
    defects = {
        "console": '<script>console.error("boom")</script>',
        "image does not decode": '<img src="data:image/png;base64,AAAA">',
        "requested http://example.invalid": '<img src="http://example.invalid/x.png" onerror="">',
        "scrolls sideways": '<table><tr><td style="min-width:3000px">wide</td></tr></table>',
        "a crafted string became markup": '<b class="injected">x</b>',
    }
    for i, (name, body) in enumerate(defects.items()):
        page = tmp_path / f"bad-{i}.html"
        page.write_text(f'<html><body><img src="{png}">{body}</body></html>')
        found = browser.problems(chromium, page)
        assert any(line.startswith(name) for line in found), (name, found)


# ---------------------------------------------------------------------------------------------
# vaelab's reports.


def test_a_run_report_and_its_evaluation(chromium, tmp_path):
    run = tmp_path / f"run {CRAFTED}"
    ok(cli("train", *sets(*RUN), "--out", run, "--quiet"))
    assert_clean(chromium, run / "report.html", f"vaelab run: {run.name}")
    ok(cli("evaluate", run, "--n", "64", "--k", "4", "--metrics", "recon_mse,elbo,nll_iw,posterior"))
    assert_clean(chromium, run / "report.html", f"vaelab run: {run.name}", "Evaluation")


def test_a_run_on_a_crafted_file_name_shows_it_as_text(chromium, tmp_path):
    folder = tmp_path / CRAFTED
    folder.mkdir()
    np.save(folder / "images.npy", np.random.default_rng(0).random((64, 8, 8), dtype=np.float32))
    run = tmp_path / "run"
    ok(cli("train", *sets(*RUN, "data.name=array", f"data.path={folder / 'images.npy'}"), "--out", run, "--quiet"))
    assert_clean(chromium, run / "report.html", CRAFTED)


def test_a_chain_report_and_a_comparison(chromium, tmp_path):
    one, two = tmp_path / f"chain {CRAFTED}", tmp_path / "other"
    ok(cli("chain", "--preset", "chain-fc2", *sets(*CHAIN), "--out", one, "--quiet"))
    ok(cli("chain", "--preset", "chain-fc2", *sets(*CHAIN, "sample.delta=0.5"), "--out", two, "--quiet"))
    assert_clean(chromium, one / "report.html", f"vaelab chain: {one.name}")
    ok(cli("chain", "compare", one, two, "--out", tmp_path / "compare"))
    assert_clean(chromium, tmp_path / "compare" / "report.html", one.name)


def test_a_sweep_report_and_its_cells(chromium, tmp_path):
    out = tmp_path / f"sweep {CRAFTED}"
    ok(cli("sweep", "--preset", "bias-robustness", *sets(*SWEEP), "--grid", "loss.beta=0.5,4", "--grid", "data.mu=0", "--out", out, "--quiet"))
    assert_clean(chromium, out / "report.html", f"vaelab sweep: {out.name}", "mcc")
    for cell in ("cell-beta=0.5,mu=0", "cell-beta=4,mu=0"):
        assert_clean(chromium, out / cell / "report.html", cell)

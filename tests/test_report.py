"""Reports (vaelab.report): pages are self-contained and escape what they show, tables format
numbers, the moving average and the plot guard match brute-force answers, and a run's section is
built from its files alone (hand-written here: no training)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from vaelab.errors import UserError
from vaelab.report import Section, loss_terms, page, plottable, read_config, report_path, run_section, smooth, table
from vaelab.runfolder import write_jsonl, write_toml


def test_a_page_is_self_contained_and_escapes_titles_and_bodies_captions():
    html = page("<b>run</b>", [Section("a & b", "<p>body</p>")], subtitle="<i>x</i>")
    assert "&lt;b&gt;run&lt;/b&gt;" in html and "&lt;i&gt;x&lt;/i&gt;" in html and "a &amp; b" in html
    assert "<p>body</p>" in html  # a section's body is HTML already
    assert not re.search(r"(src|href)=\"(?!data:)", html)  # nothing fetched from elsewhere


def test_a_table_formats_floats_to_four_digits_and_escapes_text():
    out = table([{"a": 3.14159265, "b": "<x>"}, {"a": 2}], ["a", "b"])
    assert '<td class="num">3.142</td>' in out and "<td>&lt;x&gt;</td>" in out
    assert "<tr><td>2</td><td></td></tr>" in out  # an int as written; a missing cell blank


@pytest.mark.parametrize("window", [1, 3, 10])
def test_smooth_is_the_trailing_mean_of_the_window(window):
    values = np.random.default_rng(0).normal(size=25)
    brute = [values[max(0, i + 1 - window) : i + 1].mean() for i in range(len(values))]
    assert np.allclose(smooth(values, window), brute)


def test_plottable_leaves_out_what_an_axis_cannot_hold():
    out = plottable([1.0, float("inf"), -1e301, float("nan"), -5.0])
    assert out[0] == 1.0 and out[-1] == -5.0 and np.isnan(out[1:4]).all()


def test_loss_terms_come_in_the_fixed_order_then_by_name():
    assert loss_terms([{"step": 0, "epoch": 0, "time": 1.0, "zeta": 1, "kl": 1, "beta": 1, "loss": 1, "alpha": 1, "recon": 1}]) == ["loss", "recon", "kl", "beta", "alpha", "zeta"]


def test_a_run_section_is_built_from_the_folders_files(tmp_path):
    write_toml(tmp_path / "config.toml", {"model": {"name": "fc1", "latent_dim": 4}, "data": {"name": "points"}})
    history = [{"step": i, "epoch": 0, "loss": float(100 - i), "recon": float(90 - i), "time": 0.5 * (i + 1)} for i in range(40)]
    write_jsonl(tmp_path / "metrics.jsonl", history)
    (tmp_path / "diverged.json").write_text(json.dumps({"step": 40, "what": "loss", "checkpoint": 0}))
    body = run_section(tmp_path).body
    summary = re.findall(r"<td[^>]*>(.*?)</td>", body.split("</table>")[0])
    # model, dataset, latent dim, parameters (no weights: unknown), trained on, steps, time, final
    # loss and recon (the mean of the last 5%: steps 38 and 39), diverged
    assert summary[:8] == ["fc1", "points", "4", "?", "?", "40", "20", "61.5"]
    assert summary[8] == "51.5" and summary[9].startswith("at step 40: loss; checkpoint kept: step none")
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert "model.latent_dim" in body  # the configuration table


def test_a_run_section_needs_a_config_and_a_report_needs_room(tmp_path):
    with pytest.raises(UserError, match="not a vaelab run folder"):
        run_section(tmp_path)
    (tmp_path / "report.html").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        report_path(tmp_path)


def test_a_config_section_that_is_not_a_table_is_refused(tmp_path):
    (tmp_path / "config.toml").write_text('model = "fc1"\n')
    with pytest.raises(UserError, match="must be a table of keys"):
        read_config(tmp_path / "config.toml")

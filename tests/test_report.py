"""Reports (vaelab.report): pages are self-contained and escape what they show, tables format
numbers, the moving average and the plot guard match brute-force answers, and a folder's config
and report path are refused in one line when they cannot be used."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vaelab.errors import UserError
from vaelab.report import Section, page, plottable, read_config, report_path, smooth, table


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


def test_a_config_section_that_is_not_a_table_is_refused(tmp_path):
    (tmp_path / "config.toml").write_text('model = "fc1"\n')
    with pytest.raises(UserError, match="must be a table of keys"):
        read_config(tmp_path / "config.toml")


def test_a_report_needs_room(tmp_path):
    assert report_path(tmp_path) == tmp_path / "report.html"
    (tmp_path / "report.html").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        report_path(tmp_path)

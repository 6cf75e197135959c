"""`make docs`: the site builds with MkDocs --strict (no broken link, anchor or orphan page), its
home page is the README, and the generated key reference is current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.keys import config_keys, reference_markdown

ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("docs_home_hook", ROOT / "docs" / "hooks" / "home.py")
home = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(home)  # the MkDocs hook mkdocs.yml names


def test_the_key_reference_page_is_generated_from_the_code():
    page = (ROOT / "docs" / "keys.md").read_text()
    assert page == reference_markdown(), "docs/keys.md is stale: python -c 'from vaelab.keys import reference_markdown as r; open(\"docs/keys.md\", \"w\").write(r())'"
    for key in config_keys():  # every key of the default config has its row
        assert f"| `{key.name}` |" in page, key.name


def test_the_home_page_is_the_readme_with_its_links_into_the_site():
    text = "see [On a GPU](docs/gpu.md#bf16), [`docs/`](docs/) and ![shot](docs/demo-report.png); [x](https://a.b/docs/c.md)"
    assert home.site_readme(text) == "see [On a GPU](gpu.md#bf16), [`docs/`](#documentation) and ![shot](demo-report.png); [x](https://a.b/docs/c.md)"


def test_the_site_builds_strict_with_every_page(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is part of `make test`")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    site = tmp_path / "site"
    home = (site / "index.html").read_text()
    assert "make demo" in home and 'src="demo-report.png"' in home
    for page in sorted((ROOT / "docs").glob("*.md")):
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), page.name
    api = (site / "api" / "index.html").read_text()
    assert 'id="vaelab.train.train"' in api and 'id="vaelab.experiments.sweep.run_sweep"' in api  # read from the docstrings

"""MkDocs hooks of the docs site (mkdocs.yml): the home page is README.md, the repository's entry,
with its links into docs/ made relative to the site."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def site_readme(text: str) -> str:
    """README.md as a page of docs/: `docs/x.md` → `x.md`, and the link to the folder itself →
    the page's own list of the docs."""
    text = text.replace("](docs/)", "](#documentation)")
    return re.sub(r"\]\(docs/", "](", text)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "index.md":
        return site_readme(README.read_text())
    return markdown

"""The documentation's examples are tests: in README.md and every docs/*.md page, the Python blocks
run, the vaelab commands parse and name valid presets and config keys, and every relative link and
image points at a file that exists."""

import re
import shlex
from pathlib import Path

import pytest

from vaelab.cli import build_parser
from vaelab.config import load_config

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)


def test_the_docs_folder_has_pages():
    assert len(PAGES) > 1 and (ROOT / "docs" / "configuration.md") in PAGES


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in blocks(page, "python"):
        exec(compile(block, name(page), "exec"), {})
        if "runs/readme-example" in block:  # the Quick start's example writes a run folder
            assert (tmp_path / "runs" / "readme-example" / "report.html").is_file()


def test_the_readme_has_the_quick_start_python_example():
    assert any("runs/readme-example" in block for block in blocks(ROOT / "README.md", "python"))


def commands() -> list:
    """Every `vaelab ...` line of every page's bash blocks, as argv (comments cut)."""
    params = []
    for page in PAGES:
        lines = [line.split("#")[0].strip() for block in blocks(page, "bash") for line in block.splitlines()]
        params += [pytest.param(shlex.split(line)[1:], id=f"{name(page)}: {line}") for line in lines if line.startswith("vaelab ")]
    return params


@pytest.mark.parametrize("argv", commands())
def test_commands_parse_and_their_configs_are_valid(argv):
    args = build_parser().parse_args(argv)
    if args.verb in ("anomaly", "augment") or (args.verb == "train" and not args.resume):
        load_config(args.preset, args.config, args.set)
    if args.verb == "chain" and not args.action:
        load_config(args.preset, args.config, args.set)
    if args.verb == "sweep":
        from vaelab.experiments.sweep import sweep_axes, sweep_cells

        cfg = load_config(args.preset, args.config, args.set)
        assert sweep_cells(cfg, sweep_axes(cfg, args.grid))  # every grid value makes a valid config
    if args.verb == "sample":
        load_config(overrides=args.set)


def test_readme_starts_with_the_two_commands():
    first_block = blocks(ROOT / "README.md", "bash")[0]
    assert "make demo" in first_block and "make test" in first_block


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def prose(text: str) -> str:
    """The page without its fenced code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose(page.read_text()), flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_and_images_point_at_existing_files(page):
    links = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(page.read_text()))
    for link in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{name(page)}: {link} points at nothing"
        assert ROOT.resolve() in (target, *target.parents), f"{name(page)}: {link} leaves the repository"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{name(page)}: {link}: no heading #{anchor} in {target.name}"

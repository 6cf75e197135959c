"""The README's examples are tests: its Python blocks run, and its vaelab commands parse and
name valid presets and config keys."""

import re
import shlex
from pathlib import Path

import pytest

from vaelab.cli import build_parser
from vaelab.config import load_config

README = (Path(__file__).parent.parent / "README.md").read_text()


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = blocks("python")
    assert code
    for block in code:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "readme-example" / "report.html").is_file()


def commands():
    lines = [line.split("#")[0].strip() for block in blocks("bash") for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("vaelab ")]


@pytest.mark.parametrize("argv", commands(), ids=" ".join)
def test_readme_commands_parse_and_their_configs_are_valid(argv):
    args = build_parser().parse_args(argv)
    if args.verb in ("anomaly", "augment") or (args.verb == "train" and not args.resume):
        load_config(args.preset, args.config, args.set)
    if args.verb == "chain" and not args.words:
        load_config(args.preset, args.config, args.set)
    if args.verb == "sweep":
        from vaelab.experiments.sweep import sweep_axes, sweep_cells

        cfg = load_config(args.preset, args.config, args.set)
        assert sweep_cells(cfg, sweep_axes(cfg, args.grid))  # every grid value makes a valid config
    if args.verb == "sample":
        load_config(overrides=args.set)


def test_readme_starts_with_the_two_commands():
    first_block = blocks("bash")[0]
    assert "make demo" in first_block and "make test" in first_block

"""Running the `vaelab` CLI in-process for tests."""

from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass

import pytest
import torch

from vaelab.cli import main


@dataclass
class Result:
    rc: int | str
    out: str
    err: str


def cli(*args) -> Result:
    """`vaelab ARGS` in-process. An escaping exception is a bug: it is reported like the real
    process would (a traceback on stderr), so the assertions catch it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse's --help
            rc = e.code
        except Exception:
            traceback.print_exc()
            rc = "uncaught exception"
    return Result(rc, out.getvalue(), err.getvalue())


def assert_user_error(rc, out: str, err: str, *needles: str) -> str:
    """Exit code 2, exactly one non-empty `vaelab: error: ...` line on stderr naming every needle,
    no traceback, nothing on stdout. Returns the line."""
    if "Traceback" in err:
        pytest.fail(f"a traceback instead of a one-line error; it ends with: {err.strip().splitlines()[-1]}", pytrace=False)
    assert rc == 2, f"exit code {rc!r}, expected 2; stderr:\n{err}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected exactly one line on stderr, got {lines!r}"
    line = lines[0]
    assert line.startswith("vaelab: error: ") and len(line) > len("vaelab: error: ") + 5, line
    for needle in needles:
        assert needle in line, f"{needle!r} not named in: {line}"
    assert out == "", f"an error also printed to stdout: {out!r}"
    return line


def user_error(r: Result, *needles: str) -> str:
    return assert_user_error(r.rc, r.out, r.err, *needles)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for CLI-heavy modules: on a busy 2-core machine two threads stall."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Running the `vaelab` CLI in-process for tests."""

from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass

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

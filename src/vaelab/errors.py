"""The one exception type for mistakes a user can fix (bad config, bad file, bad folder).

The CLI prints its message as one line on stderr and exits with code 2; anything else that
escapes is a bug in vaelab and keeps its traceback.
"""


class UserError(Exception):
    """A mistake the user can fix; the message names what was wrong and what is valid."""


class TrainingDiverged(UserError):
    """The loss became NaN or Inf at `step`; the message names the step and the checkpoint kept."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step

    def __reduce__(self):  # whole through pickling (a Ray task's result)
        return type(self), (str(self), self.step)


DIVERGED = "diverged.json"
"""written into a run folder whose training diverged: the step, what was not finite, and the step of
the checkpoint kept (0: none)"""


def require(ok: bool, key: str, message: str) -> None:
    """A UserError "`key` `message`" unless ok: how the config's dataclasses check their values."""
    if not ok:
        raise UserError(f"{key} {message}")

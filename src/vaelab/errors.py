"""The one exception type for mistakes a user can fix (bad config, bad file, bad folder).

The CLI prints its message as one line on stderr and exits with code 2; anything else that
escapes is a bug in vaelab and keeps its traceback.
"""


class UserError(Exception):
    """A mistake the user can fix; the message names what was wrong and what is valid."""


class TrainingDiverged(UserError):
    """The loss became NaN or Inf; the message names the step and the checkpoint kept."""

"""The errors a user can act on. The entrypoints print each as one line, labelled by its kind
(``FATAL config error: ...``, ``FATAL run error: ...``, ``FATAL training diverged: ...``) and exit
with status 1; anything else is a bug and keeps its traceback.

Config validators raise plain ``ValueError`` (the entrypoints validate before anything compiles and
label those as config errors); the library raises the classes below for the other kinds.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message says what is wrong and what to do."""

    label = "error"


class ConfigError(UserError, ValueError):
    """A bad config field or flag (raised before anything compiles)."""

    label = "config error"


class RunError(UserError):
    """A workdir that is missing, empty, of another task or whose checkpoints cannot be read."""

    label = "run error"


class NonFiniteError(UserError):
    """Training produced a non-finite loss or gradient norm; no checkpoint was written after the
    last finite step."""

    label = "training diverged"

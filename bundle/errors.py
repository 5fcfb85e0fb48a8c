"""User errors: bad input that a user can fix (a missing, corrupt or mismatching file, wrong weights, an
out-of-range knob, an unknown task or split). ``python -m bundle run`` reports them as one ``error:`` line with exit
code 2; every other exception is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Base of the bundle's user errors; the message names the file, folder or field."""


class ConfigError(UserError):
    """An out-of-range or unknown knob value; the message names the field."""

"""User errors: bad input that a user can fix (a missing, corrupt or mismatching file, wrong weights, an
out-of-range knob, an unknown task or split). ``python -m bundle run`` reports them as one ``error:`` line with exit
code 2; every other exception is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Base of the bundle's user errors; the message names the file, folder or field."""


class ConfigError(UserError):
    """An out-of-range or unknown knob value; the message names the field."""


def flag(value: object, field: str) -> bool:
    """A yes/no knob: a bool, 0/1, or the strings the command line passes (``--resume false`` arrives as
    ``"false"``, which Python would read as true). Anything else is a :class:`ConfigError` naming ``field``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"{field} must be true or false, got {value!r}")

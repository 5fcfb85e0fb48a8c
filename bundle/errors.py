"""User errors: bad input that a user can fix (a missing, corrupt or mismatching file, wrong weights, an
out-of-range knob, an unknown task or split). ``python -m bundle run`` reports them as one ``error:`` line with exit
code 2; every other exception is a bug and keeps its traceback."""

from __future__ import annotations

import math


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


def is_null(value: object, *aliases: str) -> bool:
    """Whether a knob says "none": ``None``, or a string that (stripped, lower-cased) is ``""``, ``"none"``,
    ``"null"`` or one of ``aliases`` (lower-case, e.g. ``"default"``, ``"native"``). The command line cannot pass
    None (MONAI drops None overrides), so such knobs arrive as these strings."""
    if value is None:
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "none", "null", *aliases)


def number(value: object, field: str, kind: type = float, low: float | None = None, high: float | None = None,
           low_open: bool = False, allow_none: bool = False) -> int | float | None:
    """A numeric knob read where it is used: ``value`` (a number, or the string the command line passes) as ``kind``
    (int or float) inside [``low``, ``high``] (``low_open``: ``low`` excluded); None passes with ``allow_none``.
    Anything else is a :class:`ConfigError` naming ``field`` and the allowed range."""
    if value is None and allow_none:
        return None
    what = ("an integer" if kind is int else "a number") + (
        "" if low is None and high is None else
        f" in {'(' if low_open else '['}{'-inf' if low is None else low}, {'inf' if high is None else high}]")
    if allow_none:
        what += " or null"
    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        v = float(value.strip()) if isinstance(value, str) else float(value)
        if not math.isfinite(v) or (kind is int and v != int(v)):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{field} must be {what}, got {value!r}") from None
    if (low is not None and (v <= low if low_open else v < low)) or (high is not None and v > high):
        raise ConfigError(f"{field} must be {what}, got {value!r}")
    return int(v) if kind is int else v



def seed(value: object) -> int | None:
    """The ``seed`` knob as read by ``set_determinism``: an integer in [0, 2^32 − 1] (numpy's range) or null."""
    return number(value, "seed", int, 0, 2**32 - 1, allow_none=True)

"""Validation of MONAI Label request fields before any of them reaches the bundle's workflow (no monailabel import, so
the checks are unit-tested in the project's own environment).

Threat model (monailabel_app/README.md): the server trusts its configs, its ``--conf`` and its studies folder; it
never trusts a request field. MONAI's config parser evaluates ``$`` strings, resolves ``@`` references and reads
files for ``%`` macros, recursively through dicts and lists, so a request value must never arrive there as a string
it could interpret. Every field is therefore checked against an allow-list and handed over as data:

- ``case_name`` and image ids: ``[A-Za-z0-9_.-]``, 1-128 characters, not only dots (no path separator, no ``$``/``@``/
  ``%``);
- image and condition paths: inside the studies folder after resolution (symlinks followed), no ``..`` part, passed
  on as ``pathlib.Path`` objects (not strings);
- knobs: cast to the type of the config default and checked against :data:`RANGES` / :data:`CHOICES`.

:func:`assert_plain_data` is the last guard on the overrides: it refuses any string that the parser would interpret.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping

SEQUENCES = ("C0", "DE", "T2")
MYOPS_NAME = re.compile(r"^(?P<case>.+)_(?P<seq>C0|DE|T2)\.nii(\.gz)?$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# sampler knobs of configs/inference.yaml a request may set (defaults are read from the config itself)
KNOBS = ("num_inference_steps", "guidance_scale_1", "guidance_scale_2", "strength", "guide", "residual", "num_samples",
         "seed", "cache_interval", "views", "estimator")
# allowed range of each numeric knob: (type, low, high, low inclusive); the server bounds num_samples (memory) and the
# step count (DDIM cannot take more steps than the schedule's num_train_timesteps = 1000)
MAX_STEPS, MAX_SAMPLES, MAX_SEED = 1000, 16, 2**32 - 1  # numpy's seed range (set_determinism seeds numpy too)
RANGES = {
    "num_inference_steps": (int, 1, MAX_STEPS, True),
    "guidance_scale_1": (float, 0.0, 100.0, True),
    "guidance_scale_2": (float, 0.0, 100.0, True),
    "strength": (float, 0.0, 1.0, False),
    "num_samples": (int, 1, MAX_SAMPLES, True),
    "seed": (int, 0, MAX_SEED, True),
    "cache_interval": (int, 1, MAX_STEPS, True),
    "views": (int, 1, 8, True),
}
# knobs that take only these values (views: bundle.tta.VIEWS; estimator: bundle.sampler.ESTIMATORS)
CHOICES = {"views": (1, 2, 4, 8), "estimator": ("sample", "x0")}
# the first character of a string that MONAI's config parser interprets (expression, reference, macro)
PARSER_PREFIXES = ("$", "@", "%")


class RequestError(ValueError):
    """A bad request value; answered with HTTP ``status`` (400) and the message as ``detail``."""

    status = 400


class ForbiddenPath(RequestError):
    """A path outside the studies folder (or with a ``..`` part); answered with HTTP 403."""

    status = 403


def is_safe_name(value: Any) -> bool:
    """A safe case name / image id: :data:`SAFE_NAME`, not only dots."""
    return isinstance(value, str) and bool(SAFE_NAME.fullmatch(value)) and set(value) != {"."}


def check_name(value: Any, field: str) -> str:
    """``value`` if :func:`is_safe_name`; a RequestError naming ``field`` otherwise."""
    if not is_safe_name(value):
        raise RequestError(f"{field} must be 1-128 characters of A-Z a-z 0-9 _ . - (no path separator), got "
                           f"{_short(value)}")
    return value


def check_path(value: Any, studies: Path, field: str, base: Path | None = None) -> Path:
    """The resolved path of ``value`` (absolute, or relative to ``base``, itself inside ``studies``) if it lies inside
    the ``studies`` folder and has no ``..`` part; a ForbiddenPath (403) otherwise, a RequestError for a non-string."""
    if not isinstance(value, (str, os.PathLike)) or not str(value) or "\x00" in str(value):
        raise RequestError(f"{field} must be a file name or a path inside the studies folder, got {_short(value)}")
    p = Path(value)
    if ".." in p.parts:
        raise ForbiddenPath(f"{field} {_short(str(value))} is refused: '..' is not allowed in paths")
    if not p.is_absolute():
        p = (base if base is not None else studies) / p
    root = Path(studies).resolve()
    resolved = p.resolve()
    if not resolved.is_relative_to(root):
        raise ForbiddenPath(f"{field} {_short(str(value))} is refused: only files inside the studies folder are read")
    return resolved


def check_image(value: Any, studies: Path) -> None:
    """The raw request's ``image`` before MONAI Label resolves it (it opens any existing path, a relative one from the
    server's working directory): a datastore id (:func:`check_name`) or a path inside ``studies``
    (:func:`check_path`; anything with a path separator counts as a path)."""
    if not isinstance(value, str) or not value:
        raise RequestError(f"image must be a datastore image id, got {_short(value)}")
    if os.sep in value or (os.altsep and os.altsep in value) or os.path.exists(value):
        check_path(value, studies, "image", base=Path.cwd())
    else:
        check_name(value, "image")


def _range_text(name: str) -> str:
    if name in CHOICES:
        return "one of " + ", ".join(map(str, CHOICES[name]))
    typ, lo, hi, lo_incl = RANGES[name]
    return f"{'an integer' if typ is int else 'a number'} in {'[' if lo_incl else '('}{lo}, {hi}]"


def range_texts() -> Dict[str, str]:
    """Allowed values of each numeric knob, as shown in the server's /info/."""
    return {k: _range_text(k) for k in RANGES}


def validate_knob(name: str, value: Any) -> Any:
    """``value`` of knob ``name`` (after :func:`cast_knob`) checked against :data:`CHOICES` and :data:`RANGES`; a
    RequestError naming the knob and its allowed values otherwise."""
    if name == "seed" and value is None:  # null seed: not reproducible, allowed as in the bundle
        return None
    if name in CHOICES and value not in CHOICES[name]:
        raise RequestError(f"{name} must be {_range_text(name)}, got {_short(value)}")
    if name not in RANGES:
        return value
    typ, lo, hi, lo_incl = RANGES[name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo <= value if lo_incl else lo < value) and value <= hi
    if not ok:
        raise RequestError(f"{name} must be {_range_text(name)}, got {_short(value)}")
    return value


def cast_knob(name: str, value: Any, default: Any) -> Any:
    """Request/conf values arrive as JSON or as strings (``--conf``): cast them to the config default's type."""
    if name == "guide":
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "default")):
            return None
        if not isinstance(value, str) or value.strip() not in (*SEQUENCES, "regression"):
            raise RequestError(f"guide must be one of {[*SEQUENCES, 'regression']} or null, got {_short(value)}")
        return value.strip()
    if name == "seed" and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))):
        return None
    if isinstance(default, str):  # a text knob (estimator): its allowed values are checked by validate_knob
        if not isinstance(value, str):
            raise RequestError(f"{name} must be {_range_text(name) if name in CHOICES else 'a string'}, "
                               f"got {_short(value)}")
        return value.strip()
    try:
        if isinstance(value, (dict, list, tuple, set)):
            raise TypeError
        if isinstance(default, bool):
            v = str(value).strip().lower()
            if v in ("1", "true", "yes"):
                return True
            if v in ("0", "false", "no"):
                return False
            raise ValueError
        if isinstance(value, bool):  # JSON true/false is no number
            raise ValueError
        if isinstance(default, int):
            f = float(value)
            if not math.isfinite(f) or f != int(f):
                raise ValueError
            return int(f)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError, OverflowError):
        what = "true or false" if isinstance(default, bool) else (
            _range_text(name) if name in RANGES else f"a {type(default).__name__}")
        raise RequestError(f"{name} must be {what}, got {_short(value)}") from None
    raise RequestError(f"{name} cannot be set by a request")  # a knob whose default has no known type


def knob_types(defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """A value of each knob's type from the config ``defaults`` (the integer knobs may default to null or a float in
    the config; :func:`cast_knob` casts a request value to the type of this value)."""
    return dict(defaults, num_inference_steps=0, num_samples=0, seed=0, cache_interval=0, views=0)


def validate_knobs(request: Mapping[str, Any], defaults: Mapping[str, Any], types: Mapping[str, Any], task: str,
                   conditions: Iterable[str]) -> Dict[str, Any]:
    """The sampler knobs of one request: each from the request, else ``defaults``, cast to the type of ``types[k]``
    and checked; then the guide against the task's ``conditions``. A RequestError naming the knob otherwise."""
    conditions = list(conditions)
    knobs = {}
    for k in KNOBS:
        v = request[k] if k in request else defaults.get(k)
        knobs[k] = validate_knob(k, cast_knob(k, v, types[k]))
    g = knobs["guide"]
    if g in SEQUENCES and g not in conditions:
        raise RequestError(f"guide must be 'regression', 'default' (null) or a condition of task {task} "
                           f"({' or '.join(conditions)}), got {g!r}")
    if knobs["residual"] and g != "regression":
        raise RequestError(f"residual true needs guide 'regression' (got guide {g or 'default'!r}): "
                           "pass residual false to start from a condition sequence")
    return knobs


def assert_plain_data(overrides: Mapping[str, Any], path: str = "") -> None:
    """Refuse (RuntimeError: a bug of the app, not of the request) any string in ``overrides`` (recursively through
    dicts, lists and tuples) that MONAI's config parser would interpret (starts with ``$``, ``@`` or ``%``)."""
    items = overrides.items() if isinstance(overrides, Mapping) else enumerate(overrides)
    for k, v in items:
        where = f"{path}#{k}" if path else str(k)
        if isinstance(v, str) and v.startswith(PARSER_PREFIXES):
            raise RuntimeError(f"override {where} = {v[:40]!r} would be interpreted by the config parser")
        if isinstance(v, (Mapping, list, tuple)):
            assert_plain_data(v, where)


def _short(value: Any, n: int = 80) -> str:
    """``repr(value)`` cut to ``n`` characters (a refusal's message stays one short line)."""
    r = repr(value).replace("\n", " ")
    return r if len(r) <= n else r[: n - 3] + "..."

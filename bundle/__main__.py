"""``python -m bundle run ...`` = ``python -m monai.bundle run ...`` with clean failures: bad input (a missing,
corrupt or mismatching file, wrong weights, an out-of-range knob, an unwritable output folder) ends with one line
``error: <what, naming the file or field>`` on stderr and exit code 2 instead of MONAI's chained traceback.
User errors are the exceptions of ``bundle.errors`` (``UserError``: ``DataError``, ``WeightsError``, ``ConfigError``),
raised where the input is checked (the loader turns a file's read errors into ``DataError``), and an OS refusal naming
a file (``FileNotFoundError``/``PermissionError``), found at the bottom of the explicit ``raise ... from`` chain only
(:func:`root_cause`); the engines' own error log lines (ignite's
"terminating due to exception", MONAI's ``StatsHandler`` traceback) are dropped so that the one line is all a user
sees. Other errors (bugs) keep their full traceback. Outputs are written atomically, so nothing half-written remains."""

from __future__ import annotations

import logging
import sys

from bundle.errors import UserError

class EngineErrorFilter(logging.Filter):
    """Drops the engines' error records (ignite's "... terminating due to exception", MONAI StatsHandler's logged
    traceback): the exception itself reaches :func:`main`, which prints one line for a user error and the full
    traceback for a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (record.levelno >= logging.ERROR and ("terminating due to exception" in msg
                                                         or msg.startswith("Exception: ")))


def _quiet_engine_errors() -> None:
    """Put :class:`EngineErrorFilter` on every logger, those that exist and those created later (ignite and MONAI
    create theirs while the workflow is built)."""
    f = EngineErrorFilter()
    for name in [None, *logging.root.manager.loggerDict]:
        logging.getLogger(name).addFilter(f)
    get = logging.Logger.manager.getLogger

    def get_filtered(name):
        lg = get(name)
        if f not in lg.filters:
            lg.addFilter(f)
        return lg

    logging.Logger.manager.getLogger = get_filtered  # type: ignore[method-assign]


def root_cause(e: BaseException) -> BaseException:
    """The innermost exception of an explicit ``raise ... from`` chain (MONAI wraps an error of a config expression
    or instantiation twice, each ``from`` the one below). An exception merely raised while another was being handled
    (the implicit ``__context__``) is not followed: a ``KeyError`` raised in an ``except FileNotFoundError`` block is
    a ``KeyError``."""
    while e.__cause__ is not None:
        e = e.__cause__
    return e


def is_user_error(e: BaseException) -> bool:
    """A user error: one of the bundle's own :class:`~bundle.errors.UserError` (raised where the input is checked),
    or an OS refusal that names the file (missing, not permitted); nothing is guessed from the message."""
    return isinstance(e, UserError) or (isinstance(e, (FileNotFoundError, PermissionError)) and e.filename is not None)


def main(argv: list[str] | None = None) -> int:
    import fire
    from monai.bundle import scripts

    argv = sys.argv[1:] if argv is None else argv
    _quiet_engine_errors()
    try:
        fire.Fire({"run": scripts.run, "verify_metadata": scripts.verify_metadata}, command=argv)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - classified below
        root = root_cause(e)
        if is_user_error(root):
            msg = str(root).strip().strip('"') or type(root).__name__
            print(f"error: {msg}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bundle run ...`` = ``python -m monai.bundle run ...`` with clean failures: bad input (a missing,
corrupt or mismatching file, wrong weights, an out-of-range knob, an unwritable output folder) ends with one line
``error: <what, naming the file or field>`` on stderr and exit code 2 instead of MONAI's chained traceback.
User errors are the exceptions of ``bundle.errors`` (``UserError``: ``DataError``, ``WeightsError``, ``ConfigError``),
``FileNotFoundError``/``PermissionError`` and nibabel's read errors; the engines' own error log lines (ignite's
"terminating due to exception", MONAI's ``StatsHandler`` traceback) are dropped so that the one line is all a user
sees. Other errors (bugs) keep their full traceback. Outputs are written atomically, so nothing half-written remains."""

from __future__ import annotations

import logging
import sys

from bundle.errors import UserError

USER_ERRORS = (UserError, FileNotFoundError, PermissionError)


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
    """The innermost exception of a ``raise ... from`` / context chain (MONAI wraps config errors twice), followed as
    Python prints it: ``raise X from None`` ends the chain at ``X`` (e.g. a ``WeightsError`` raised while handling
    torch's size-mismatch ``RuntimeError``)."""
    while True:
        nxt = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)
        if nxt is None:
            return e
        e = nxt


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
        if isinstance(root, USER_ERRORS) or "nibabel" in type(root).__module__ or "ImageFileError" in type(root).__name__:
            msg = str(root).strip().strip('"') or type(root).__name__
            print(f"error: {msg}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

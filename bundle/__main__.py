"""``python -m bundle run ...`` = ``python -m monai.bundle run ...`` with clean failures: bad input (a missing,
corrupt or mismatching file, wrong weights, an out-of-range knob, an unwritable output folder) ends with one line
``error: <what, naming the file or field>`` on stderr and exit code 2 instead of MONAI's chained traceback.
Other errors (bugs) keep their full traceback. Outputs are written atomically, so nothing half-written remains."""

from __future__ import annotations

import sys

from bundle.data import DataError
from bundle.weights import WeightsError

USER_ERRORS = (DataError, WeightsError, ValueError, FileNotFoundError, PermissionError, KeyError)


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

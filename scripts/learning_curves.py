"""Learning curves of committed training logs, as a markdown table (issue 14's evidence: what limits the quality).

Reads the ``Epoch[N] Metrics -- <metric>: <value>`` lines that the trainings' validation handler writes (the
tuning-fold PSNR at the profile's size for the image-space regressors, the validation loss for the diffusion model)
and prints one row per log: the value every ``--every`` epochs, the best (and its epoch) and the last.

    PYTHONPATH=. .venv/bin/python scripts/learning_curves.py docs/logs/tune/guide_*.log --metric val_psnr \\
        [--doc docs/results.md --marker learning_curves]

With ``--doc`` the table replaces the block between ``<!-- <marker>:begin -->`` and ``<!-- <marker>:end -->``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bundle.atomic import atomic_write  # noqa: E402

LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)$")


def read_curve(text: str, metric: str) -> dict[int, float]:
    """``{epoch: value}`` of ``metric`` from a training log's ``Epoch[N] Metrics -- a: 1.0 b: 2.0`` lines (the last
    line of an epoch wins, as after a resume)."""
    curve: dict[int, float] = {}
    for line in text.splitlines():
        m = LINE.search(line)
        if not m:
            continue
        fields = dict(re.findall(r"(\w+): ([-+0-9.eE]+|nan)", m.group(2)))
        if metric in fields:
            curve[int(m.group(1))] = float(fields[metric])
    return curve


def table(logs: list[Path], metric: str, every: int, higher_is_better: bool = True) -> str:
    """Markdown table: one row per log with its curve sampled every ``every`` epochs, its best and its last value."""
    curves = {p: read_curve(p.read_text(errors="replace"), metric) for p in logs}
    empty = [str(p) for p, c in curves.items() if not c]
    if empty:
        raise SystemExit(f"error: no '{metric}' lines in {', '.join(empty)}")
    last_epoch = max(max(c) for c in curves.values())
    cols = list(range(every, last_epoch + 1, every))
    pick = max if higher_is_better else min
    rows = [f"| log | {' | '.join(str(e) for e in cols)} | best (epoch) | last |",
            "|---|" + "---|" * (len(cols) + 2)]
    for p, c in curves.items():
        best = pick(c, key=lambda e: (c[e], -e) if higher_is_better else (c[e], e))
        cells = [f"{c[e]:.2f}" if e in c else "" for e in cols]
        rows.append(f"| `{p.name}` | {' | '.join(cells)} | {c[best]:.2f} ({best}) | {c[max(c)]:.2f} ({max(c)}) |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--metric", default="val_psnr")
    ap.add_argument("--every", type=int, default=40, help="epochs between the table's columns")
    ap.add_argument("--lower_is_better", action="store_true", help="for a loss")
    ap.add_argument("--doc", type=Path, help="markdown file whose marked block is replaced by the table")
    ap.add_argument("--marker", default="learning_curves")
    a = ap.parse_args(argv)
    missing = [str(p) for p in a.logs if not p.is_file()]
    if missing:
        raise SystemExit(f"error: log not found: {', '.join(missing)}")
    out = table(a.logs, a.metric, a.every, not a.lower_is_better)
    if a.doc is None:
        print(out, end="")
        return 0
    begin, end = f"<!-- {a.marker}:begin -->\n", f"<!-- {a.marker}:end -->"
    text = a.doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"error: {a.doc} has no {begin.strip()} ... {end} block")
    head, rest = text.split(begin, 1)
    new = head + begin + out + end + rest.split(end, 1)[1]
    atomic_write(a.doc, lambda tmp: Path(tmp).write_text(new))
    print(f"wrote the table into {a.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

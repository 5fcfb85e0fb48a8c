"""Cross-validation of a guide-regressor recipe over the training cases: one 5-case tuning fold cannot tell recipes
apart (docs/results.md, v0.9.0: the tuning fold said +0.36 dB, validation -0.07 / -0.08 / +0.23 dB).

For every fold k the recipe's guide is trained on the other training cases (`--train_split train_tune` with
`--tuning_ids` = fold k; plus the recipe's own arguments) and scored alone on fold k (`scripts/results.py --split tune
--only guide`, with the fold's views and profile). Fold 0 is the bundle's tuning fold (configs/common.yaml
`tuning_ids`); the default folds are the 25 MyoPS training ids by id mod 5. Validation is never touched.

    PYTHONPATH=. .venv/bin/python scripts/cv.py --name cdaff -- --augment_affine true \
        --extra_train_dir ../shared/data/myopspp_centre_d --extra_train_case_ids "[4006,4007,...,4015]"
    PYTHONPATH=. .venv/bin/python scripts/cv.py --compare aff cdaff      # paired over folds and cases

Writes output/cv/<name>/fold_<k>/ (the guide, its training log headed by its command, the per-slice scores) and
prints a table: per fold and task the guide's PSNR / SSIM, then the mean over folds. A fold whose guide and scores
exist is not redone (delete its folder to redo it). ``--compare A B`` pairs B - A per fold and task over the slices
both scored.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("lge", "t2", "bssfp")
FOLDS = [[i for i in range(101, 126) if i % 5 == (4 + k) % 5] for k in range(5)]  # fold 0 = tuning_ids
GUIDE_CONFIGS = ["configs/common.yaml", "configs/baselines/image.yaml", "configs/baselines/unet_l1.yaml",
                 "configs/train_guide.yaml"]


def ids_arg(ids: list[int]) -> str:
    return "[" + ",".join(str(i) for i in ids) + "]"


def run(cmd: list[str], log: Path | None = None) -> None:
    """Run ``cmd`` from the bundle root; with ``log`` its output goes there after a first line naming the command."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if log is None:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
    else:
        with open(log, "w") as f:
            f.write("# command: " + " ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
        out = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:6])} ... failed (exit {proc.returncode}):\n{out[-3000:]}")


def fold(args, k: int, ids: list[int], extra: list[str]) -> Path:
    """Train (unless present) and score fold ``k``; returns its scores folder (<task>/metrics.csv)."""
    out = args.output_dir / args.name / f"fold_{k}"
    guide = out / "models" / f"guide_{args.profile}_any.pt"
    common = ["--dataset_dir", str(args.dataset_dir), "--profile", args.profile, "--tuning_ids", ids_arg(ids)]
    if not guide.is_file():
        out.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(GUIDE_CONFIGS), *common,
             "--train_split", "train_tune", "--val_split", "tune", "--val_interval", str(args.val_interval),
             "--baselines_dir", str(out), "--output_dir", str(out), *extra], log=out / "train.log")
    scores = out / "scores"
    if not all((scores / "guide" / t / "metrics.csv").is_file() for t in TASKS):
        run([sys.executable, "scripts/results.py", "--split", "tune", "--only", "guide", "--dataset_dir",
             str(args.dataset_dir), "--profile", args.profile, "--output_dir", str(scores), "--doc", os.devnull,
             "--set", f"tuning_ids={ids_arg(ids)}", f"guide_weights={guide}", f"views={args.views}"])
    return scores / "guide"


def read_scores(folder: Path) -> dict[str, dict[tuple[str, str], dict[str, float]]]:
    """{task: {(case, slice): {"psnr": .., "ssim": ..}}} from a scores folder's per-slice metrics.csv."""
    out = {}
    for t in TASKS:
        with open(folder / t / "metrics.csv") as f:
            out[t] = {(r["case"], r["slice"]): {m: float(r[m]) for m in ("psnr", "ssim")} for r in csv.DictReader(f)}
    return out


def scored_folds(recipe_dir: Path, n_folds: int) -> dict[int, dict]:
    """{fold: scores} of the folds of ``recipe_dir`` that have been scored."""
    folders = {k: recipe_dir / f"fold_{k}" / "scores" / "guide" for k in range(n_folds)}
    return {k: read_scores(f) for k, f in folders.items() if all((f / t / "metrics.csv").is_file() for t in TASKS)}


def mean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def table(per_fold: dict[int, dict], label: str) -> str:
    """Markdown: per fold and task the mean PSNR / SSIM over the fold's slices, then the mean over folds."""
    head = "| " + label + " | " + " | ".join(f"{t} PSNR / SSIM" for t in TASKS) + " | mean PSNR / SSIM |"
    lines = [head, "|" + "---|" * (len(TASKS) + 2)]
    sign = "+" if label.startswith("Δ") else ""

    def cells(pairs: list[tuple[float, float]]) -> str:
        return " | ".join(f"{p:{sign}.2f} / {s:{sign}.4f}" for p, s in pairs)

    rows = {}
    for k, sc in sorted(per_fold.items()):
        rows[k] = [(mean([v["psnr"] for v in sc[t].values()]), mean([v["ssim"] for v in sc[t].values()])) for t in TASKS]
        m = (mean([c[0] for c in rows[k]]), mean([c[1] for c in rows[k]]))
        lines.append(f"| fold {k} | {cells([*rows[k], m])} |")
    cols = [(mean([rows[k][i][0] for k in rows]), mean([rows[k][i][1] for k in rows])) for i in range(len(TASKS))]
    allm = (mean([c[0] for c in cols]), mean([c[1] for c in cols]))
    lines.append(f"| **mean of {len(rows)} folds** | {cells([*cols, allm])} |")
    return "\n".join(lines)


def paired(a: dict[int, dict], b: dict[int, dict]) -> dict[int, dict]:
    """Per fold and task, B - A on the slices both scored (NaN dropped)."""
    out = {}
    for k in sorted(set(a) & set(b)):
        out[k] = {}
        for t in TASKS:
            keys = [s for s in a[k][t] if s in b[k][t]]
            out[k][t] = {s: {m: b[k][t][s][m] - a[k][t][s][m] for m in ("psnr", "ssim")} for s in keys}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help="the recipe's name: output/cv/<name>/")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="pair two recipes' folds: B - A")
    ap.add_argument("--dataset_dir", type=Path, default=Path(os.environ.get("MYOPS_DIR", ROOT.parent / "shared/data/myops2020")))
    ap.add_argument("--output_dir", type=Path, default=ROOT / "output" / "cv")
    ap.add_argument("--folds", nargs="*", default=None, help="the folds as comma-separated ids (default: MyoPS by id mod 5)")
    ap.add_argument("--only_folds", nargs="*", type=int, default=None, help="run only these fold numbers")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--views", type=int, default=8, help="test-time views of the scoring (configs/inference.yaml)")
    ap.add_argument("--val_interval", type=int, default=20)
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="-- then the recipe's training arguments")
    args = ap.parse_args()
    folds = [[int(i) for i in f.split(",")] for f in args.folds] if args.folds else FOLDS
    if args.compare:
        a, b = (scored_folds(args.output_dir / name, len(folds)) for name in args.compare)
        if not set(a) & set(b):
            raise SystemExit(f"error: {args.compare[0]} and {args.compare[1]} have no scored fold in common")
        print(table(paired(a, b), f"Δ {args.compare[1]} − {args.compare[0]}"))
        return
    if not args.name:
        raise SystemExit("error: --name (a recipe to run) or --compare A B")
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    todo = args.only_folds if args.only_folds is not None else range(len(folds))
    per_fold = {k: read_scores(fold(args, k, folds[k], extra)) for k in todo}
    text = table(per_fold, f"guide `{args.name}`, views {args.views}")
    (args.output_dir / args.name / "table.md").write_text(text + "\n")
    (args.output_dir / args.name / "recipe.json").write_text(json.dumps({"extra": extra, "folds": folds}, indent=1))
    print(text)


if __name__ == "__main__":
    main()

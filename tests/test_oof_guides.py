"""scripts/oof_guides.sh: the out-of-fold guide trainings and the `train_guide_folds` value it writes. The trainer is
replaced by a stand-in that records its arguments and writes the weights file, so the test checks the folds, not the
training (the slow bridge test in tests/test_workflows.py trains with such folds)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FAKE = """#!/usr/bin/env bash
if [ "$1" = -m ]; then
  args=("$@")
  for i in "${!args[@]}"; do [ "${args[$i]}" = --export_dir ] && out=${args[$((i + 1))]}; done
  printf '%s\\n' "$@" > "$out/args.txt"
  [ -n "${FAIL_FOLD:-}" ] && [[ "$out" == *"g$FAIL_FOLD" ]] && exit 1
  touch "$out/guide_cpu_any.pt"
else
  exec "$REAL_PY" "$@"
fi
"""


def _run(tmp_path: Path, split: str, **env) -> subprocess.CompletedProcess:
    fake = tmp_path / "py"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    e = dict(os.environ, PY=str(fake), REAL_PY=sys.executable, SPLIT=split, DATASET_DIR="data", OUT=str(tmp_path / "oof"),
             **env)
    return subprocess.run(["bash", "scripts/oof_guides.sh", "--augment_affine", "true"], cwd=ROOT, env=e,
                          capture_output=True, text=True)


def _arg(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_tuning_folds_partition_train_tune_and_keep_the_tuning_fold_out(tmp_path):
    tuning = yaml.safe_load((ROOT / "configs" / "common.yaml").read_text())["tuning_ids"]
    res = _run(tmp_path, "train_tune")
    assert res.returncode == 0, res.stderr
    folds = ast.literal_eval((tmp_path / "oof" / "folds.txt").read_text())
    assert len(folds) == 4
    ids = [i for f in folds for i in f["case_ids"]]
    assert sorted(ids) == sorted(set(range(101, 126)) - set(tuning))
    for r, f in enumerate(folds):
        assert f["weights"] == str(tmp_path / "oof" / f"g{r}" / "guide_cpu_any.pt")
        args = (tmp_path / "oof" / f"g{r}" / "args.txt").read_text().splitlines()
        # the fold's guide never sees the fold's cases nor the tuning fold: both are held out of train_tune
        assert sorted(ast.literal_eval(_arg(args, "--tuning_ids"))) == sorted(tuning + f["case_ids"])
        assert _arg(args, "--train_split") == "train_tune" and args[-2:] == ["--augment_affine", "true"]


def test_shipping_folds_cover_all_training_cases(tmp_path):
    res = _run(tmp_path, "train")
    assert res.returncode == 0, res.stderr
    folds = ast.literal_eval((tmp_path / "oof" / "folds.txt").read_text())
    assert len(folds) == 5 and sorted(i for f in folds for i in f["case_ids"]) == list(range(101, 126))
    for r, f in enumerate(folds):
        args = (tmp_path / "oof" / f"g{r}" / "args.txt").read_text().splitlines()
        assert sorted(ast.literal_eval(_arg(args, "--tuning_ids"))) == f["case_ids"]


def test_a_failed_fold_or_a_bad_split_is_an_error_and_writes_no_folds(tmp_path):
    res = _run(tmp_path, "train", FAIL_FOLD="2")
    assert res.returncode != 0 and "fold 2" in res.stderr
    assert not (tmp_path / "oof" / "folds.txt").exists()
    res = _run(tmp_path, "validation")
    assert res.returncode == 2 and "SPLIT must be" in res.stderr

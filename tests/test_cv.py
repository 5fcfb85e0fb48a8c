"""scripts/cv.py: the folds, the per-fold and paired tables, and one end-to-end run on the phantom (slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import md_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.cv import FOLDS, TASKS, paired, table  # noqa: E402


def test_default_folds_partition_the_training_cases_and_start_with_the_tuning_fold():
    common = yaml.safe_load((ROOT / "configs" / "common.yaml").read_text())
    assert FOLDS[0] == common["tuning_ids"]
    assert sorted(sum(FOLDS, [])) == list(range(101, 126)) and all(len(f) == 5 for f in FOLDS)


def _scores(values: dict[str, list[float]]) -> dict:
    return {t: {("c", str(i)): {"psnr": v, "ssim": v / 100} for i, v in enumerate(values[t])} for t in TASKS}


def test_paired_differences_and_fold_means():
    a = {0: _scores({"lge": [10, 12], "t2": [14, 14], "bssfp": [16, 16]}),
         1: _scores({"lge": [11, 11], "t2": [13, 13], "bssfp": [15, 15]})}
    b = {0: _scores({"lge": [11, 13], "t2": [14, 14], "bssfp": [16, float("nan")]}),
         1: _scores({"lge": [11, 11], "t2": [13.5, 13.5], "bssfp": [15, 15]})}
    d = paired(a, b)
    assert d[0]["lge"][("c", "0")]["psnr"] == 1 and d[1]["t2"][("c", "1")]["psnr"] == 0.5
    text = table(d, "Δ b − a")
    lines = text.splitlines()
    name, v = md_row(lines[2])  # per task then the mean: PSNR / SSIM differences
    assert name == "fold 0" and v[:8] == pytest.approx([1, 0.01, 0, 0, 0, 0, 0.33, 0.0033], abs=1e-9)
    assert md_row(lines[-1]) == ("**mean of 2 folds**", pytest.approx([0.5, 0.005, 0.25, 0.0025, 0, 0, 0.25, 0.0025]))
    plain = table(a, "guide").splitlines()
    assert md_row(plain[2]) == ("fold 0", pytest.approx([11, 0.11, 14, 0.14, 16, 0.16, 13.67, 0.1367]))


@pytest.mark.slow
def test_cross_validation_trains_without_the_fold_and_scores_only_the_fold(phantom_dir, tmp_path):
    """Two one-case folds on the phantom (tiny profile, one epoch): fold k's guide is trained with fold k held out
    and scored on fold k's slices alone; a second run reuses both folds; a recipe paired with itself is zero."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "scripts" / "cv.py"), "--name", "a", "--dataset_dir", str(phantom_dir),
           "--output_dir", str(tmp_path), "--folds", "101", "102", "--profile", "tiny", "--views", "2",
           "--val_interval", "1", "--", "--max_epochs", "1", "--batch_size", "4"]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "| **mean of 2 folds** |" in first.stdout
    for k, case in enumerate(("101", "102")):
        out = tmp_path / "a" / f"fold_{k}"
        assert f"--tuning_ids [{case}] --train_split train_tune" in (out / "train.log").read_text().splitlines()[0]
        for t in TASKS:
            rows = (out / "scores" / "guide" / t / "metrics.csv").read_text().splitlines()[1:]
            assert rows and {r.split(",")[1] for r in rows} == {f"myops_training_{case}"}
    guide = tmp_path / "a" / "fold_0" / "models" / "guide_tiny_any.pt"
    stamp = guide.stat().st_mtime
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and guide.stat().st_mtime == stamp
    same = subprocess.run([sys.executable, str(ROOT / "scripts" / "cv.py"), "--compare", "a", "a", "--output_dir",
                           str(tmp_path), "--folds", "101", "102"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert same.returncode == 0 and "| **mean of 2 folds** | +0.00 / +0.0000 |" in same.stdout

"""scripts/results.py: the paired comparison of CMRDiff with its best competitor (case-resampling interval)."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.results import COLS, TASKS, paired_bootstrap, paired_table, per_slice  # noqa: E402


def rows(values: dict[tuple[str, str], float], key: str = "psnr") -> dict:
    return {k: {c: (v if c == key else 0.0) for c, _, _ in COLS} for k, v in values.items()}


def test_constant_difference_has_a_point_interval():
    b = rows({("a", "0"): 10.0, ("a", "1"): 12.0, ("b", "0"): 14.0})
    a = rows({k: v["psnr"] + 0.5 for k, v in b.items()})
    r = paired_bootstrap(a, b, "psnr", n_boot=500)
    assert r["delta"] == pytest.approx(0.5) and r["low"] == pytest.approx(0.5) and r["high"] == pytest.approx(0.5)
    assert r["p_above"] == 1.0 and r["cases"] == 2 and r["slices"] == 3


def test_cases_not_slices_are_resampled():
    # case A: one slice +3; case B: three slices -1. Mean over slices 0; resampling cases gives {AA: +3, BB: -1,
    # AB: 0}, so the interval spans [-1, +3] and about a quarter of the draws are above 0.
    b = rows({("A", "0"): 0.0, ("B", "0"): 0.0, ("B", "1"): 0.0, ("B", "2"): 0.0})
    a = rows({("A", "0"): 3.0, ("B", "0"): -1.0, ("B", "1"): -1.0, ("B", "2"): -1.0})
    r = paired_bootstrap(a, b, "psnr", n_boot=4000, seed=1)
    assert r["delta"] == pytest.approx(0.0)
    assert r["low"] == pytest.approx(-1.0) and r["high"] == pytest.approx(3.0)
    assert 0.2 < r["p_above"] < 0.3


def test_only_shared_finite_slices_are_paired():
    a = rows({("A", "0"): 5.0, ("A", "1"): math.nan, ("A", "2"): 9.0})
    b = rows({("A", "0"): 4.0, ("A", "1"): 1.0})
    r = paired_bootstrap(a, b, "psnr", n_boot=100)
    assert r["slices"] == 1 and r["delta"] == pytest.approx(1.0)
    assert paired_bootstrap(a, rows({("B", "0"): 1.0}), "psnr")["cases"] == 0


def write_metrics(out: Path, task: str, values: list[float]) -> None:
    out.mkdir(parents=True)
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "case", "slice", *(c for c, _, _ in COLS)])
        for i, v in enumerate(values):
            w.writerow([task, f"case{i // 2}", i % 2, v, v / 100, v - 2, v / 50])


def test_table_compares_with_the_best_competitor_per_column(tmp_path):
    per_method = {"cmrdiff": [16.0, 17.0, 15.0, 16.0], "linear": [15.0, 16.5, 14.0, 15.5],
                  "unet_l1": [14.0, 14.0, 14.0, 14.0], "guide": [30.0, 30.0, 30.0, 30.0]}
    results = _write_results(tmp_path, per_method)
    table = paired_table(results, {m: f"{m} (knobs)" for m in results}, tmp_path)
    lines = [ln for ln in table.splitlines() if ln.startswith("| lge | PSNR")]
    assert len(lines) == 1
    # linear is the best competitor (the guide is part of CMRDiff, not a competitor); +0.75 dB on every case
    assert "| linear |" in lines[0] and "+0.75" in lines[0] and "100%" in lines[0] and "2 / 4" in lines[0]
    assert len(table.splitlines()) == 2 + len(TASKS) * len(COLS)


def _write_results(tmp_path: Path, per_method: dict[str, list[float]]) -> dict:
    """metrics.csv of every method and task (the same per-slice PSNRs for each task) -> results.py's summaries."""
    results = {}
    for m, v in per_method.items():
        for t in TASKS:
            write_metrics(tmp_path / m / t, t, v)
        results[m] = {t: {"over_slices": {k: {"mean": s["mean"]} for k, s in _means(per_slice(tmp_path / m / t)).items()}}
                      for t in TASKS}
    return results


def _means(ps: dict) -> dict:
    cols = [c for c, _, _ in COLS]
    return {c: {"mean": sum(r[c] for r in ps.values()) / len(ps)} for c in cols}


def test_myops_only_baselines_are_competitors_from_their_own_folder(tmp_path):
    """The baselines trained on the MyoPS cases alone are rows of their own, read from --myops_only_dir, and the
    paired comparison picks one of them when it beats the same method trained on the guide's data."""
    from types import SimpleNamespace

    from scripts.results import weights_of

    args = SimpleNamespace(baselines_dir=tmp_path / "both", myops_only_dir=tmp_path / "myops", profile="cpu", set=[])
    assert weights_of("linear_myops", args) == [tmp_path / "myops" / "linear_cpu_any.pt"]
    assert weights_of("linear", args) == [tmp_path / "both" / "linear_cpu_any.pt"]
    per_method = {"cmrdiff": [16.0, 17.0, 15.0, 16.0], "linear": [15.0, 15.0, 14.0, 15.5],
                  "linear_myops": [15.5, 16.0, 15.0, 15.0]}
    results = _write_results(tmp_path, per_method)
    line = next(ln for ln in paired_table(results, {m: m for m in results}, tmp_path).splitlines()
                if ln.startswith("| lge | PSNR"))
    assert "| linear_myops |" in line and "+0.62" in line


def test_a_list_of_guide_files_is_an_ensemble_guide(tmp_path):
    """--set guide_weights=[a, b] (an ensemble guide): every file counts for the CMRDiff rows' freshness and the guide
    row is evaluated with all of them; one path stays one file."""
    from types import SimpleNamespace

    from scripts.results import listed, weights_of

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    args = SimpleNamespace(baselines_dir=tmp_path, myops_only_dir=tmp_path, profile="cpu",
                           set=[f"models_dir={tmp_path}", f"guide_weights=['{a}', '{b}']"])
    assert weights_of("guide", args) == [a, b]
    assert weights_of("cmrdiff", args) == [tmp_path / "diffusion_cpu_any.pt", a, b]
    assert listed(str(a)) == [str(a)] and listed(f" ['{a}']") == [str(a)]


def test_labels_name_the_prediction_type_only_when_it_is_not_the_default():
    """A row scored with --prediction_type flow says so in its label; the default rows' labels do not change."""
    from scripts.results import label

    plain = label("cmrdiff", [])
    assert "prediction_type" not in plain and "guide regression" in plain
    flow = label("cmrdiff", ["--prediction_type", "flow"])
    assert flow == plain + ", prediction_type flow"


def test_docs_results_has_every_block_the_scripts_write():
    """`make results` (and --split tune, and scripts/learning_curves.py) stop with an error when docs/results.md lacks
    a marked block; each must be there exactly once, and the validation table must hold CMRDiff's row of 12 values."""
    import re

    doc = (ROOT / "docs" / "results.md").read_text()
    for marker in ("results", "clinical", "realism", "paired", "tune", "clinical_tune", "realism_tune", "paired_tune",
                   "learning_curves", "utility"):
        blocks = re.findall(rf"<!-- {marker}:begin -->\n(.*?)<!-- {marker}:end -->", doc, flags=re.S)
        assert len(blocks) == 1, marker
    table = re.search(r"<!-- results:begin -->\n(.*?)<!-- results:end -->", doc, flags=re.S).group(1)
    row = next(ln for ln in table.splitlines() if ln.startswith("| **CMRDiff** (shipped weights and defaults)"))
    values = [float(c.strip().strip("*").split(" ± ")[0]) for c in row.strip("|").split("|")[1:]]
    assert len(values) == len(TASKS) * len(COLS) and all(0 < v < 40 for v in values)

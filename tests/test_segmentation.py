"""bundle.segmentation: nested region masks, per-region Dice, the paired interval, input selection, and the utility
workflow end to end on the phantom (a synthesis that is the real file scores exactly the real Dice; zeros do not)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bundle.segmentation import REGIONS, SelectInputsd, dice_per_region, paired_interval, regions_from_label
from tests.conftest import REPO_ROOT


def test_regions_are_nested_myops_labels():
    lab = torch.tensor([[[0, 200, 500], [600, 1220, 2221]]])  # (1, 2, 3)
    r = regions_from_label(lab)
    assert r.shape == (5, 2, 3) and list(REGIONS) == ["lv", "rv", "myo", "edema", "scar"]
    expect = {"lv": [[0, 0, 1], [0, 0, 0]], "rv": [[0, 0, 0], [1, 0, 0]], "myo": [[0, 1, 0], [0, 1, 1]],
              "edema": [[0, 0, 0], [0, 1, 1]], "scar": [[0, 0, 0], [0, 0, 1]]}
    for i, k in enumerate(REGIONS):
        assert r[i].tolist() == expect[k]


def test_dice_per_region_and_empty_regions():
    t = torch.zeros(1, 2, 4, 4)
    t[0, 0, :2] = 1
    p = t.clone()
    p[0, 0, 0] = 0  # half of the region found
    d = dice_per_region(p > 0.5, t > 0.5)
    assert d[0, 0].item() == pytest.approx(2 * 4 / (4 + 8)) and np.isnan(d[0, 1].item())


def test_paired_interval_brackets_the_mean_difference():
    a, b = np.array([0.8, 0.7, 0.9, np.nan, 0.6]), np.array([0.7, 0.7, 0.8, 0.5, 0.5])
    m, lo, hi = paired_interval(a, b)
    assert m == pytest.approx(0.075) and lo <= m <= hi


def test_select_inputs_picks_channels_in_order():
    d = SelectInputsd(["T2", "C0"])({"image": torch.arange(3.0).view(3, 1, 1)})
    assert d["image"].flatten().tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="segmenter inputs"):
        SelectInputsd(["XX"])


@pytest.mark.slow
def test_utility_workflow_on_the_phantom(phantom_dir, tmp_path):
    """Tiny segmenters trained one epoch; a 'method' whose synthesis is the real target file gets the real row's
    Dice exactly (the same pipeline), zeros get another, and the two-sequence row appears for its task only."""
    run = [sys.executable, "-m", "monai.bundle", "run", "--profile", "tiny", "--dataset_dir", str(phantom_dir)]
    seg = ["configs/common.yaml", "configs/train_segmenter.yaml"]
    for inputs in ("['C0','DE','T2']", "['C0','T2']"):
        proc = subprocess.run([*run[:4], "--config_file", str(seg), *run[4:], "--output_dir", str(tmp_path), "--max_epochs", "1",
                        "--val_interval", "1", "--batch_size", "4", "--segmenter_inputs", inputs, "--export_dir",
                        str(tmp_path / "models")], cwd=REPO_ROOT, check=False, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    res = tmp_path / "res" / "perfect" / "lge"
    res.mkdir(parents=True)
    shutil.copy2(phantom_dir / "test20" / "myops_test_203_DE.nii.gz", res / "myops_test_203_DE_synth.nii.gz")
    proc = subprocess.run([*run[:4], "--config_file", str([*seg, "configs/evaluate_utility.yaml"]), *run[4:], "--output_dir",
                    str(tmp_path / "u"), "--segmenter_dir", str(tmp_path / "models"), "--results_dir",
                    str(tmp_path / "res"), "--utility_methods", "['perfect']"], cwd=REPO_ROOT, check=False, text=True,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((tmp_path / "u" / "utility.json").read_text())
    lge = out["lge"]
    assert set(lge) == {"real", "perfect", "zeros", "two_sequence"} and "two_sequence" not in out["t2"]
    np.testing.assert_array_equal(np.array(lge["perfect"]["dice"]["myo"]), np.array(lge["real"]["dice"]["myo"]))
    assert any(lge["zeros"]["dice"][r] != lge["real"]["dice"][r] for r in REGIONS)
    assert "| real |" in (tmp_path / "u" / "utility.md").read_text()

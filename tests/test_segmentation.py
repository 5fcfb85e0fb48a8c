"""bundle.segmentation: nested region masks, per-region Dice, the paired interval, input selection, the utility
workflow end to end on the phantom (a synthesis that is the real file scores exactly the real Dice; zeros do not), and
segmenting cases (configs/segment.yaml): the MyoPS label map, its geometry on the input's grid, the choice of
segmenter by the sequences a case has, and the clear errors that write nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from bundle.segmentation import (LABELS, REGIONS, SelectInputsd, dice_per_region, label_map, paired_interval,
                                 regions_from_label)
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
    # configs/segment.yaml with the same segmenters: a case without LGE gets the C0 + T2 one, on its own grid
    import nibabel as nib

    files = {s: str(phantom_dir / "test20" / f"myops_test_203_{s}.nii.gz") for s in ("C0", "T2")}
    proc = subprocess.run([sys.executable, "-m", "bundle", "run", "--config_file",
                           str(["configs/common.yaml", "configs/train_segmenter.yaml", "configs/segment.yaml"]),
                           "--profile", "tiny", "--segmenter_dir", str(tmp_path / "models"), "--input_files", str(files),
                           "--case_name", "p203", "--output_dir", str(tmp_path / "s")], cwd=REPO_ROOT, check=False,
                          text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seg = nib.load(str(tmp_path / "s" / "p203_seg.nii.gz"))
    assert seg.shape == nib.load(files["C0"]).shape and set(np.unique(np.asarray(seg.dataobj))) <= {0, *LABELS}
    assert json.loads((tmp_path / "s" / "p203_seg.json").read_text())["segmenter"]["inputs"] == ["C0", "T2"]


def test_label_map_is_the_inverse_of_the_nesting():
    lab = torch.tensor([[[0, 200, 500], [600, 1220, 2221]]])
    back = label_map(regions_from_label(lab).numpy() > 0.5)
    assert back.dtype == np.int16 and back.tolist() == lab[0].tolist()
    r = np.zeros((5, 1, 2), bool)
    r[REGIONS_INDEX["scar"], 0, 0] = True  # scar outside the myocardium: not a MyoPS scar voxel
    r[REGIONS_INDEX["edema"], 0, 1] = r[REGIONS_INDEX["myo"], 0, 1] = True
    assert label_map(r).tolist() == [[0, 1220]] and set(LABELS) == {200, 500, 600, 1220, 2221}


REGIONS_INDEX = {k: i for i, k in enumerate(REGIONS)}


class _Threshold(torch.nn.Module):
    """A stand-in segmenter: LV where its first input channel is above 0.5, nothing else (logits ±20)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels, self.p = channels, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.channels
        out = torch.full((x.shape[0], len(REGIONS), *x.shape[2:]), -20.0)
        out[:, 0] = torch.where(x[:, 0] > 0.5, 20.0, -20.0)
        return out + self.p


def _segment(parser, phantom_dir, tmp_path, monkeypatch, cases, inputs="auto", have=("C0_DE_T2", "C0_T2")):
    import bundle.segmentation as S

    loaded = []

    def fake_load(path, inputs_, features, profile, device="cpu"):
        loaded.append((Path(path).name, list(inputs_)))
        return _Threshold(len(inputs_))

    monkeypatch.setattr(S, "load_segmenter", fake_load)
    models = tmp_path / "models"
    models.mkdir(parents=True, exist_ok=True)
    for h in have:
        (models / f"segmenter_tiny_{h}.pt").write_bytes(b"")
    p = parser(dataset_dir=str(phantom_dir), profile="tiny")
    out = tmp_path / "seg"
    written = S.segment_cases(cases, p.get_parsed_content("preprocessing"),
                              lambda i: str(models / f"segmenter_tiny_{'_'.join(i)}.pt"), "tiny", [8], None, out, inputs)
    return out, written, loaded


def test_segment_cases_maps_labels_onto_the_input_grid(parser, phantom_dir, tmp_path, monkeypatch):
    """The label map has the input's shape and affine, and its LV is where the stand-in put it: where the input's
    first sequence (normalised as in inference) is above 0.5 inside the field of view. A writer of zeros, a flipped
    or shifted mapping fails this."""
    import nibabel as nib

    from bundle.data import discover_cases

    case = discover_cases(phantom_dir, "validation", [203])[0]
    out, written, loaded = _segment(parser, phantom_dir, tmp_path, monkeypatch, [case])
    assert loaded == [("segmenter_tiny_C0_DE_T2.pt", ["C0", "DE", "T2"])]
    seg = nib.load(str(out / "myops_test_203_seg.nii.gz"))
    ref = nib.load(case["C0"])
    assert seg.shape == ref.shape and np.allclose(seg.affine, ref.affine) and seg.get_data_dtype() == np.int16
    lab = np.asarray(seg.dataobj)
    assert set(np.unique(lab)) <= {0, 500}
    c0 = ref.get_fdata()
    # the model's field of view: 256 voxels of 0.729 mm about the centre of the in-plane grid, windowed by its p99.5
    half = int(256 * 0.72906667 / float(ref.header.get_zooms()[0]) / 2)
    cx, cy = c0.shape[0] // 2, c0.shape[1] // 2
    fov = np.zeros(c0.shape, bool)
    fov[cx - half:cx + half, cy - half:cy + half] = True
    expect = fov & (c0 > 0.5 * np.percentile(c0[fov], 99.5))
    got = lab == 500
    dice = 2 * (got & expect).sum() / (got.sum() + expect.sum())
    assert got.sum() > 0 and dice > 0.9, dice
    side = json.loads((out / "myops_test_203_seg.json").read_text())
    assert side["segmenter"]["inputs"] == ["C0", "DE", "T2"] and side["voxels"]["500"] == int(got.sum())
    assert not any(v["synthesized"] for v in side["inputs"].values()) and {p.name for p in written} == {
        "myops_test_203_seg.nii.gz", "myops_test_203_seg.json"}


def test_segment_cases_picks_the_pair_segmenter_and_fails_cleanly(parser, phantom_dir, tmp_path, monkeypatch):
    from bundle.data import DataError, discover_cases
    from bundle.errors import ConfigError
    from bundle.weights import WeightsError

    case = discover_cases(phantom_dir, "validation", [203])[0]
    two = {k: v for k, v in case.items() if k != "DE"}
    out, _, loaded = _segment(parser, phantom_dir, tmp_path, monkeypatch, [two])
    assert loaded == [("segmenter_tiny_C0_T2.pt", ["C0", "T2"])]
    # the file name's order is the channel order: the T2 + DE segmenter is found as segmenter_<p>_T2_DE.pt
    _, _, loaded = _segment(parser, phantom_dir, tmp_path / "b", monkeypatch, [case], ["DE", "T2"], have=("T2_DE",))
    assert loaded == [("segmenter_tiny_T2_DE.pt", ["T2", "DE"])]
    for cases, inputs, err, msg in (
            ([{k: v for k, v in case.items() if k in ("case", "C0")}], "auto", DataError, "at least two"),
            ([two], ["C0", "DE"], DataError, "has only"),
            ([case], ["C0", "C0"], ConfigError, "distinct"),
            ([case], "C0,DE", ConfigError, "segment_inputs"),
            ([{k: v for k, v in case.items() if k != "C0"}], "auto", WeightsError, "no segmenter"),
            ([dict(case, case="../x")], "auto", DataError, "case_name")):
        bad = tmp_path / f"bad_{msg.split()[0]}"
        with pytest.raises(err, match=msg):
            _segment(parser, phantom_dir, bad, monkeypatch, cases, inputs)
        assert not list((bad / "seg").glob("*")), "nothing is written for a case that fails"
        assert not list(bad.glob("x_seg*")), "no output outside the output folder"

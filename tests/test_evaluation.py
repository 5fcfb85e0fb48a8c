"""The evaluation protocol: per-slice PSNR/SSIM over the field of view and in the myocardium, and the
metrics.csv / summary.json the evaluation handler writes."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch

from bundle.evaluation import COLUMNS, SynthesisMetrics, slice_metrics


def _ref(seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((size, size), generator=g) * 0.9  # room for a +0.1 offset inside [0, 1]


def _ring(size=64):
    xx, yy = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2).sqrt()
    return ((r > 10) & (r < 16)).float()


def test_identical_images():
    ref = _ref()
    m = slice_metrics(ref, ref.clone(), _ring())
    assert m["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert m["myo_ssim"] == pytest.approx(1.0, abs=1e-5)
    for k in ("psnr", "myo_psnr"):
        assert math.isfinite(m[k]) and m[k] >= 100  # capped, not inf (summary.json stays valid JSON)


@pytest.mark.parametrize("offset", [0.1, -0.1])
def test_constant_offset_psnr(offset):
    ref = _ref() + (0.1 if offset < 0 else 0.0)
    m = slice_metrics(ref + offset, ref, _ring())
    assert m["psnr"] == pytest.approx(20.0, abs=0.01)
    assert m["myo_psnr"] == pytest.approx(20.0, abs=0.01)
    assert m["ssim"] < 1.0


def test_psnr_known_mse():
    ref = _ref()
    pred = ref.clone()
    pred[:32] += 0.1  # half the pixels off by 0.1: MSE 0.005 -> 23.01 dB
    assert slice_metrics(pred, ref)["psnr"] == pytest.approx(10 * math.log10(1 / 0.005), abs=0.01)


@pytest.mark.parametrize("mask", [None, "empty"])
def test_myocardium_nan_without_mask(mask):
    ref = _ref()
    m = slice_metrics(ref + 0.05, ref, torch.zeros(64, 64) if mask == "empty" else None)
    assert math.isnan(m["myo_psnr"]) and math.isnan(m["myo_ssim"])
    assert math.isfinite(m["psnr"]) and math.isfinite(m["ssim"])


def test_myo_psnr_uses_masked_voxels_only():
    ref, mask = _ref(), _ring()
    inside = mask.bool()
    pred = ref.clone()
    pred[inside] += 0.05  # 26.02 dB inside the myocardium
    a = slice_metrics(pred, ref, mask)
    assert a["myo_psnr"] == pytest.approx(10 * math.log10(1 / 0.05**2), abs=0.01)
    worse = pred.clone()
    worse[~inside] = 1.0 - ref[~inside]  # large error everywhere outside the mask
    b = slice_metrics(worse, ref, mask)
    assert b["myo_psnr"] == pytest.approx(a["myo_psnr"], abs=1e-6)
    assert b["psnr"] < a["psnr"] - 5  # the whole-FOV metric does see it


def test_myo_ssim_uses_bounding_box():
    ref, mask = _ref(), _ring()
    pred = ref.clone()
    pred[:8] = 1.0  # error only far outside the ring's bounding box (x 17..47)
    m = slice_metrics(pred, ref, mask)
    assert m["myo_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert m["ssim"] < 0.99


@pytest.mark.parametrize("box", [
    (30, 31, 30, 31),  # one pixel
    (0, 1, 0, 1),  # one pixel in a corner
    (63, 64, 63, 64),  # the opposite corner
    (20, 25, 40, 43),  # 5 x 3
    (10, 11, 5, 60),  # a 1-pixel-wide line
])
def test_tiny_mask_finite_ssim(box):
    ref = _ref()
    pred = (ref + 0.05 * torch.randn(64, 64, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    mask = torch.zeros(64, 64)
    x0, x1, y0, y1 = box
    mask[x0:x1, y0:y1] = 1
    m = slice_metrics(pred, ref, mask)
    assert math.isfinite(m["myo_ssim"]) and -1 <= m["myo_ssim"] < 1
    assert math.isfinite(m["myo_psnr"])


def _engine(items, outputs):
    return SimpleNamespace(state=SimpleNamespace(batch=items, output=outputs, metrics={}))


def test_synthesis_metrics_files(tmp_path):
    """One CSV row per slice; summary over slices and over cases (mean of per-case means)."""
    torch.manual_seed(0)
    h = SynthesisMetrics(tmp_path, task="lge", target="DE", extra={"steps": 3})
    items, outs = [], []
    for case, n, off in (("a", 3, 0.1), ("b", 1, 0.01)):
        img = torch.rand(3, 32, 32, n) * 0.8
        mask = torch.zeros(1, 32, 32, n)
        mask[:, 10:20, 10:20] = 1
        items.append({"case": case, "image": img, "mask": mask, "present": [True, True, True]})
        outs.append({"pred": img[1:2] + off})
    eng = _engine(items, outs)
    h.iteration(eng)
    h.completed(eng)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 4 and [r["case"] for r in rows] == ["a", "a", "a", "b"]
    assert [int(r["slice"]) for r in rows] == [0, 1, 2, 0]
    assert set(COLUMNS) <= set(rows[0])
    assert float(rows[0]["psnr"]) == pytest.approx(20.0, abs=0.01)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["slices"] == 4 and s["cases"] == 2 and s["steps"] == 3
    assert s["over_slices"]["psnr"]["n"] == 4 and s["over_cases"]["psnr"]["n"] == 2
    assert s["over_slices"]["psnr"]["mean"] == pytest.approx((3 * 20 + 40) / 4, abs=0.02)
    assert s["over_cases"]["psnr"]["mean"] == pytest.approx((20 + 40) / 2, abs=0.02)
    assert eng.state.metrics["psnr"] == pytest.approx(s["over_slices"]["psnr"]["mean"])


def test_synthesis_metrics_needs_reference(tmp_path):
    from bundle.data import DataError

    h = SynthesisMetrics(tmp_path, task="lge", target="DE")
    item = {"case": "x", "image": torch.rand(3, 16, 16, 1), "present": [True, False, True]}
    with pytest.raises(DataError, match="DE"):
        h.iteration(_engine([item], [{"pred": torch.rand(1, 16, 16, 1)}]))

"""Clinical fidelity and realism metrics (bundle/clinical.py) on hand-built slices whose values are counted by
hand, and their columns / summary section in the evaluation handler."""

from __future__ import annotations

import csv
import json
import math
import statistics
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from bundle import clinical as C
from bundle.evaluation import COLUMNS, SynthesisMetrics


def _ring(scar: bool = True, size: int = 64):
    """Label (size, size): blood pool 500, myocardium ring 200, scar 2221 in the quadrant x < c, y < c."""
    xx, yy = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    r = np.hypot(xx - size / 2, yy - size / 2)
    lab = np.zeros((size, size), np.int64)
    lab[r <= 10] = 500
    ring = (r > 10) & (r < 16)
    lab[ring] = 200
    if scar:
        lab[ring & (xx < size / 2) & (yy < size / 2)] = 2221
    return lab


def _ring_image(lab, scar_value):
    img = np.zeros(lab.shape)
    img[lab == 500] = 0.5
    img[lab == 200] = 0.2
    img[lab == 2221] = scar_value
    return img


def _block(scar_value=0.75, lesion=True, edema_value=None):
    """16 x 16 slice, myocardium = the 8 x 8 block rows/cols 4..11: rows 4..9 remote (200) whose columns alternate
    0.1 / 0.3 (mean 0.2, population SD 0.1), rows 10..11 scar (2221) at ``scar_value`` (48 remote + 16 scar voxels).
    ``edema_value``: row 9 becomes edema (1220) at that value (remote = rows 4..8, 40 voxels, same mean and SD)."""
    lab, img = np.zeros((16, 16), np.int64), np.zeros((16, 16))
    lab[4:12, 4:12] = 200
    img[4:12, 4:12] = np.where(np.arange(4, 12) % 2 == 0, 0.1, 0.3)[None, :]
    if lesion:
        lab[10:12, 4:12], img[10:12, 4:12] = 2221, scar_value
    if edema_value is not None:
        lab[9, 4:12], img[9, 4:12] = 1220, edema_value
    return lab, img


def test_contrast_ratio_fwhm_and_burden_on_a_ring():
    lab = _ring()
    real, synth = _ring_image(lab, 0.8), _ring_image(lab, 0.4)
    n_scar, n_myo = int((lab == 2221).sum()), int(np.isin(lab, (200, 2221)).sum())
    m = C.clinical_slice_metrics(synth, real, lab, "lge")
    assert set(m) == {*C.CLINICAL_COLUMNS, "lesion_px"} and m["lesion_px"] == n_scar
    assert m["cr_real"] == pytest.approx(4.0) and m["cr_synth"] == pytest.approx(2.0)
    assert m["cr_rel_error"] == pytest.approx(0.5)
    # real: 50% of the max 0.8 = 0.4 -> exactly the scar; synth: 50% of 0.4 = 0.2 -> the whole myocardium
    assert m["dice_fwhm_real"] == pytest.approx(1.0)
    assert m["dice_fwhm_synth"] == pytest.approx(2 * n_scar / (n_myo + n_scar))
    assert m["burden_fwhm_real"] == pytest.approx(100 * n_scar / n_myo)
    assert m["burden_fwhm_synth"] == pytest.approx(100.0)
    # the blood pool (0.5, brighter than the synthetic scar) is outside the myocardium: not in any mask
    assert C.fwhm_mask(synth, np.isin(lab, (200, 2221))).sum() == n_myo


def test_nsd_masks_lge_and_t2():
    lab, real = _block(scar_value=0.75, edema_value=0.5)
    myo, lesion, remote = C.regions(lab, "lge")
    assert myo.sum() == 64 and lesion.sum() == 16 and remote.sum() == 40  # edema is neither lesion nor remote for LGE
    # LGE: threshold 0.2 + 5 * 0.1 = 0.7 -> the scar only (edema 0.5 and remote 0.3 below)
    assert (C.nsd_mask(real, myo, remote, 5.0) == lesion).all()
    m = C.clinical_slice_metrics(real, real, lab, "lge")
    assert m["dice_nsd_real"] == pytest.approx(1.0) and m["burden_nsd_real"] == pytest.approx(25.0)
    # T2: lesion = edema + scar (24 voxels), threshold 0.2 + 2 * 0.1 = 0.4 -> edema and scar
    t = C.clinical_slice_metrics(real, real, lab, "t2")
    assert t["lesion_px"] == 24 and t["dice_nsd_real"] == pytest.approx(1.0)
    assert t["burden_nsd_real"] == pytest.approx(100 * 24 / 64)
    assert t["cr_real"] == pytest.approx((8 * 0.5 + 16 * 0.75) / 24 / 0.2)


def test_block_synthesis_with_faint_scar():
    lab, real = _block(0.75)
    _, synth = _block(0.4)
    m = C.clinical_slice_metrics(synth, real, lab, "lge")
    assert m["cr_real"] == pytest.approx(3.75) and m["cr_synth"] == pytest.approx(2.0)
    assert m["cr_rel_error"] == pytest.approx(1.75 / 3.75)
    assert m["dice_fwhm_real"] == pytest.approx(1.0) and m["burden_fwhm_real"] == pytest.approx(25.0)
    # synth FWHM: >= 0.2 -> 24 remote voxels at 0.3 + 16 scar = 40; Dice 2*16 / (40 + 16)
    assert m["dice_fwhm_synth"] == pytest.approx(32 / 56) and m["burden_fwhm_synth"] == pytest.approx(62.5)
    # synth 5-SD: threshold 0.7 > 0.4 -> empty mask: Dice 0, burden 0
    assert m["dice_nsd_synth"] == 0.0 and m["burden_nsd_synth"] == 0.0


def test_no_lesion_gives_nan_but_burden():
    lab = _ring(scar=False)
    img = _ring_image(lab, 0.8)
    m = C.clinical_slice_metrics(img, img, lab, "lge")
    assert m["lesion_px"] == 0
    for k in ("cr_real", "cr_synth", "cr_rel_error", "dice_fwhm_real", "dice_fwhm_synth", "dice_nsd_real",
              "dice_nsd_synth"):
        assert math.isnan(m[k]), k
    assert m["burden_fwhm_real"] == pytest.approx(100.0)  # uniform myocardium: everything >= 50% of the max
    assert math.isfinite(m["burden_nsd_real"])  # SD 0: threshold = the remote mean (rounding decides the rest)
    # no myocardium at all, no label, no read-out (bSSFP): every lesion column NaN, realism still computed
    for label, readout in ((np.zeros_like(lab), "lge"), (None, "lge"), (lab, None)):
        m = C.clinical_slice_metrics(img * 0.5, img, label, readout)
        assert all(math.isnan(m[k]) for k in C.LESION_COLUMNS)
        assert m["grad_ratio"] == pytest.approx(0.5)
    # lesion but no remote myocardium: CR and n-SD undefined, FWHM still drawn
    full = np.where(np.isin(lab, (200,)), 2221, lab)
    m = C.clinical_slice_metrics(img, img, full, "lge")
    assert math.isnan(m["cr_real"]) and math.isnan(m["dice_nsd_real"]) and math.isnan(m["burden_nsd_real"])
    assert m["dice_fwhm_real"] == pytest.approx(1.0)


def test_dice_and_burden_by_count():
    ref = np.zeros((4, 4), bool)
    ref[0, :] = True  # 4 voxels
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = mask[1, :2] = True  # 4 voxels, 2 shared
    assert C.dice(mask, ref) == pytest.approx(0.5)
    assert math.isnan(C.dice(mask, np.zeros((4, 4), bool))) and math.isnan(C.dice(None, ref))
    myo = np.zeros((4, 4), bool)
    myo[:2] = True  # 8 voxels
    assert C.burden(mask, myo) == pytest.approx(50.0) and math.isnan(C.burden(mask, np.zeros((4, 4))))


def test_agreement_by_hand():
    # d = synth - real = (0, 1, -1): bias 0, SD 1 -> LoA +-1.96; r = cov / sqrt(var var) = 1 / sqrt(2 * 2) = 0.5
    a = C.agreement([1.0, 3.0, 2.0, math.nan], [1.0, 2.0, 3.0, 5.0])
    assert a["n"] == 3 and a["bias"] == pytest.approx(0.0, abs=1e-12)
    assert a["loa_low"] == pytest.approx(-1.96) and a["loa_high"] == pytest.approx(1.96)
    assert a["r"] == pytest.approx(0.5)
    b = C.agreement([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])  # d = (1, 2, 3): bias 2, SD 1, r 1
    assert (b["bias"], b["r"]) == (pytest.approx(2.0), pytest.approx(1.0))
    assert (b["loa_low"], b["loa_high"]) == (pytest.approx(0.04), pytest.approx(3.96))
    one = C.agreement([1.0], [2.0])
    assert one["bias"] == -1.0 and math.isnan(one["r"]) and math.isnan(one["loa_low"])
    assert math.isnan(C.agreement([1.0, 1.0], [1.0, 2.0])["r"])  # constant series: r undefined


def test_hf_power_ratio():
    rng = np.random.default_rng(0)
    img = gaussian_filter(rng.random((64, 64)), 0.7)
    assert C.hf_power_ratio(img, img.copy()) == pytest.approx(1.0)
    assert C.hf_power_ratio(gaussian_filter(img, 1.5), img) < 0.5
    assert C.hf_power_ratio(img * 0.5, img) == pytest.approx(0.25)  # power scales with the square
    # the cut-off: a cosine at 0.125 cycles/pixel has no power above 0.25, one at 0.375 has all of it there
    x = np.arange(64)[:, None] * np.ones((1, 64))
    low, high = np.cos(2 * np.pi * 0.125 * x), np.cos(2 * np.pi * 0.375 * x)
    assert C.hf_power(low) < 1e-9 * C.hf_power(high)
    assert C.hf_power(high, cutoff=0.4) < 1e-9 * C.hf_power(high)
    f, p = C.radial_power_spectrum(high)
    assert f[np.argmax(p)] == pytest.approx(0.375)


def test_gradient_ratio():
    rng = np.random.default_rng(1)
    img = rng.random((32, 32))
    assert C.gradient_ratio(0.5 * img, img) == pytest.approx(0.5)
    assert C.gradient_ratio(torch.as_tensor(img), torch.as_tensor(img)) == pytest.approx(1.0)
    assert C.gradient_ratio(gaussian_filter(img, 1.0), img) < 1.0
    assert math.isnan(C.gradient_ratio(img, np.full((32, 32), 0.3)))


def test_uncertainty_spearman():
    rng = np.random.default_rng(2)
    real = rng.random((32, 32)) * 0.8 + 0.1
    synth = real + rng.normal(0, 0.05, real.shape)
    err = np.abs(synth - real)
    assert C.uncertainty_spearman(np.sqrt(err) * 3, synth, real) == pytest.approx(1.0)
    assert C.uncertainty_spearman(-err, synth, real) == pytest.approx(-1.0)
    assert math.isnan(C.uncertainty_spearman(None, synth, real))
    assert math.isnan(C.uncertainty_spearman(np.ones_like(err), synth, real))  # constant map
    # voxels where both images are 0 (padding) are left out: a mismatch there does not count
    real[:4], synth[:4] = 0.0, 0.0
    u = np.sqrt(np.abs(synth - real))
    u[:4] = 5.0
    assert C.uncertainty_spearman(u, synth, real) == pytest.approx(1.0)


def _engine(items, outputs):
    return SimpleNamespace(state=SimpleNamespace(batch=items, output=outputs, metrics={}))


def _case(name, slices, with_gd=True):
    """slices: list of (real scar value or None = no lesion or "empty" = no myocardium, synth scar value)."""
    img = torch.zeros(3, 16, 16, len(slices))
    pred = torch.zeros(1, 16, 16, len(slices))
    gd = torch.zeros(1, 16, 16, len(slices))
    for s, (real_v, synth_v) in enumerate(slices):
        if real_v == "empty":
            img[:, 4:12, 4:12, s] = 0.2
            pred[0, 4:12, 4:12, s] = 0.2
            continue
        lab, r = _block(real_v or 0.0, lesion=real_v is not None)
        _, p = _block(synth_v or 0.0, lesion=real_v is not None)
        img[1, ..., s], pred[0, ..., s], gd[0, ..., s] = torch.as_tensor(r), torch.as_tensor(p), torch.as_tensor(lab)
    item = {"case": name, "image": img, "mask": (gd > 0).float(), "present": [True, True, True]}
    if with_gd:
        item["gd"] = gd
    return item, {"pred": pred}


def test_synthesis_metrics_clinical_section(tmp_path):
    h = SynthesisMetrics(tmp_path, task="lge", target="DE")
    a, a_out = _case("a", [(0.75, 0.4), (None, None)])  # lesion slice (faint scar), lesion-free slice
    b, b_out = _case("b", [(0.75, 0.75), ("empty", None)])  # exact lesion slice, a slice without myocardium
    c, c_out = _case("c", [(0.75, 0.75)], with_gd=False)  # no label: NaN lesion columns
    a_out["std"] = (a_out["pred"] - a["image"][1:2]).abs() * 2  # (1, X, Y, S): the item's std in the engine output
    eng = _engine([a], [a_out])
    h.iteration(eng)
    for item, out in ((b, b_out), (c, c_out)):
        h.iteration(_engine([item], [out]))
    h.completed(eng)

    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 5 and set(COLUMNS) | set(C.CLINICAL_COLUMNS) | {"lesion_px"} <= set(rows[0])
    assert list(rows[0])[:3 + len(COLUMNS)] == ["task", "case", "slice", *COLUMNS]  # the old columns first
    assert float(rows[0]["cr_real"]) == pytest.approx(3.75, abs=1e-4)
    assert float(rows[0]["cr_synth"]) == pytest.approx(2.0, abs=1e-4)
    assert float(rows[0]["dice_fwhm_synth"]) == pytest.approx(32 / 56, abs=1e-4)
    assert float(rows[0]["unc_spearman"]) == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["lesion_px"] == "16" and rows[1]["lesion_px"] == "0" and rows[4]["lesion_px"] == "nan"
    assert math.isnan(float(rows[1]["cr_real"])) and math.isnan(float(rows[1]["unc_spearman"]))  # no error: constant
    assert all(math.isnan(float(rows[4][k])) for k in C.LESION_COLUMNS)
    assert float(rows[4]["hf_ratio"]) == pytest.approx(1.0)

    s = json.loads((tmp_path / "summary.json").read_text())
    assert set(s["over_slices"]) == set(COLUMNS)  # unchanged
    cl = s["clinical"]
    assert cl["readout"] == "lge" and cl["lesion_labels"] == [2221] and cl["nsd"] == 5.0
    assert cl["fwhm_fraction"] == 0.5 and cl["hf_cutoff"] == 0.25 and cl["uncertainty_slices"] == 2
    assert cl["slices_with_lesion"] == 2 and cl["slices_without_lesion"] == 1
    o = cl["over_slices"]
    assert o["cr_real"] == {"mean": pytest.approx(3.75), "std": pytest.approx(0.0), "n": 2}
    assert o["cr_synth"]["mean"] == pytest.approx((2.0 + 3.75) / 2)
    assert o["cr_rel_error"]["mean"] == pytest.approx((1.75 / 3.75 + 0) / 2)
    assert o["dice_fwhm_real"]["mean"] == pytest.approx(1.0) and o["dice_nsd_synth"]["mean"] == pytest.approx(0.5)
    assert o["hf_ratio"]["n"] == 5 and o["unc_spearman"]["n"] == 1
    # burden over the 3 slices with myocardium, (synth, real) in %: FWHM (62.5, 25); lesion-free: max 0.3 ->
    # >= 0.15 = the 32 voxels at 0.3 (50, 50); (25, 25)
    fw = cl["burden_agreement"]["fwhm"]
    syn, real = [62.5, 50.0, 25.0], [25.0, 50.0, 25.0]
    d = [x - y for x, y in zip(syn, real)]
    assert fw["n"] == 3 and fw["bias"] == pytest.approx(12.5)
    assert fw["loa_low"] == pytest.approx(12.5 - 1.96 * statistics.stdev(d))
    assert fw["loa_high"] == pytest.approx(12.5 + 1.96 * statistics.stdev(d))
    assert fw["r"] == pytest.approx(statistics.correlation(syn, real))
    # 5-SD: (0, 25) on the faint scar, (0, 0) lesion-free (max 0.3 < 0.7), (25, 25)
    ns = cl["burden_agreement"]["nsd"]
    assert ns["n"] == 3 and ns["bias"] == pytest.approx(-25 / 3)
    assert ns["r"] == pytest.approx(statistics.correlation([0.0, 0.0, 25.0], [25.0, 0.0, 25.0]))
    assert cl["per_case"]["a"]["cr_synth"] == pytest.approx(2.0) and math.isnan(cl["per_case"]["c"]["cr_real"])
    assert cl["over_cases"]["cr_synth"]["n"] == 2
    json.loads((tmp_path / "summary.json").read_text())  # still valid JSON for Python (NaN written as NaN)


def test_synthesis_metrics_bssfp_and_knobs(tmp_path):
    h = SynthesisMetrics(tmp_path, task="bssfp", target="C0")
    assert h.readout is None and h.nsd is None
    item, out = _case("a", [(0.75, 0.4)])
    item["image"] = item["image"][[1, 0, 2]]  # reference in channel C0
    h.iteration(_engine([item], [out]))
    s = h.summary()["clinical"]
    assert s["readout"] is None and s["slices_with_lesion"] is None
    assert all(s["over_slices"][k]["n"] == 0 for k in C.LESION_COLUMNS) and s["over_slices"]["grad_ratio"]["n"] == 1
    t2 = SynthesisMetrics(tmp_path, task="t2", target="T2", nsd_t2=3.0, fwhm_fraction=0.6, hf_cutoff=0.3)
    assert (t2.readout, t2.nsd, t2.fwhm_fraction, t2.hf_cutoff) == ("t2", 3.0, 0.6, 0.3)
    with pytest.raises(ValueError, match="readout"):
        SynthesisMetrics(tmp_path, task="lge", target="DE", readout="scar")

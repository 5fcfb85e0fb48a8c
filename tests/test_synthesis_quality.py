"""Behaviour a synthesis stub would fail: the SHIPPED weights (``models/``, cpu profile) on the phantom
(``bundle/phantom.py``, calibrated on MyoPS 2020), through the real evaluation workflow
(``configs/evaluate.yaml``), must beat a constant image and the ``copy`` baseline (``configs/baselines/copy.yaml``)
by a margin in whole-field-of-view PSNR, and ``--num_samples 2`` must write a non-zero uncertainty map where the two
samples differ (in the heart), clearly above the one in the air outside the body.

Cost: 10 DDIM steps (instead of 50) and 2 samples (instead of 4) per task keep the file at about a minute on two CPU
cores; the margins below were measured at these settings (validation case myops_test_203 of the phantom)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS = {"lge": "DE", "t2": "T2", "bssfp": "C0"}
CASE = "myops_test_203"  # the phantom's validation case (conftest.phantom_dir)
STEPS, SAMPLES = 10, 2
# Margins (dB) in mean whole-FOV PSNR over the case's 4 slices, measured on the phantom at STEPS/SAMPLES with the
# v0.10.0 defaults (views 8 -> 2 views for 2 samples, strength 0.2 -> 2 of the 10 steps)
# (synthesis / copy baseline / constant = the reference's FOV mean):
#   lge 16.79 / 18.82 / 13.49    t2 15.08 / 16.72 / 13.67    bssfp 19.05 / 16.72 / 13.21
# -> constant beaten by 1.4-5.8 dB (required: 1.0); copy beaten on bssfp by 2.3 dB (required: 0.75). On lge and t2 the
# copy baseline is better on the phantom (its non-cardiac anatomy is shared by the three sequences; on MyoPS the
# synthesis beats copy by 2-4 dB, docs/results.md), so copy is only asserted for bssfp. The phantom is not MyoPS:
# there the diffusion's change to the guide helps t2 more than on MyoPS, and strength 0.2 keeps less of it than
# v0.9.0's 0.3 (t2 15.86 dB at 0.3, 15.08 at 0.2), hence the margin of 1.0 dB (2.0 until v0.9.0).
# A stub returning a constant loses by construction (its PSNR against the reference is at most the constant
# baseline's); a stub returning the guide condition is the copy baseline.
MARGIN_CONSTANT_DB = 1.0
MARGIN_COPY_DB = {"bssfp": 0.75}
# Uncertainty (std of the 2 samples, [0, 1] units): heart mean 0.028-0.033, air (outside the body, in the FOV)
# 0.008-0.013 (the guide regressor's fill and the sample spread near the body edge leak a little)
UNC_HEART_MIN = 0.01
UNC_RATIO = 1.5


def _run(configs: list[str], out: Path, *args) -> dict:
    files = ["configs/common.yaml", "configs/inference.yaml", "configs/evaluate.yaml"] + configs
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files), "--profile", "cpu",
           "--split", "validation", "--output_dir", str(out), *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads((out / "summary.json").read_text())


def _fov_crop(arr: np.ndarray, spacing: float, fov_mm: float) -> np.ndarray:
    """The centred field of view (fov_mm) of an (X, Y, S) array with in-plane pixel size ``spacing``."""
    n = int(round(fov_mm / spacing))
    ox, oy = max((arr.shape[0] - n) // 2, 0), max((arr.shape[1] - n) // 2, 0)
    return arr[ox:ox + n, oy:oy + n]


def constant_psnr(reference: Path, fov_mm: float = 186.6) -> float:
    """Mean over slices of the PSNR of a constant image (the reference's mean) against the reference, both in the
    evaluation's units (field of view clipped to [0, p99.5] and scaled to [0, 1]); = 10 log10(1 / variance)."""
    img = nib.load(str(reference))
    ref = _fov_crop(np.asarray(img.dataobj, dtype=np.float64), float(img.header.get_zooms()[0]), fov_mm)
    hi = np.percentile(ref, 99.5)
    ref = np.clip(ref, 0, hi) / hi
    const = ref.mean()
    return float(np.mean([10 * math.log10(1.0 / ((ref[..., s] - const) ** 2).mean()) for s in range(ref.shape[2])]))


@pytest.fixture(scope="module")
def results(phantom_dir, tmp_path_factory) -> dict[str, dict]:
    out = {}
    for task, seq in TASKS.items():
        base = tmp_path_factory.mktemp(f"quality_{task}")
        synth = _run([], base / "synth", "--task", task, "--dataset_dir", phantom_dir,
                     "--num_inference_steps", STEPS, "--num_samples", SAMPLES)
        copy = _run(["configs/baselines/copy.yaml"], base / "copy", "--task", task, "--dataset_dir", phantom_dir)
        out[task] = {"synth": synth["over_slices"]["psnr"]["mean"], "copy": copy["over_slices"]["psnr"]["mean"],
                     "synth_myo": synth["over_slices"]["myo_psnr"]["mean"],
                     "copy_myo": copy["over_slices"]["myo_psnr"]["mean"],
                     "constant": constant_psnr(phantom_dir / "test20" / f"{CASE}_{seq}.nii.gz"),
                     "dir": base / "synth", "seq": seq}
    return out


@pytest.mark.parametrize("task", list(TASKS))
def test_synthesis_beats_constant_and_copy(results, task):
    r = results[task]
    assert math.isfinite(r["synth"])
    assert r["synth"] >= r["constant"] + MARGIN_CONSTANT_DB, r
    if task in MARGIN_COPY_DB:
        assert r["synth"] >= r["copy"] + MARGIN_COPY_DB[task], r


@pytest.mark.parametrize("task", list(TASKS))
def test_uncertainty_where_samples_differ(results, phantom_dir, task):
    r = results[task]
    path = r["dir"] / f"{CASE}_{r['seq']}_uncertainty.nii.gz"
    assert path.is_file()
    unc = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)
    gd = np.asarray(nib.load(str(phantom_dir / "test20_gd" / f"{CASE}_gd.nii.gz")).dataobj)
    ref = np.asarray(nib.load(str(phantom_dir / "test20" / f"{CASE}_{r['seq']}.nii.gz")).dataobj)
    assert unc.shape == gd.shape and np.isfinite(unc).all() and unc.min() >= 0
    heart = np.isin(gd, (200, 500, 600, 1220, 2221))
    air = _fov_crop(ref == 0, 0.75, 186.6)  # exact zeros: outside the phantom's body, inside the field of view
    assert air.sum() > 1000
    u_heart, u_air = unc[heart].mean(), _fov_crop(unc, 0.75, 186.6)[air].mean()
    # two samples from different noise differ in the heart: a stub (or samples that ignore the noise) gives 0
    assert u_heart > UNC_HEART_MIN, (u_heart, u_air)
    assert u_heart > UNC_RATIO * u_air, (u_heart, u_air)

"""Seeded synthetic short-axis multi-sequence cardiac MR phantom in the MyoPS 2020 file layout.

Arrays are (X, Y, S): two in-plane axes and S short-axis slices, like the MyoPS NIfTI files.
Labels follow MyoPS: 0 background, 200 LV normal myocardium, 500 LV blood pool,
600 RV blood pool, 1220 edema, 2221 scar.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from bundle.data import LABEL_VALUES as LABELS  # (0, 200, 500, 600, 1220, 2221)
from bundle.data import SEQUENCES  # ("C0", "DE", "T2"): bSSFP, LGE, T2-weighted

CROP = 256
# Tissue classes -> MyoPS label. Only the LV myocardium (incl. its lesions), LV and RV blood pools are labelled.
_CLASSES = ("air", "body", "fat", "myocardium", "lv_blood", "rv_blood", "edema", "scar", "lung", "liver", "rv_wall")
_CLASS_LABEL = np.array([0, 0, 0, 200, 500, 600, 1220, 2221, 0, 0, 0], dtype=np.int16)
# Per-class intensity as a fraction of the 99.5th percentile of the central 256x256 crop, calibrated on the 25
# myops_training_* + 5 validation cases of MyoPS 2020 (label means / p99.5 over the crop: C0 LV blood 0.53-0.84,
# myocardium 0.22-0.44; DE LV blood 0.32-0.59, myocardium 0.14-0.33, scar 0.25-0.81; T2 blood 0.09-0.24,
# myocardium 0.12-0.52, edema 0.15-0.77); body, fat, lung and liver read off the crop's percentiles and images.
#            air   body  fat   myo   LV    RV    edema scar  lung  liver RV wall
_CONTRAST = {
    "C0": (0.0, 0.17, 0.95, 0.29, 0.72, 0.62, 0.38, 0.37, 0.03, 0.26, 0.29),   # bright blood, dark myocardium
    "DE": (0.0, 0.24, 0.70, 0.19, 0.45, 0.40, 0.30, 0.65, 0.07, 0.32, 0.25),   # nulled myocardium, bright scar
    "T2": (0.0, 0.13, 0.95, 0.28, 0.13, 0.12, 0.44, 0.38, 0.02, 0.10, 0.28),   # bright edema, black blood, fat
}
_SCALE = {"C0": 1600.0, "DE": 800.0, "T2": 950.0}   # raw intensity of 1.0 (MyoPS crop p99.5: 450-1900)
_NOISE = {"C0": 0.016, "DE": 0.018, "T2": 0.014}    # Rician sigma / scale (MyoPS blood-pool noise 0.006-0.033)
_SPACING = (0.75, 0.75, 12.0)  # MyoPS in-plane pixdim 0.729-0.762 mm; 12 mm slices (MyoPS 12-23 mm)


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        x, y, s = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a 3-tuple of ints (X, Y, S), got {shape!r}") from None
    if x < 64 or y < 64 or not 1 <= s <= 8:
        raise ValueError(f"shape must have X, Y >= 64 and 1..8 slices, got {shape!r}")
    return x, y, s


def _ellipse(xx, yy, cx, cy, ax, ay, rot=0.0):
    """<= 1 inside the ellipse centred (cx, cy) with semi-axes (ax, ay), rotated by rot radians."""
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(rot), np.sin(rot)
    return ((c * dx + s * dy) / ax) ** 2 + ((-s * dx + c * dy) / ay) ** 2


def make_phantom_volumes(shape: tuple[int, int, int] = (288, 272, 4), seed: int = 0) -> dict[str, np.ndarray]:
    """Return {"C0", "DE", "T2": int16 (X, Y, S) images, "gd": int16 (X, Y, S) MyoPS label map}.

    A short-axis stack like MyoPS 2020 at 0.75 mm pixels (X across = towards the RV, Y up = anterior as
    ``bundle.io.save_png`` shows it): a torso (muscle, subcutaneous fat) with dark lungs beside and in front of the
    heart and the liver below it; a left ventricle (blood-pool radius 21-27 mm at the base, myocardium 10-13 mm
    thick, shrinking towards the apex at slice 0, as MyoPS orders its slices) with an edema + scar sector, an RV crescent on its -X side
    (MyoPS: RV centroid 30-55 mm from the LV's at -130..-180 deg), epicardial fat; per-sequence contrasts
    calibrated on MyoPS, a smooth texture and bias field, slight blur and Rician noise.
    """
    nx, ny, ns = _check_shape(shape)
    rng = np.random.default_rng(seed)
    mm = min(1.0, min(nx, ny) / CROP) / _SPACING[0]  # pixels per mm (anatomy shrunk for small fields of view)
    xx, yy = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32), indexing="ij")
    # torso: wider than the 256 crop in X, air in the image corners; 6-10 mm subcutaneous fat
    bx, by = nx / 2 + rng.uniform(-4, 4) * mm, ny / 2 - rng.uniform(0, 8) * mm
    ax, ay = max(0.56 * nx, 125 * mm), max(0.47 * ny, 100 * mm)
    body = _ellipse(xx, yy, bx, by, ax, ay)
    fat_mm = rng.uniform(6, 10) * mm
    cx, cy = nx / 2 + rng.uniform(-8, 8) * mm, ny / 2 + rng.uniform(-8, 8) * mm  # LV centre
    theta = np.deg2rad(rng.uniform(-170, -145))  # RV direction from the LV centre (atan2(dy, dx))
    phi = rng.uniform(0, 2 * np.pi)  # lesion direction
    psi = rng.uniform(0, 2 * np.pi)  # where the epicardial fat is thickest
    r_lv0, thick0 = rng.uniform(21, 27) * mm, rng.uniform(10, 13) * mm  # at the base
    lung_l = (cx + rng.uniform(45, 55) * mm, cy + rng.uniform(25, 40) * mm, rng.uniform(45, 55) * mm,
              rng.uniform(38, 48) * mm, rng.uniform(-0.5, 0.0))
    lung_r = (cx - rng.uniform(45, 60) * mm, cy + rng.uniform(45, 60) * mm, rng.uniform(35, 45) * mm,
              rng.uniform(25, 32) * mm, rng.uniform(0.2, 0.6))
    liver = (cx - rng.uniform(10, 30) * mm, cy - rng.uniform(70, 80) * mm, rng.uniform(80, 95) * mm,
             rng.uniform(30, 38) * mm, rng.uniform(-0.2, 0.1))
    cls = np.zeros((nx, ny, ns), dtype=np.int64)
    for s in range(ns):
        f = 0.65 + 0.35 * s / max(ns - 1, 1)  # apex (s=0) -> base (s=S-1) grows, as the MyoPS stacks are ordered
        c = cls[..., s]
        c[body <= 1] = 2
        c[body <= (1 - fat_mm / min(ax, ay)) ** 2] = 1
        inner = body <= (1 - (fat_mm + 3 * mm) / min(ax, ay)) ** 2  # lungs and liver stay inside the chest wall
        for e in (lung_l, lung_r):
            c[inner & (_ellipse(xx, yy, *e[:4], e[4]) <= 1)] = 8
        c[inner & (_ellipse(xx, yy, *liver[:4], liver[4]) <= 1)] = 9
        r_lv = r_lv0 * f * rng.uniform(0.97, 1.03)
        r_epi = r_lv + thick0 * (0.9 + 0.1 * f)
        dx, dy = xx - cx, yy - cy
        rad, ang = np.hypot(dx, dy), np.arctan2(dy, dx)
        # RV: an ellipse wrapped round the septum, larger at the base; 3 mm wall; 2-4 mm epicardial fat round both
        t = theta + rng.normal(0, 0.05)
        d_rv = r_epi * rng.uniform(0.75, 0.9)
        rvx, rvy = cx + d_rv * np.cos(t), cy + d_rv * np.sin(t)
        rv_e = _ellipse(xx, yy, rvx, rvy, r_epi * rng.uniform(0.75, 0.9) * (0.6 + 0.4 * f),
                        r_epi * rng.uniform(1.15, 1.3), t)
        rv_wall = 3 * mm
        scale = 1 + rv_wall / (r_epi * 0.8)
        fat_lv = np.clip(1.0 + 3.0 * np.cos(ang - psi), 0, None) * mm  # patchy, thickest towards psi
        fat_rv = np.clip(0.5 + 2.5 * np.cos(ang - psi - 1.0), 0, None) * mm
        heart_out = (rad <= r_epi + fat_lv) | (rv_e <= (scale + fat_rv / r_epi) ** 2)
        c[heart_out & (c != 9)] = 2
        c[rv_e <= scale ** 2] = 10
        c[(rv_e <= 1) & (rad > r_epi + 1.0 * mm)] = 5
        c[rad <= r_epi] = 3
        c[rad <= r_lv] = 4
        if s == ns // 2 or rng.random() < 0.85:  # lesion sector inside the ring on most slices
            d_ang = np.abs(np.angle(np.exp(1j * (ang - phi - rng.normal(0, 0.15)))))
            w = rng.uniform(0.5, 0.9)
            myo = c == 3
            c[myo & (d_ang <= w)] = 6
            c[myo & (d_ang <= 0.6 * w) & (rad <= r_lv + (r_epi - r_lv) * rng.uniform(0.5, 1.0))] = 7
    inside = (cls > 0) & (cls != 8)
    texture = gaussian_filter(rng.standard_normal(cls.shape).astype(np.float32), sigma=(4, 4, 0))
    texture *= 0.10 / (texture.std() + 1e-6)  # tissue texture shared by the sequences
    out: dict[str, np.ndarray] = {}
    for seq in SEQUENCES:
        own = gaussian_filter(rng.standard_normal(cls.shape).astype(np.float32), sigma=(3, 3, 0))
        own *= 0.15 / (own.std() + 1e-6)  # sequence-specific inhomogeneity (flow, coil, breath-hold differences)
        g = rng.uniform(-0.25, 0.25, size=2)  # smooth coil-like bias field
        bias = 1 + g[0] * (xx / nx - 0.5) + g[1] * (yy / ny - 0.5)
        contrast = np.asarray(_CONTRAST[seq], np.float32) * rng.uniform(0.92, 1.08, size=len(_CLASSES))
        vol = contrast[cls] * (_SCALE[seq] * rng.uniform(0.9, 1.1))
        vol *= (1 + (texture + own) * inside) * bias[..., None]
        vol = gaussian_filter(vol, sigma=(0.9, 0.9, 0))
        sigma = _NOISE[seq] * _SCALE[seq]
        vol = np.hypot(vol + rng.normal(0, sigma, vol.shape), rng.normal(0, sigma, vol.shape))  # Rician
        vol[cls == 0] = 0  # MyoPS stores exact zeros outside the body
        out[seq] = np.clip(np.rint(vol), 0, 32767).astype(np.int16)
    out["gd"] = _CLASS_LABEL[cls]
    return out


def phantom_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """4x4 voxel->RAS affine: 0.75 x 0.75 x 12 mm, oblique LSP-ish orientation like MyoPS."""
    a = np.deg2rad(12.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    axes = np.array([[-1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)  # i->L, j->S, k->P
    aff = np.eye(4)
    aff[:3, :3] = rot @ axes @ np.diag(_SPACING)
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape, float) - 1) / 2)  # volume centre at the origin
    return aff


def _case_dirs(case: str) -> tuple[str, str]:
    m = re.fullmatch(r"myops_(training|test)_\d+", case)
    if m is None:
        raise ValueError(f"case must look like 'myops_training_101' or 'myops_test_203', got {case!r}")
    return ("train25", "train25_myops_gd") if m.group(1) == "training" else ("test20", "test20_gd")


def write_phantom_case(out_dir: str | Path, case: str, shape=(288, 272, 4), seed: int = 0) -> dict[str, Path]:
    """Write {case}_{C0,DE,T2}.nii.gz and {case}_gd.nii.gz in the MyoPS layout; return their paths."""
    img_dir, gd_dir = _case_dirs(case)
    vols, aff = make_phantom_volumes(shape, seed), phantom_affine(_check_shape(shape))
    paths = {}
    for key, arr in vols.items():
        path = Path(out_dir) / (gd_dir if key == "gd" else img_dir) / f"{case}_{key}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(arr.astype(np.int16), None)
        img.set_qform(aff, code=1)
        img.set_sform(aff, code=0)
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, path)
        paths[key] = path
    return paths


def make_phantom_dataset(out_dir: str | Path, train_ids=(101, 102, 103), validation_ids=(203,), test_ids=(201,),
                         shape=(288, 272, 4), seed: int = 0) -> Path:
    """Write training (myops_training_*) and validation/test (myops_test_*) phantom cases; return out_dir.

    Each case uses a seed derived from (seed, case id). Skips all work if out_dir/.phantom.json records
    the same arguments and the files exist; the marker is written last.
    """
    shape = _check_shape(shape)
    groups = {}
    for name, ids in (("train_ids", train_ids), ("validation_ids", validation_ids), ("test_ids", test_ids)):
        ids = [int(i) for i in ids]
        if any(i < 0 for i in ids):
            raise ValueError(f"{name} must be non-negative ints, got {ids!r}")
        groups[name] = ids
    all_ids = sum(groups.values(), [])
    if len(set(all_ids)) != len(all_ids):
        raise ValueError(f"case ids must be unique across train/validation/test, got {all_ids!r}")
    if not all_ids:
        raise ValueError("at least one case id is required")
    out_dir = Path(out_dir)
    record = {"version": 1, "shape": list(shape), "seed": int(seed), **groups}
    cases = [(f"myops_{'training' if n == 'train_ids' else 'test'}_{i}", i) for n, ids in groups.items() for i in ids]
    marker = out_dir / ".phantom.json"
    expected = [out_dir / _case_dirs(c)[key == "gd"] / f"{c}_{key}.nii.gz" for c, _ in cases
                for key in (*SEQUENCES, "gd")]
    if marker.is_file() and all(p.is_file() for p in expected):
        try:
            if json.loads(marker.read_text()) == record:
                return out_dir
        except json.JSONDecodeError:
            pass
    marker.unlink(missing_ok=True)
    for case, i in cases:
        case_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
        write_phantom_case(out_dir, case, shape, case_seed)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(marker)
    return out_dir


def provide_default(dataset_dir: str | Path | None, phantom_dir: str | Path) -> Path | None:
    """The embedded default data set as an explicit workflow step: when ``dataset_dir`` is the default
    ``phantom_dir`` (no ``--dataset_dir`` given), write the phantom there (or find it already written) and log
    where and why; any other ``dataset_dir`` (or None: explicit input files) is left alone. Returns the phantom's
    folder or None."""
    if dataset_dir is None or Path(dataset_dir).resolve() != Path(phantom_dir).resolve():
        return None
    existed = (Path(phantom_dir) / ".phantom.json").is_file()
    out = make_phantom_dataset(phantom_dir)
    logging.getLogger(__name__).info(
        f"no --dataset_dir given: the embedded default data set, a synthetic MyoPS-like phantom, "
        f"{'is' if existed else 'was written'} at {out} (pass --dataset_dir for your data)")
    return out

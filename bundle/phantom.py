"""Seeded synthetic short-axis multi-sequence cardiac MR phantom in the MyoPS 2020 file layout.

Arrays are (X, Y, S): two in-plane axes and S short-axis slices, like the MyoPS NIfTI files.
Labels follow MyoPS: 0 background, 200 LV normal myocardium, 500 LV blood pool,
600 RV blood pool, 1220 edema, 2221 scar.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from bundle.data import LABEL_VALUES as LABELS  # (0, 200, 500, 600, 1220, 2221)
from bundle.data import SEQUENCES  # ("C0", "DE", "T2"): bSSFP, LGE, T2-weighted

CROP = 256
# tissue classes: air, body tissue, fat, myocardium, LV blood, RV blood, edema, scar
_CLASS_LABEL = np.array([0, 0, 0, 200, 500, 600, 1220, 2221], dtype=np.int16)
_CONTRAST = {  # per-class intensity before the per-sequence scale
    "C0": (0, 500, 1100, 350, 1500, 1450, 380, 350),   # bright blood, dark myocardium
    "DE": (0, 250, 500, 60, 900, 850, 90, 1400),       # nulled myocardium, bright scar
    "T2": (0, 600, 900, 700, 250, 250, 1300, 1100),    # bright edema, black blood
}
_SCALE = {"C0": 1.4, "DE": 1.0, "T2": 0.5}
_SPACING = (0.75, 0.75, 12.0)


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        x, y, s = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a 3-tuple of ints (X, Y, S), got {shape!r}") from None
    if x < 64 or y < 64 or not 1 <= s <= 8:
        raise ValueError(f"shape must have X, Y >= 64 and 1..8 slices, got {shape!r}")
    return x, y, s


def make_phantom_volumes(shape: tuple[int, int, int] = (288, 272, 4), seed: int = 0) -> dict[str, np.ndarray]:
    """Return {"C0", "DE", "T2": int16 (X, Y, S) images, "gd": int16 (X, Y, S) MyoPS label map}."""
    nx, ny, ns = _check_shape(shape)
    rng = np.random.default_rng(seed)
    k = min(1.0, min(nx, ny) / CROP)  # shrink the anatomy for small fields of view
    xx, yy = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32), indexing="ij")
    cls = np.zeros((nx, ny, ns), dtype=np.int64)
    body = ((xx - nx / 2) / (0.46 * nx)) ** 2 + ((yy - ny / 2) / (0.42 * ny)) ** 2
    cls[body <= 1] = 2  # subcutaneous fat rim ...
    cls[body <= (1 - 14 * k / min(nx, ny)) ** 2] = 1  # ... around body tissue
    cx, cy = nx / 2 + rng.uniform(-6, 6) * k, ny / 2 + rng.uniform(-6, 6) * k
    r_lv0, thick = rng.uniform(18, 24) * k, rng.uniform(8, 12) * k
    theta, phi = rng.uniform(0, 2 * np.pi, size=2)  # RV direction, lesion direction
    for s in range(ns):
        f = 1.0 - 0.35 * s / max(ns - 1, 1)  # base (s=0) -> apex (s=S-1) gets smaller
        r_lv, r_epi = r_lv0 * f, r_lv0 * f + thick * (0.9 + 0.1 * f)
        dx, dy = xx - cx, yy - cy
        rad, ang = np.hypot(dx, dy), np.arctan2(dy, dx)
        t = theta + rng.normal(0, 0.05)
        rvx, rvy = cx + 0.9 * r_epi * np.cos(t), cy + 0.9 * r_epi * np.sin(t)
        rv = (np.hypot(xx - rvx, yy - rvy) <= r_epi * rng.uniform(0.9, 1.05)) & (rad > r_epi + 3 * k)
        c = cls[..., s]
        c[rv] = 5
        c[rad <= r_epi] = 3
        c[rad <= r_lv] = 4
        if s == ns // 2 or rng.random() < 0.85:  # lesion sector inside the ring on most slices
            d_ang = np.abs(np.angle(np.exp(1j * (ang - phi - rng.normal(0, 0.15)))))
            w = rng.uniform(0.5, 0.9)
            myo = c == 3
            c[myo & (d_ang <= w)] = 6
            c[myo & (d_ang <= 0.6 * w) & (rad <= r_lv + (r_epi - r_lv) * rng.uniform(0.5, 1.0))] = 7
    inside = cls > 0
    texture = gaussian_filter(rng.standard_normal(cls.shape).astype(np.float32), sigma=(6, 6, 0))
    texture *= 0.12 / (texture.std() + 1e-6)
    out: dict[str, np.ndarray] = {}
    for seq in SEQUENCES:
        g = rng.uniform(-0.15, 0.15, size=2)  # smooth coil-like bias field
        bias = 1 + g[0] * (xx / nx - 0.5) + g[1] * (yy / ny - 0.5)
        vol = np.asarray(_CONTRAST[seq], np.float32)[cls] * _SCALE[seq] * rng.uniform(0.9, 1.1)
        vol *= (1 + texture * inside) * bias[..., None]
        vol = gaussian_filter(vol, sigma=(0.8, 0.8, 0))
        sigma = 0.025 * vol.max()
        vol = np.hypot(vol + rng.normal(0, sigma, vol.shape), rng.normal(0, sigma, vol.shape))  # Rician
        vol[~inside] *= 0.2  # air outside the body ~0
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

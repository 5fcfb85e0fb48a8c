"""Shared by the blood-pool contrast diagnostics (blood_contrast.py, contrast_*.py, ../../tune/per_task/rule.py): the
LV blood pool (label 500) over the myocardium (200 ∪ 1220 ∪ 2221), mean signal per case, and the contrast error E."""
from collections.abc import Sequence

import nibabel as nib
import numpy as np

DATA = "../shared/data/myops2020"
SEQ = {"lge": "DE", "t2": "T2", "bssfp": "C0"}   # task -> the sequence it synthesizes
TUNE_IDS = (104, 109, 114, 119, 124)
MYO = (200, 1220, 2221)


def load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def training_paths(i: int | str, seq: str, data: str = DATA) -> tuple[str, str]:
    """(image, label) of training case ``i``."""
    return f"{data}/train25/myops_training_{i}_{seq}.nii.gz", f"{data}/train25_myops_gd/myops_training_{i}_gd.nii.gz"


def masks(gd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(LV blood pool, myocardium) of a label volume."""
    return gd == 500, np.isin(gd, MYO)


def ratio(im: np.ndarray, gd: np.ndarray) -> float:
    """Mean LV blood pool over mean myocardium."""
    lv, myo = masks(gd)
    return float(im[lv].mean() / im[myo].mean())


def contrast_error(ratios: Sequence[float], real: Sequence[float]) -> float:
    """E = mean over cases of |log(ratio / real ratio)|."""
    return float(np.mean(np.abs(np.log(np.asarray(ratios) / np.asarray(real)))))

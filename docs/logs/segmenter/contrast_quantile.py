"""Diagnostic (no product change): would a label-free intensity calibration restore the blood-pool contrast? Each
synthetic volume's intensities (the tuning-fold guide and CMRDiff outputs, output/utility_tune) are mapped, by rank
inside the body (> 5 % of its p99.5), onto the mean quantile function of the real target sequence over the
train_tune cases (each case scaled to [0, p99.5] the same way); LV/myo and E as blood_contrast.py.
    .venv/bin/python docs/logs/segmenter/contrast_quantile.py   (output: contrast_quantile.log)"""
import glob
import re

import nibabel as nib
import numpy as np

D = "../shared/data/myops2020"
TUNE = (104, 109, 114, 119, 124)
Q = np.linspace(0, 1, 201)


def load(p: str) -> np.ndarray:
    return np.asarray(nib.load(p).dataobj, np.float32)


def scaled(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    im = np.clip(im / np.percentile(im, 99.5), 0, 1)
    return im, im > 0.05


def ratio(im: np.ndarray, gd: np.ndarray) -> float:
    return float(im[gd == 500].mean() / im[np.isin(gd, [200, 1220, 2221])].mean())


for seq, task in (("DE", "lge"), ("T2", "t2"), ("C0", "bssfp")):
    ids = [int(re.search(r"_(\d+)_", f).group(1)) for f in sorted(glob.glob(f"{D}/train25/myops_training_*_{seq}.nii.gz"))]
    ref = np.mean([np.quantile(*(lambda a: (a[0][a[1]], Q))(scaled(load(f"{D}/train25/myops_training_{i}_{seq}.nii.gz"))))
                   for i in ids if i not in TUNE], axis=0)
    rows: dict[str, list[float]] = {}
    for i in TUNE:
        gd = load(f"{D}/train25_myops_gd/myops_training_{i}_gd.nii.gz")
        rows.setdefault("real", []).append(ratio(load(f"{D}/train25/myops_training_{i}_{seq}.nii.gz"), gd))
        for m in ("guide", "cmrdiff"):
            im, body = scaled(load(f"output/utility_tune/{m}/{task}/myops_training_{i}_{seq}_synth.nii.gz"))
            rows.setdefault(m, []).append(ratio(im, gd))
            cal = im.copy()
            cal[body] = np.interp(np.argsort(np.argsort(im[body])) / (body.sum() - 1), Q, ref)
            rows.setdefault(m + "+quantile", []).append(ratio(cal, gd))
    real = np.array(rows["real"])
    print(f"{task}: " + ", ".join(f"{k} {np.mean(v):.2f} (E {np.mean(np.abs(np.log(np.array(v) / real))):.2f})"
                                  for k, v in rows.items()))

"""Diagnostic (no product change): would a label-free intensity calibration restore the blood-pool contrast? Each
synthetic volume's intensities (the tuning-fold guide and CMRDiff outputs, output/utility_tune) are mapped, by rank
inside the body (> 5 % of its p99.5), onto the mean quantile function of the real target sequence over the
train_tune cases (each case scaled to [0, p99.5] the same way); LV/myo and E as blood_contrast.py.
    .venv/bin/python docs/logs/segmenter/contrast_quantile.py   (output: contrast_quantile.log)"""
import glob
import re

import numpy as np

from contrast import DATA as D, SEQ, TUNE_IDS as TUNE, contrast_error, load, ratio, training_paths

Q = np.linspace(0, 1, 201)


def scaled(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    im = np.clip(im / np.percentile(im, 99.5), 0, 1)
    return im, im > 0.05


for task, seq in SEQ.items():
    ids = [int(re.search(r"_(\d+)_", f).group(1)) for f in sorted(glob.glob(f"{D}/train25/myops_training_*_{seq}.nii.gz"))]
    ref = np.mean([np.quantile(im[body], Q) for im, body in
                   (scaled(load(training_paths(i, seq)[0])) for i in ids if i not in TUNE)], axis=0)
    rows: dict[str, list[float]] = {}
    for i in TUNE:
        img, lab = training_paths(i, seq)
        gd = load(lab)
        rows.setdefault("real", []).append(ratio(load(img), gd))
        for m in ("guide", "cmrdiff"):
            im, body = scaled(load(f"output/utility_tune/{m}/{task}/myops_training_{i}_{seq}_synth.nii.gz"))
            rows.setdefault(m, []).append(ratio(im, gd))
            cal = im.copy()
            cal[body] = np.interp(np.argsort(np.argsort(im[body])) / (body.sum() - 1), Q, ref)
            rows.setdefault(m + "+quantile", []).append(ratio(cal, gd))
    print(f"{task}: " + ", ".join(f"{k} {np.mean(v):.2f} (E {contrast_error(v, rows['real']):.2f})"
                                  for k, v in rows.items()))

"""Does blur alone flatten the blood-pool / myocardium contrast? LV/myo (as blood_contrast.py) of the real tuning-fold
sequences after an in-plane Gaussian blur of sigma px (native grid), beside the tuning-fold guide's and CMRDiff's
(output/utility_tune). Output: contrast_blur.log.
    .venv/bin/python docs/logs/segmenter/contrast_blur.py"""
import numpy as np
import nibabel as nib
from scipy.ndimage import gaussian_filter

D = "../shared/data/myops2020"
IDS = (104, 109, 114, 119, 124)
for seq, task in (("DE", "lge"), ("T2", "t2"), ("C0", "bssfp")):
    out = {}
    for i in IDS:
        gd = np.asarray(nib.load(f"{D}/train25_myops_gd/myops_training_{i}_gd.nii.gz").dataobj)
        im = np.asarray(nib.load(f"{D}/train25/myops_training_{i}_{seq}.nii.gz").dataobj, np.float32)
        lv, myo = gd == 500, np.isin(gd, [200, 1220, 2221])
        imgs = {f"blur {s}": gaussian_filter(im, (s, s, 0)) if s else im for s in (0, 1, 2, 3)}
        for m in ("guide", "cmrdiff"):
            imgs[m] = np.asarray(nib.load(f"output/utility_tune/{m}/{task}/myops_training_{i}_{seq}_synth.nii.gz").dataobj,
                                 np.float32)
        for k, v in imgs.items():
            out.setdefault(k, []).append(v[lv].mean() / v[myo].mean())
    print(f"{task}: mean LV/myo " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in out.items()))

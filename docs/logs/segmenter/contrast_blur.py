"""Does blur alone flatten the blood-pool / myocardium contrast? LV/myo (as blood_contrast.py) of the real tuning-fold
sequences after an in-plane Gaussian blur of sigma px (native grid), beside the tuning-fold guide's and CMRDiff's
(output/utility_tune). Output: contrast_blur.log.
    .venv/bin/python docs/logs/segmenter/contrast_blur.py"""
import numpy as np
from scipy.ndimage import gaussian_filter

from contrast import SEQ, TUNE_IDS, load, ratio, training_paths

for task, seq in SEQ.items():
    out: dict[str, list[float]] = {}
    for i in TUNE_IDS:
        img, lab = training_paths(i, seq)
        im, gd = load(img), load(lab)
        imgs = {f"blur {s}": gaussian_filter(im, (s, s, 0)) if s else im for s in (0, 1, 2, 3)}
        for m in ("guide", "cmrdiff"):
            imgs[m] = load(f"output/utility_tune/{m}/{task}/myops_training_{i}_{seq}_synth.nii.gz")
        for k, v in imgs.items():
            out.setdefault(k, []).append(ratio(v, gd))
    print(f"{task}: mean LV/myo " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in out.items()))

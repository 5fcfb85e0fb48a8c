"""Why a synthetic sequence misleads the fixed segmenter (issue 34): the blood-pool / myocardium contrast, mean LV
blood pool (label 500) over mean myocardium (200 ∪ 1220 ∪ 2221) per case on the native grid, real against each
method's synthesis (the evaluation outputs under output/results/<method>/<task>/). Output: blood_contrast.log.
    PYTHONPATH=. .venv/bin/python docs/logs/segmenter/blood_contrast.py [--results output/results] [--split validation]
With --split tune --results output/utility_tune: the tuning-fold twins' syntheses (channel_aug/tune_utility.sh synth);
--results output/sampler_tune --methods S0 ... S5: the sampler rounds' one samples; --results output/ae_eval --methods
recon_tune --suffix recon --flat: the shipped autoencoder's reconstructions (configs/inference_autoencoder.yaml)."""
import argparse
import glob
import os
import re

import numpy as np

from contrast import DATA, SEQ, contrast_error, load, ratio

ap = argparse.ArgumentParser()
ap.add_argument("--data", default=DATA)
ap.add_argument("--results", default="output/results")
ap.add_argument("--split", default="validation", choices=("validation", "tune"))
ap.add_argument("--methods", nargs="+", default=["cmrdiff", "cmrdiff_1sample", "guide", "unet_l1", "pix2pix",
                                                 "pix2pix_1view", "linear", "copy"])
ap.add_argument("--suffix", default="synth", help="synth, or recon for autoencoder reconstructions")
ap.add_argument("--flat", action="store_true", help="files in <results>/<method>/, not <results>/<method>/<task>/")
a = ap.parse_args()
img_dir, gd_dir, pre = (("test20", "test20_gd", "myops_test") if a.split == "validation"
                        else ("train25", "train25_myops_gd", "myops_training"))


for task, seq in SEQ.items():
    sub = "" if a.flat else f"/{task}"
    files = sorted(glob.glob(f"{a.results}/{a.methods[0]}{sub}/*_{seq}_{a.suffix}.nii.gz"))
    ids = [re.search(rf"{pre}_(\d+)_", os.path.basename(f)).group(1) for f in files]
    print(f"{task} ({seq}) LV/myo per case {' '.join(ids)}")
    gds = {i: load(f"{a.data}/{gd_dir}/{pre}_{i}_gd.nii.gz") for i in ids}
    rows = {"real": [ratio(load(f"{a.data}/{img_dir}/{pre}_{i}_{seq}.nii.gz"), gds[i]) for i in ids]}
    for m in a.methods:
        paths = [f"{a.results}/{m}{sub}/{pre}_{i}_{seq}_{a.suffix}.nii.gz" for i in ids]
        if all(os.path.exists(p) for p in paths):
            rows[m] = [ratio(load(p), gds[i]) for p, i in zip(paths, ids)]
    for m, v in rows.items():
        err = contrast_error(v, rows["real"])
        print(f"  {m:16s} " + " ".join(f"{x:.2f}" for x in v) + f"   mean {np.mean(v):.2f}  |log ratio to real| {err:.2f}")

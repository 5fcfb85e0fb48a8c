"""How far is a case's blood-pool / myocardium contrast (LV/myo, as blood_contrast.py) predictable from the other two
sequences'? Over the 25 training cases: the log ratios' correlations, a leave-one-out linear fit of each sequence's log
ratio from the other two against the training mean alone, and on the tuning fold the error E of the train_tune mean
ratio (a constant: the floor a synthesis that knows only the population contrast reaches).
    .venv/bin/python docs/logs/segmenter/contrast_predictability.py   (output: contrast_predictability.log)"""
import glob
import re

import numpy as np

from contrast import DATA, TUNE_IDS, load, ratio, training_paths

SEQS = ("C0", "DE", "T2")
ids = [int(re.search(r"training_(\d+)_", g).group(1)) for g in sorted(glob.glob(f"{DATA}/train25_myops_gd/*_gd.nii.gz"))]
a = np.log(np.array([[ratio(load(training_paths(i, s)[0]), load(training_paths(i, s)[1])) for s in SEQS] for i in ids]))
n = len(a)
print("n", n, "log LV/myo C0 DE T2 means", a.mean(0).round(2), "std", a.std(0).round(2))
print("corr matrix\n", np.corrcoef(a.T).round(2))
for k, name in enumerate(SEQS):  # leave-one-out linear prediction of each from the other two
    o = [j for j in range(3) if j != k]
    err, err0 = [], []
    for t in range(n):
        m = np.arange(n) != t
        w = np.linalg.lstsq(np.c_[a[m][:, o], np.ones(m.sum())], a[m, k], rcond=None)[0]
        err.append(abs(np.r_[a[t, o], 1] @ w - a[t, k]))
        err0.append(abs(a[m, k].mean() - a[t, k]))
    print(name, "LOO |log err| from the other two", round(np.mean(err), 3), "vs training mean alone", round(np.mean(err0), 3))
tune = [k for k, i in enumerate(ids) if i in TUNE_IDS]
tr = [k for k in range(n) if k not in tune]
for k, name in enumerate(SEQS):
    mu = a[tr, k].mean()
    print(name, "tune fold E of the train_tune mean ratio", round(np.mean(np.abs(a[tune, k] - mu)), 3),
          "(mean ratio", round(float(np.exp(mu)), 2), ")")

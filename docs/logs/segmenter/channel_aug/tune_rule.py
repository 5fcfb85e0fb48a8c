"""The rule's numbers (docs/history.md, "per-channel augmentation") from tune_utility.sh's utility.json files:
M = mean over tasks of |Δ myo| of CMRDiff's default (paired, mean over cases), R = the fixed segmenter's mean Dice over
the five regions on the real sequences, and each task's Δ myo and Δ of the task's lesion (edema for t2, scar for lge).
    python docs/logs/segmenter/channel_aug/tune_rule.py output/utility_tune/seg_shipped output/utility_tune/seg_A ..."""
import json
import sys
from pathlib import Path

import numpy as np

LESION = {"lge": "scar", "t2": "edema", "bssfp": "myo"}
for d in sys.argv[1:]:
    u = json.loads((Path(d) / "utility.json").read_text())
    real = u["lge"]["real"]["dice"]
    R = np.mean([np.nanmean(real[r]) for r in real])
    deltas, row = [], []
    for task in ("lge", "t2", "bssfp"):
        r = {m: np.array(u[task][m]["dice"]["myo"], float) for m in ("real", "cmrdiff")}
        dm = np.nanmean(r["cmrdiff"] - r["real"])
        deltas.append(dm)
        les = LESION[task]
        gap = {m: np.nanmean(u[task][m]["dice"][les]) for m in u[task]}
        rec = {m: (gap[m] - gap["zeros"]) / (gap["real"] - gap["zeros"]) for m in gap if m not in ("real", "zeros")}
        row.append(f"{task} Δmyo {dm:+.3f} {les} " + " ".join(f"{m} {v:.3f}" for m, v in gap.items())
                   + " | recovered " + " ".join(f"{m} {v:.2f}" for m, v in rec.items()))
    print(f"{d}: M {np.mean(np.abs(deltas)):.4f}  R {R:.4f}")
    print("  " + "\n  ".join(row))

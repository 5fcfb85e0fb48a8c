"""The per-task round's numbers (docs/history.md, "After v0.18.1: per-task diffusion models"), tuning fold:
per task PSNR / SSIM (each run's summary.json), the contrast error E = mean over cases of |log(LV/myo synthetic / real)|
of the _synth output, and Δ myo (the shipped segmenters' paired Dice difference to the real sequence); M = mean |Δ myo|.
    PYTHONPATH=. .venv/bin/python docs/logs/tune/per_task/rule.py   (after score.sh synth P2/P4/Q4 and score.sh utility)"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "segmenter"))
from contrast import SEQ, TUNE_IDS as IDS, contrast_error, load, ratio, training_paths  # noqa: E402

# candidate: (its evaluation folder, its utility.json, its name there)
RUNS = {"A": ("output/utility_tune/cmrdiff", "output/utility_tune/seg_shipped", "cmrdiff"),
        "P2": ("output/utility_tune_pt/P2", "output/utility_tune_pt/seg", "P2"),
        "P4": ("output/utility_tune_pt/P4", "output/utility_tune_pt/seg", "P4"),
        "Q4": ("output/utility_tune_pt/Q4", None, None)}


gds = {i: load(training_paths(i, "C0")[1]) for i in IDS}
for name, (ev, util, key) in RUNS.items():
    if not all((Path(ev) / t / "summary.json").exists() for t in SEQ):
        print(f"{name}: not (yet) evaluated in {ev}")
        continue
    psnr, ssim, err, dmyo = [], [], [], []
    for task, seq in SEQ.items():
        s = json.loads((Path(ev) / task / "summary.json").read_text())["over_slices"]
        psnr.append(s["psnr"]["mean"]); ssim.append(s["ssim"]["mean"])
        real = [ratio(load(training_paths(i, seq)[0]), gds[i]) for i in IDS]
        syn = [ratio(load(f"{ev}/{task}/myops_training_{i}_{seq}_synth.nii.gz"), gds[i]) for i in IDS]
        err.append(contrast_error(syn, real))
        if util and (Path(util) / "utility.json").exists():
            u = json.loads((Path(util) / "utility.json").read_text())[task]
            dmyo.append(float(np.nanmean(np.array(u[key]["dice"]["myo"], float) - np.array(u["real"]["dice"]["myo"], float))))
    f = lambda v, d=3: " / ".join(f"{x:.{d}f}" for x in v) + f" (mean {np.mean(v):.{d}f})"
    print(f"{name}: PSNR {f(psnr)}  SSIM {f(ssim, 4)}  E {f(err, 2)}"
          + (f"  Δmyo {' / '.join(f'{x:+.3f}' for x in dmyo)} M {np.mean(np.abs(dmyo)):.3f}" if dmyo else ""))

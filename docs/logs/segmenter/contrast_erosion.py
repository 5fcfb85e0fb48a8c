"""Is the contrast error at the boundaries (misalignment, partial volume)? LV/myo of real and synthetic sequences on the
tuning fold with the masks eroded in-plane (LV by k+1, myocardium by k voxels). Output: contrast_erosion.log.
    .venv/bin/python docs/logs/segmenter/contrast_erosion.py"""
import numpy as np
from scipy.ndimage import binary_erosion

from contrast import SEQ, TUNE_IDS, contrast_error, load, masks, training_paths

IN_PLANE = np.zeros((3, 3, 3), bool)
IN_PLANE[:, :, 1] = True
SOURCES = {"guide": "output/utility_tune/guide", "cmrdiff": "output/utility_tune/cmrdiff", "P2": "output/utility_tune_pt/P2"}
for task, seq in SEQ.items():
    for k in (0, 1, 2):
        res: dict[str, list[float]] = {}
        n_myo = []
        for i in TUNE_IDS:
            img, lab = training_paths(i, seq)
            lv, myo = masks(load(lab))
            if k:
                lv, myo = binary_erosion(lv, IN_PLANE, iterations=k + 1), binary_erosion(myo, IN_PLANE, iterations=k)
            n_myo.append(myo.sum())
            paths = {"real": img} | {m: f"{d}/{task}/myops_training_{i}_{seq}_synth.nii.gz" for m, d in SOURCES.items()}
            for name, p in paths.items():
                im = load(p)
                res.setdefault(name, []).append(im[lv].mean() / im[myo].mean())
        print(task, "erode", k, " ".join(f"{n} {np.mean(v):.2f} (E {contrast_error(v, res['real']):.2f})"
                                         for n, v in res.items()), "myo vox", int(np.mean(n_myo)))

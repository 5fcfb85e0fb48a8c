"""Which route segments a case with a missing sequence better: the pair's segmenter or the three-sequence one given
CMRDiff's synthesis? Runs configs/segment.yaml (shipped segmenters) on a split for the real three sequences, each pair,
and each synthesis in place of its real sequence, and scores the label maps on the input grid against the labels (Dice
per case over its stack, mean of the cases). Tuning fold (the route is chosen there): the twin models' default output
(output/utility_tune/cmrdiff); validation (reported once): the shipped models' (output/results/cmrdiff).
    PYTHONPATH=. .venv/bin/python docs/logs/segmenter/segment_routes.py tune|validation   (output: segment_routes.log)"""
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.segmentation import REGIONS

split = sys.argv[1]
DATA = Path("../shared/data/myops2020").resolve()
img_dir, gd_dir, synth = {"tune": ("train25", "train25_myops_gd", "output/utility_tune/cmrdiff"),
                          "validation": ("test20", "test20_gd", "output/results/cmrdiff")}[split]
kind = "training" if split == "tune" else "test"
ids = [104, 109, 114, 119, 124] if split == "tune" else [203, 206, 210, 211, 214]
TASK_SEQ = {"lge": "DE", "t2": "T2", "bssfp": "C0"}
CFG = "['configs/common.yaml','configs/train_segmenter.yaml','configs/segment.yaml']"
tmp = Path(tempfile.mkdtemp(prefix="segment_routes_"))


def run(out: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "bundle", "run", "--config_file", CFG, "--output_dir", str(out), *args]
    subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def dice(out: Path) -> np.ndarray:
    rows = []
    for i in ids:
        p = np.asarray(nib.load(str(out / f"myops_{kind}_{i}_seg.nii.gz")).dataobj).astype(int)
        t = np.asarray(nib.load(str(DATA / gd_dir / f"myops_{kind}_{i}_gd.nii.gz")).dataobj).astype(int)
        rows.append([2 * (np.isin(p, c) & np.isin(t, c)).sum() / max(np.isin(p, c).sum() + np.isin(t, c).sum(), 1)
                     for c in REGIONS.values()])
    return np.array(rows)


def flat(task: str | None, root: str = synth) -> Path:
    """A flat folder of the split's cases, the task's target replaced by the synthesis under ``root`` (task None:
    all real)."""
    d = Path(tempfile.mkdtemp(prefix=f"flat_{task}_", dir=tmp))
    for i in ids:
        for s in ("C0", "DE", "T2"):
            src = (Path(root) / task / f"myops_{kind}_{i}_{s}_synth.nii.gz").resolve() if task and TASK_SEQ[task] == s \
                else DATA / img_dir / f"myops_{kind}_{i}_{s}.nii.gz"
            (d / f"myops_{kind}_{i}_{s}.nii.gz").symlink_to(src)
    return d


if __name__ == "__main__":
    res = {}
    real = flat(None)
    run(tmp / "real", "--dataset_dir", str(real), "--case_ids", str(ids))
    res["real (three sequences)"] = dice(tmp / "real")
    for task, seq in TASK_SEQ.items():
        pair = [s for s in ("C0", "DE", "T2") if s != seq]
        run(tmp / f"pair_{task}", "--dataset_dir", str(real), "--case_ids", str(ids),
            "--segment_inputs", str(pair))
        res[f"{seq} missing: {'+'.join(pair)} segmenter"] = dice(tmp / f"pair_{task}")
        run(tmp / f"synth_{task}", "--dataset_dir", str(flat(task)), "--case_ids", str(ids))
        res[f"{seq} missing: CMRDiff's {seq} + three-sequence segmenter"] = dice(tmp / f"synth_{task}")
    print(f"# {split}: cases {ids}; Dice per case over its stack on the input grid, mean of the cases "
          f"({' / '.join(REGIONS)}); synthesis {synth}")
    for k, v in res.items():
        print(f"{k:55s} " + " ".join(f"{x:.3f}" for x in v.mean(0)))

"""The C2ST blur control on the tuning fold's real slices (no synthesis): how often the patch classifier of
``bundle.realism`` tells a real slice from the same slice blurred by a Gaussian of ``sigma`` px, for classifier
settings ``sigma:epochs:batch``. Used once to choose the frozen recipe (docs/results.md, v0.16.0).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python scripts/c2st_control.py 0.75:8:64 1.0:8:64 1.0:12:32 \\
        0.75:12:32 1.0:24:32 1.0:16:16 [--sequences DE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bundle import realism as R  # noqa: E402
from bundle.data import SEQUENCES, build_slices, discover_cases  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="+", help="sigma:epochs:batch")
    ap.add_argument("--dataset_dir", default=os.environ.get("MYOPS_DIR", str(ROOT.parent / "shared/data/myops2020")))
    ap.add_argument("--sequences", nargs="+", default=["DE"], choices=SEQUENCES)
    args = ap.parse_args()
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config(str(ROOT / "configs/common.yaml"))
    p["dataset_dir"] = args.dataset_dir
    cases = discover_cases(args.dataset_dir, "tune", p["validation_ids"], tuning_ids=p["tuning_ids"])
    slices = build_slices(cases, p.get_parsed_content("volume_transforms"), None, progress=False)
    for setting in args.settings:
        sigma, epochs, batch = setting.split(":")
        R.EPOCHS, R.BATCH = int(epochs), int(batch)
        rng = np.random.default_rng(0)
        real, blur, groups = [], [], []
        for s in slices:
            for seq in args.sequences:
                im = np.asarray(s["image"][SEQUENCES.index(seq)], dtype=np.float32)
                body = R.body_mask(im)
                real.append(R.sample_patches(im, R.patch_centres(body, R.PER_SLICE, rng)))
                blur.append(R.sample_patches(gaussian_filter(im, float(sigma)), R.patch_centres(body, R.PER_SLICE, rng)))
                groups += [s["case"]] * R.PER_SLICE
        t = time.time()
        r = R.c2st(np.concatenate(real), groups, np.concatenate(blur), groups)
        print(f"sigma {sigma} epochs {epochs} batch {batch}: {r['accuracy']:.3f} "
              f"{[round(f, 3) for f in r['folds']]} ({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

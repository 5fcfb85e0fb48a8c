"""Trivial reference rows for the results table: the "synthesis" is a condition sequence copied unchanged
(e.g. LGE := bSSFP), scored with the same protocol and metric code as evaluate.yaml.

    PYTHONPATH=. .venv/bin/python scripts/copy_baseline.py --dataset_dir D [--split validation]
"""

import argparse
import json

import numpy as np
from monai.bundle import ConfigParser

from bundle.data import SEQUENCES, discover_cases
from bundle.evaluation import COLUMNS, slice_metrics

ap = argparse.ArgumentParser()
ap.add_argument("--dataset_dir", required=True)
ap.add_argument("--split", default="validation")
a = ap.parse_args()
p = ConfigParser()
p.read_config("configs/common.yaml")
p.update({"output_dir": "/tmp/cmrdiff_copy_baseline", "dataset_dir": a.dataset_dir})
vt = p.get_parsed_content("volume_transforms")
vols = [vt(c) for c in discover_cases(a.dataset_dir, a.split, p["validation_ids"], require_label=True)]
for task, spec in p["tasks"].items():
    t = SEQUENCES.index(spec["target"])
    for cond in spec["conditions"]:
        c = SEQUENCES.index(cond)
        rows = [slice_metrics(v["image"][c, ..., s], v["image"][t, ..., s], v["mask"][0, ..., s])
                for v in vols for s in range(v["image"].shape[-1])]
        stats = {k: (np.nanmean([r[k] for r in rows]), np.nanstd([r[k] for r in rows])) for k in COLUMNS}
        print(json.dumps({"task": task, "copy": cond, "slices": len(rows),
                          **{k: f"{m:.3f} ± {s:.3f}" for k, (m, s) in stats.items()}}))

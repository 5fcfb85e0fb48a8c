"""Trivial reference rows: each condition sequence copied unchanged as the synthesis (e.g. LGE := bSSFP), scored
with the same protocol and metric code as evaluate.yaml (scripts/results.py uses the guide-sequence copy).

    PYTHONPATH=. .venv/bin/python scripts/copy_baseline.py --dataset_dir D [--split validation]
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import ROOT, copy_scores  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--dataset_dir", required=True, type=Path)
ap.add_argument("--split", default="validation")
a = ap.parse_args()
tasks = yaml.safe_load((ROOT / "configs/common.yaml").read_text())["tasks"]
for task, spec in tasks.items():
    for cond in spec["conditions"]:
        d = copy_scores(a.dataset_dir, spec["target"], cond, a.split)
        print(json.dumps({"task": task, "copy": cond, "slices": d["slices"],
                          **{k: f"{s['mean']:.3f} ± {s['std']:.3f}" for k, s in d["over_slices"].items()}}))

"""Choose the sampler's guidance scales and strength on the validation split (never on test).

    PYTHONPATH=. .venv/bin/python scripts/grid_search.py --dataset_dir D --output_dir output/grid [--steps 50]

Runs configs/evaluate.yaml for every (c_I1, c_I2, strength) of the grid and every task, collects the
validation PSNR/SSIM (mean over slices) from each summary.json and writes a markdown table to
<output_dir>/grid.md (and prints it). The winner maximises the mean PSNR over the three tasks.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from monai.bundle import run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--output_dir", default=str(ROOT / "output/grid"))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tasks", default="lge,t2,bssfp")
    ap.add_argument("--scales", default="1.0:1.0,1.5:1.5,1.0:3.0,3.0:1.0,2.5:2.5")
    ap.add_argument("--strengths", default="0.5,0.75,1.0")
    a = ap.parse_args()
    scales = [tuple(float(v) for v in s.split(":")) for s in a.scales.split(",")]
    strengths = [float(s) for s in a.strengths.split(",")]
    tasks = a.tasks.split(",")
    rows = []
    for (s1, s2), st in itertools.product(scales, strengths):
        res = {}
        for task in tasks:
            out = Path(a.output_dir) / f"c{s1}_{s2}_s{st}" / task
            summary = out / "summary.json"
            if not summary.is_file():
                run(config_file=[str(ROOT / "configs/common.yaml"), str(ROOT / "configs/inference.yaml"),
                                 str(ROOT / "configs/evaluate.yaml")], bundle_root=str(ROOT), task=task,
                    dataset_dir=a.dataset_dir, split="validation", output_dir=str(out), num_inference_steps=a.steps,
                    guidance_scale_1=s1, guidance_scale_2=s2, strength=st)
            o = json.loads(summary.read_text())["over_slices"]
            res[task] = (o["psnr"]["mean"], o["ssim"]["mean"])
        rows.append(((s1, s2, st), res))
        print((s1, s2, st), {k: f"{v[0]:.2f} dB / {v[1]:.3f}" for k, v in res.items()}, flush=True)
    best = max(rows, key=lambda r: sum(v[0] for v in r[1].values()))
    lines = [f"Validation split, {a.steps} DDIM steps, PSNR (dB) / SSIM, mean over slices "
             f"(`PYTHONPATH=. .venv/bin/python scripts/grid_search.py --dataset_dir {a.dataset_dir} --steps {a.steps}`).", "",
             "| c_I1 | c_I2 | strength | " + " | ".join(tasks) + " | mean PSNR |", "|---" * (4 + len(tasks)) + "|"]
    for (s1, s2, st), res in rows:
        mark = "**" if (s1, s2, st) == best[0] else ""
        cells = " | ".join(f"{mark}{res[t][0]:.2f} / {res[t][1]:.3f}{mark}" for t in tasks)
        lines.append(f"| {s1} | {s2} | {st} | {cells} | {sum(res[t][0] for t in tasks) / len(tasks):.2f} |")
    lines += ["", f"Winner: c_I1={best[0][0]}, c_I2={best[0][1]}, strength={best[0][2]}."]
    Path(a.output_dir, "grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

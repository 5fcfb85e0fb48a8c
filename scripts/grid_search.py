"""Choose the sampler's settings on the tuning fold (`--split tune`: the `tuning_ids` training cases of
configs/common.yaml), with models trained on the other training cases (`train_tune`). Never on validation or test.

    PYTHONPATH=. .venv/bin/python scripts/grid_search.py --dataset_dir D --output_dir output/tunegrid \
        --set models_dir=output/tune/models guide_weights=output/tune/baselines/unet_l1_cpu_any.pt \
        --guides default,regression --scales 1.5,2.5,4.0 --strengths 0.5,0.75 --samples 1,8 [--jobs 2]

Runs configs/evaluate.yaml for every (guide, c_I1 = c_I2, strength, num_samples) of the grid and every task (an
unequal pair is written `c1:c2`), collects PSNR/SSIM (mean over slices) from each summary.json and writes a markdown
table to <output_dir>/grid.md (and prints it). The winner maximises the mean PSNR over the three tasks.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = ["configs/common.yaml", "configs/inference.yaml", "configs/evaluate.yaml"]


def evaluate(out: Path, task: str, guide: str, s1: float, s2: float, strength: float, n: int, a) -> dict:
    summary = out / "summary.json"
    if not summary.is_file():
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(EVAL), "--task", task,
               "--dataset_dir", a.dataset_dir, "--split", a.split, "--output_dir", str(out),
               "--num_inference_steps", str(a.steps), "--guidance_scale_1", str(s1), "--guidance_scale_2", str(s2),
               "--strength", str(strength), "--num_samples", str(n)]
        if guide != "default":  # default: the paper's start (bSSFP, or T2 for the bssfp task)
            cmd += ["--guide", guide]
        for kv in a.set:
            k, v = kv.split("=", 1)
            cmd += [f"--{k}", v]
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: {out} failed:\n{proc.stderr[-2000:]}")
    o = json.loads(summary.read_text())["over_slices"]
    return {"psnr": o["psnr"]["mean"], "ssim": o["ssim"]["mean"], "myo_psnr": o["myo_psnr"]["mean"],
            "myo_ssim": o["myo_ssim"]["mean"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--split", default="tune", choices=["tune"], help="knobs are chosen on the tuning fold only")
    ap.add_argument("--output_dir", default=str(ROOT / "output/tunegrid"))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tasks", default="lge,t2,bssfp")
    ap.add_argument("--guides", default="default", help="default (bSSFP, or T2 for bssfp) and/or regression")
    ap.add_argument("--scales", default="2.5")
    ap.add_argument("--strengths", default="0.75")
    ap.add_argument("--samples", default="1")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides key=value (e.g. models_dir=...)")
    ap.add_argument("--tag", default="", help="prefix of the output folders and of the guide column (e.g. residual_ "
                    "with --set residual=true)")
    ap.add_argument("--collect", action="store_true", help="no new runs: tabulate every setting already scored "
                    "under --output_dir (all earlier invocations together)")
    ap.add_argument("--jobs", type=int, default=1, help="evaluations run side by side (one thread each)")
    a = ap.parse_args()
    scales = [tuple(float(v) for v in (s.split(":") * 2)[:2]) for s in a.scales.split(",")]
    grid = list(itertools.product(a.guides.split(","), scales, [float(s) for s in a.strengths.split(",")],
                                  [int(n) for n in a.samples.split(",")]))
    tasks = a.tasks.split(",")
    jobs = []
    for (guide, (s1, s2), st, n), task in itertools.product(grid, tasks):
        out = Path(a.output_dir) / f"{a.tag}{guide}_c{s1}_{s2}_s{st}_n{n}" / task
        jobs.append(((a.tag + guide, s1, s2, st, n), task, out, guide))
    if a.collect:
        import re

        pat = re.compile(r"^(?P<g>.+)_c(?P<s1>[\d.]+)_(?P<s2>[\d.]+)_s(?P<st>[\d.]+)_n(?P<n>\d+)$")
        jobs = []
        for d in sorted(Path(a.output_dir).iterdir()):
            m = pat.match(d.name)
            if m and all((d / t / "summary.json").is_file() for t in tasks):
                key = (m["g"], float(m["s1"]), float(m["s2"]), float(m["st"]), int(m["n"]))
                jobs += [(key, t, d / t, None) for t in tasks]
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        res = list(pool.map(lambda j: evaluate(j[2], j[1], j[3], *j[0][1:], a), jobs))  # cached summaries reused
    table: dict[tuple, dict[str, dict]] = {}
    for (key, task, _, _), r in zip(jobs, res):
        table.setdefault(key, {})[task] = r
    best = max(table, key=lambda k: sum(table[k][t]["psnr"] for t in tasks))
    lines = [f"Tuning fold (`--split {a.split}`), {a.steps} DDIM steps, PSNR (dB) / SSIM, mean over slices "
             f"(`PYTHONPATH=. .venv/bin/python scripts/grid_search.py {' '.join(sys.argv[1:])}`).", "",
             "| guide | c_I1 | c_I2 | strength | samples | " + " | ".join(tasks) + " | mean PSNR | mean SSIM |",
             "|---" * (7 + len(tasks)) + "|"]
    for key, per in table.items():
        mark = "**" if key == best else ""
        cells = " | ".join(f"{mark}{per[t]['psnr']:.2f} / {per[t]['ssim']:.3f}{mark}" for t in tasks)
        guide, s1, s2, st, n = key
        lines.append(f"| {guide} | {s1} | {s2} | {st} | {n} | {cells} | {sum(per[t]['psnr'] for t in tasks) / len(tasks):.2f}"
                     f" | {sum(per[t]['ssim'] for t in tasks) / len(tasks):.3f} |")
    lines += ["", f"Winner (mean PSNR): guide={best[0]}, c_I1={best[1]}, c_I2={best[2]}, strength={best[3]}, "
                  f"num_samples={best[4]}."]
    Path(a.output_dir).mkdir(parents=True, exist_ok=True)
    Path(a.output_dir, "grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

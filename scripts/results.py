"""The results table (`make results`): every method of configs/baselines/ and CMRDiff evaluated on the validation
split with the same evaluation workflow (configs/evaluate.yaml), written into docs/results.md between the
``<!-- results:begin -->`` / ``<!-- results:end -->`` markers.

    PYTHONPATH=. .venv/bin/python scripts/results.py --dataset_dir ../shared/data/myops2020 [--force] [--only KEY ...]

Each (method, task) evaluation writes output/results/<method>/<task>/summary.json and is reused while it is newer
than the weights it was made with (``--force`` reruns). A method whose weights are missing is listed as not trained
(scripts/train_baselines.sh trains them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL = ["configs/common.yaml", "configs/inference.yaml", "configs/evaluate.yaml"]
B = "configs/baselines/"
TASKS = ("lge", "t2", "bssfp")
COLS = (("psnr", "PSNR", 2), ("ssim", "SSIM", 3), ("myo_psnr", "myo PSNR", 2), ("myo_ssim", "myo SSIM", 3))

# key: (row label, config files added to configs/evaluate.yaml's, extra command-line args); weights: weights_of()
METHODS: dict[str, tuple[str, list[str], list[str]]] = {
    "cmrdiff": ("**CMRDiff** (shipped weights, defaults)", [], []),
    "cmrdiff_n4": ("CMRDiff, mean of 4 samples", [], ["--num_samples", "4"]),
    "cmrdiff_nocache": ("CMRDiff without DeepCache (`--cache_interval 1`)", [], ["--cache_interval", "1"]),
    "cmrdiff_scratch": ("CMRDiff trained like the ablation (from scratch, 300 epochs)", [B + "latent.yaml"], []),
    "no_heatmap": ("ablation: no heatmap loss (λ = 0; from scratch, 300 epochs)",
                   [B + "latent.yaml", B + "no_heatmap.yaml"], []),
    "no_guided_synthesis": ("ablation: no guided synthesis (strength 1)", [B + "no_guided_synthesis.yaml"], []),
    "single_scale_cfg": ("ablation: single-scale CFG (c_I2 = c_I1)", [B + "single_scale_cfg.yaml"], []),
    "ldm_plain": ("ldm_plain (450 epochs; v0.2.0 VAE†)", [B + "latent.yaml", B + "ldm_plain.yaml"], []),
    "unet_l1": ("unet_l1", [B + "image.yaml", B + "evaluate_image.yaml"], ["--method", "unet_l1"]),
    "pix2pix": ("pix2pix", [B + "image.yaml", B + "evaluate_image.yaml"], ["--method", "pix2pix"]),
    "copy": ("copy the guide condition unchanged", [], []),
}


def weights_of(key: str, baselines_dir: Path, profile: str) -> Path | None:
    """The weights file a method is evaluated with (None for the copy reference)."""
    if key == "copy":
        return None
    if key in ("no_heatmap", "ldm_plain", "unet_l1", "pix2pix"):
        return baselines_dir / f"{key}_{profile}_any.pt"
    if key == "cmrdiff_scratch":
        return baselines_dir / f"cmrdiff_{profile}_any.pt"
    return ROOT / "models" / f"diffusion_{profile}_any.pt"


def evaluate(key: str, task: str, args, out: Path) -> dict:
    summary = out / "summary.json"
    w = weights_of(key, args.baselines_dir, args.profile)
    if summary.is_file() and not args.force and (w is None or summary.stat().st_mtime > w.stat().st_mtime):
        return json.loads(summary.read_text())
    if key == "copy":
        return copy_guide(task, args, out)
    label, files, extra = METHODS[key]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(EVAL + files), "--task", task,
           "--dataset_dir", str(args.dataset_dir), "--split", "validation", "--output_dir", str(out),
           "--profile", args.profile, "--baselines_dir", str(args.baselines_dir), *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {key}/{task} failed:\n{proc.stderr[-3000:]}")
    print(f"  {key}/{task}: {time.time() - t0:.0f} s", flush=True)
    return json.loads(summary.read_text())


def copy_guide(task: str, args, out: Path) -> dict:
    """The trivial reference: the sampler's default guide sequence (bSSFP, or T2 for the bssfp task) copied as
    the synthesis, scored with the same metric code."""
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config(str(ROOT / "configs/common.yaml"))
    spec = p["tasks"][task]
    guide = "C0" if spec["target"] != "C0" else "T2"
    d = {"task": task, "copy": guide, **copy_scores(args.dataset_dir, spec["target"], guide)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(d, indent=2))
    return d


def copy_scores(dataset_dir: Path, target: str, source: str, split: str = "validation") -> dict:
    """Scores of sequence ``source`` copied unchanged as the synthesis of ``target``, with the evaluation's own
    preprocessing and metric code: ``{"slices", "over_slices": {column: {mean, std, n}}}``."""
    import tempfile

    from monai.bundle import ConfigParser

    from bundle.data import SEQUENCES, discover_cases
    from bundle.evaluation import COLUMNS, slice_metrics, summary_stats

    p = ConfigParser()
    p.read_config(str(ROOT / "configs/common.yaml"))
    p.update({"output_dir": tempfile.gettempdir(), "dataset_dir": str(dataset_dir)})
    vt = p.get_parsed_content("volume_transforms")
    t, c = SEQUENCES.index(target), SEQUENCES.index(source)
    rows = []
    for case in discover_cases(dataset_dir, split, p["validation_ids"], require_label=True):
        v = vt(case)
        rows += [slice_metrics(v["image"][c, ..., s], v["image"][t, ..., s], v["mask"][0, ..., s])
                 for s in range(v["image"].shape[-1])]
    return {"slices": len(rows), "over_slices": {k: summary_stats([r[k] for r in rows]) for k in COLUMNS}}


def table(results: dict[str, dict[str, dict]]) -> str:
    head = "| method | " + " | ".join(f"{t} {c}" for t in TASKS for _, c, _ in COLS) + " |"
    lines = [head, "|---" * (1 + len(TASKS) * len(COLS)) + "|"]
    best = {}
    for t in TASKS:
        for k, _, _ in COLS:
            vals = [r[t]["over_slices"][k]["mean"] for r in results.values() if r.get(t)]
            best[t, k] = max(vals) if vals else None
    for key, per_task in results.items():
        cells = []
        for t in TASKS:
            for k, _, digits in COLS:
                if not per_task.get(t):
                    cells.append("not trained")
                    continue
                s = per_task[t]["over_slices"][k]
                cell = f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
                cells.append(f"**{cell}**" if np.isclose(s["mean"], best[t, k]) else cell)
        lines.append(f"| {METHODS[key][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", type=Path, default=Path(os.environ.get("MYOPS_DIR", ROOT.parent / "shared/data/myops2020")))
    ap.add_argument("--output_dir", type=Path, default=ROOT / "output" / "results")
    ap.add_argument("--baselines_dir", type=Path, default=ROOT / "output" / "baselines")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--only", nargs="*", choices=sorted(METHODS), help="evaluate only these methods")
    ap.add_argument("--force", action="store_true", help="rerun evaluations even when a newer summary exists")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args()
    if not (args.dataset_dir / "test20").is_dir():
        raise SystemExit(f"error: {args.dataset_dir} has no test20/ folder (the validation split); "
                         "pass --dataset_dir or set MYOPS_DIR")
    results: dict[str, dict[str, dict]] = {}
    for key in args.only or METHODS:
        w = weights_of(key, args.baselines_dir, args.profile)
        if w is not None and not w.is_file():
            print(f"{key}: no weights at {w} (scripts/train_baselines.sh {key}) - listed as not trained")
            results[key] = {}
            continue
        results[key] = {t: evaluate(key, t, args, args.output_dir / key / t) for t in TASKS}
    md = table(results)
    (args.output_dir / "table.md").parent.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "table.md").write_text(md + "\n")
    print(md)
    if args.only:
        return  # a partial table is not written into the docs
    doc = args.doc.read_text()
    block = f"<!-- results:begin -->\n{md}\n<!-- results:end -->"
    if "<!-- results:begin -->" not in doc:
        raise SystemExit(f"error: {args.doc} has no <!-- results:begin --> / <!-- results:end --> markers")
    args.doc.write_text(re.sub(r"<!-- results:begin -->.*?<!-- results:end -->", lambda _: block, doc, flags=re.S))
    print("wrote the table into", args.doc)


if __name__ == "__main__":
    main()

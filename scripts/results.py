"""The results table (`make results`): every method of configs/baselines/ and CMRDiff evaluated on the validation
split with the same evaluation workflow (configs/evaluate.yaml), written into docs/results.md between the
``<!-- results:begin -->`` / ``<!-- results:end -->`` markers.

    PYTHONPATH=. .venv/bin/python scripts/results.py --dataset_dir ../shared/data/myops2020 [--force] [--only KEY ...]

Each (method, task) evaluation writes output/results/<method>/<task>/summary.json and is reused while it is newer
than the weights it was made with and was made by the same command with the same pipeline code (configs and
bundle/ sources, hashed into the stamp; ``--force`` reruns). A method whose weights are
missing is listed as not trained (scripts/train_baselines.sh trains them). On the validation split it also writes
``eval_metrics`` of configs/metadata.json from the CMRDiff row and the stage-1 reconstruction scores. Below the
tables it writes the paired comparison of CMRDiff with the best competitor of each column (``paired_table``: the
difference over the same slices and its 95% interval from resampling cases), into ``<!-- paired:begin -->``
(``paired_tune`` on the tuning fold) and <output_dir>/paired.md.

The tuning-fold table (models trained on `train_tune`, scored on `tune`; between ``<!-- tune:begin -->`` markers):

    PYTHONPATH=. .venv/bin/python scripts/results.py --split tune \\
        --set models_dir=output/tune/models guide_weights=output/tune/baselines/unet_l1_cpu_any.pt
"""

from __future__ import annotations

import argparse
import ast
import csv
import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bundle.metadata import data_formats  # noqa: E402
from bundle.tta import effective_views  # noqa: E402
EVAL = ["configs/common.yaml", "configs/inference.yaml", "configs/evaluate.yaml"]
B = "configs/baselines/"
TASKS = ("lge", "t2", "bssfp")
COLS = (("psnr", "PSNR", 2), ("ssim", "SSIM", 3), ("myo_psnr", "myo PSNR", 2), ("myo_ssim", "myo SSIM", 3))

# key: (row name, config files added to configs/evaluate.yaml's, extra command-line args). The row label is the
# name plus the knobs the row ran with, read from the configs (and the extra args), not typed here.
METHODS: dict[str, tuple[str, list[str], list[str]]] = {
    "cmrdiff": ("**CMRDiff** (shipped weights and defaults)", [], []),
    "cmrdiff_1sample": ("CMRDiff, one sample", [], ["--num_samples", "1"]),
    # the realism ablations (issue 31): the scanner texture (experimental, off by default) on one sample and on the guide
    "cmrdiff_1sample_texture": ("CMRDiff, one sample + the scanner texture", [], ["--num_samples", "1", "--texture", "true"]),
    "cmrdiff_paper_start": ("CMRDiff, the paper's start (guide sequence)", [],
                            ["--guide", "default", "--residual", "false", "--strength", "0.75", "--num_samples", "4"]),
    "cmrdiff_paper": ("CMRDiff, v0.3.0 sampler settings", [],
                      ["--guide", "default", "--residual", "false", "--num_samples", "1", "--guidance_scale_1", "6.0",
                       "--guidance_scale_2", "6.0", "--strength", "0.75"]),
    # 50 steps from (near) pure noise: 4 samples, as in v0.4.0 (16 would take ~4x the time; on the tuning fold 16 vs 4
    # samples gained CMRDiff +0.1 dB mean PSNR)
    "no_guided_synthesis": ("ablation: no guided synthesis", [B + "no_guided_synthesis.yaml"], ["--num_samples", "4"]),
    "ldm_plain": ("ldm_plain", [B + "latent.yaml", B + "ldm_plain.yaml"], ["--num_samples", "4"]),
    # the regressor behind CMRDiff's `guide: regression` start (guide_weights), evaluated on its own
    "guide": ("CMRDiff's guide regressor alone", [B + "image.yaml", B + "evaluate_image.yaml"], []),
    "guide_texture": ("CMRDiff's guide regressor + the scanner texture", [B + "image.yaml", B + "evaluate_image.yaml"],
                      ["--texture", "true"]),
    # trained on the guide's data and augmentation (--baselines_dir; docs/results.md names the commands)
    "unet_l1": ("unet_l1", [B + "image.yaml", B + "evaluate_image.yaml"], ["--method", "unet_l1"]),
    "pix2pix": ("pix2pix", [B + "image.yaml", B + "evaluate_image.yaml"], ["--method", "pix2pix"]),
    # one view: the generator's own output, not an average (the realism comparison; issue 31)
    "pix2pix_1view": ("pix2pix, one view", [B + "image.yaml", B + "evaluate_image.yaml"],
                      ["--method", "pix2pix", "--views", "1"]),
    "linear": ("linear fit a·c1 + b·c2 + c", [B + "image.yaml", B + "evaluate_image.yaml", B + "linear.yaml"], []),
}
# the same methods trained on the MyoPS cases alone with flips and rot90 (--myops_only_dir; v0.8.0's rows)
MYOPS_ONLY = {"unet_l1_myops": "unet_l1", "pix2pix_myops": "pix2pix", "linear_myops": "linear"}  # key -> method
METHODS.update({k: (f"{METHODS[m][0].split(' a·')[0]}, MyoPS cases only", *METHODS[m][1:]) for k, m in MYOPS_ONLY.items()})
METHODS["copy"] = ("copy the guide condition unchanged", [B + "copy.yaml"], [])
SAMPLER_KNOBS = ("guide", "residual", "guidance_scale_1", "guidance_scale_2", "strength", "num_samples", "num_inference_steps",
                 "cache_interval", "views", "estimator", "prediction_type")
SHORT = {"guidance_scale_1": "c_I1", "guidance_scale_2": "c_I2", "num_samples": "N", "num_inference_steps": "steps",
         "cache_interval": "DeepCache k"}


def knobs(key: str, overrides: list[str]) -> dict:
    """The sampler knobs a row runs with: the merged configs' values, then the row's command-line args."""
    from monai.bundle import ConfigParser

    _, files, extra = METHODS[key]
    p = ConfigParser()
    p.read_config([str(ROOT / f) for f in EVAL + files])
    vals = {k: p.get_parsed_content(k) for k in SAMPLER_KNOBS}
    args = extra + overrides
    for i in range(0, len(args) - 1):
        if args[i].startswith("--") and args[i][2:] in vals:
            k, v = args[i][2:], args[i + 1]
            if v in ("None", "default"):
                vals[k] = None
            elif isinstance(vals[k], bool):
                vals[k] = v.lower() in ("1", "true", "yes")
            else:
                vals[k] = type(vals[k] or "")(v)
    if float(vals["strength"]) >= 1.0:
        vals["guide"] = "none (pure noise)"
    elif vals["guide"] is None:
        vals["guide"] = "bSSFP (T2 for bssfp)"
    return vals


def label(key: str, overrides: list[str]) -> str:
    name = METHODS[key][0]
    k = knobs(key, overrides)
    if key == "copy":
        return name
    if key in ("guide", "guide_texture", "unet_l1", "pix2pix", "pix2pix_1view", "linear", *MYOPS_ONLY):  # image-space: only views
        return name if int(k["views"]) == 1 else f"{name}, mean of {k['views']} test-time views"
    k["views"] = effective_views(k["views"], k["num_samples"])  # what the sampler runs with N samples
    if k["estimator"] == "sample":  # the default chain to t = 0: labels name only the one-step estimate
        del k["estimator"]
    if k["prediction_type"] == "epsilon":  # the DDPM/DDIM default: labels name only the other types (flow)
        del k["prediction_type"]
    return f"{name}: " + ", ".join(f"{SHORT.get(n, n)} {v}" for n, v in k.items())


def weights_of(key: str, args) -> list[Path]:
    """The weights files a method is evaluated with (none for the copy reference)."""
    if key == "copy":
        return []
    if key in ("ldm_plain", "unet_l1", "pix2pix", "pix2pix_1view", "linear"):
        return [args.baselines_dir / f"{key.split('_1view')[0]}_{args.profile}_any.pt"]
    if key in MYOPS_ONLY:
        return [args.myops_only_dir / f"{MYOPS_ONLY[key]}_{args.profile}_any.pt"]
    sets = dict(kv.split("=", 1) for kv in args.set)
    models = Path(sets.get("models_dir", ROOT / "models"))
    guide = [Path(g) for g in listed(sets["guide_weights"])] if "guide_weights" in sets else \
        [models / f"guide_{args.profile}_any.pt"]
    if key == "guide":
        return guide
    if key == "guide_texture":
        return guide + [models / f"texture_{args.profile}.pt"]
    files = [models / f"diffusion_{args.profile}_any.pt"]
    if knobs(key, setargs(args))["guide"] == "regression":
        files += guide
    if "--texture" in METHODS[key][2]:  # the realism ablation that draws the scanner texture
        files.append(models / f"texture_{args.profile}.pt")
    return files


def listed(value: str) -> list[str]:
    """A ``--set`` value naming one file or a list literal of them (an ensemble guide) -> the list."""
    return [str(v) for v in ast.literal_eval(value)] if value.strip().startswith("[") else [value]


def setargs(args) -> list[str]:
    out = []
    for kv in args.set:
        k, v = kv.split("=", 1)
        out += [f"--{k}", v]
    return out


@functools.cache
def code_fingerprint() -> str:
    """sha1 of every config and bundle/ source (but the version string in bundle/__init__.py): a cached evaluation
    made with other pipeline code is stale. Read once per run."""
    import hashlib

    h = hashlib.sha1()
    files = [*(ROOT / "configs").rglob("*.yaml"), *(ROOT / "bundle").glob("*.py")]
    for f in sorted(f for f in files if f.name != "__init__.py"):
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def evaluate(key: str, task: str, args, out: Path) -> dict:
    summary, stamp = out / "summary.json", out / "command.txt"
    ws = weights_of(key, args)
    _, files, extra = METHODS[key]
    if key in ("guide", "guide_texture"):  # the guide's own weights file and the method it was trained as
        import torch

        g = [w for w in ws if not w.name.startswith("texture_")]
        method = torch.load(g[0], map_location="cpu", weights_only=True)["arch"]["method"]
        extra = [*extra, "--method", method, "--baseline_weights", str(g[0]) if len(g) == 1 else str([str(w) for w in g])]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(EVAL + files), "--task", task,
           "--dataset_dir", str(args.dataset_dir), "--split", args.split, "--output_dir", str(out),
           "--profile", args.profile, "--baselines_dir", str(args.myops_only_dir if key in MYOPS_ONLY else args.baselines_dir),
           *extra, *setargs(args)]
    line = " ".join(cmd[1:]) + f"\n# pipeline code {code_fingerprint()}"
    fresh = summary.is_file() and stamp.is_file() and stamp.read_text() == line and \
        all(summary.stat().st_mtime > w.stat().st_mtime for w in ws)
    if fresh and not args.force:
        return json.loads(summary.read_text())
    print("$", line.splitlines()[0], flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {key}/{task} failed:\n{proc.stderr[-3000:]}")
    stamp.write_text(line)
    print(f"  {key}/{task}: {time.time() - t0:.0f} s", flush=True)
    return json.loads(summary.read_text())


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
    for case in discover_cases(dataset_dir, split, p["validation_ids"], require_label=True, tuning_ids=p["tuning_ids"]):
        v = vt(case)
        rows += [slice_metrics(v["image"][c, ..., s], v["image"][t, ..., s], v["mask"][0, ..., s])
                 for s in range(v["image"].shape[-1])]
    return {"slices": len(rows), "over_slices": {k: summary_stats([r[k] for r in rows]) for k in COLUMNS}}


def table(results: dict[str, dict[str, dict]], labels: dict[str, str]) -> str:
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
        lines.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# the methods CMRDiff is compared with (issue 14); the guide and the CMRDiff ablations are parts of CMRDiff
COMPETITORS = ("unet_l1", "pix2pix", "ldm_plain", "linear", "copy", *MYOPS_ONLY)


def per_slice(out: Path) -> dict[tuple[str, str], dict[str, float]]:
    """One evaluation's metrics.csv (written by bundle.evaluation.SynthesisMetrics) -> {(case, slice): {column: value}}."""
    with open(out / "metrics.csv", newline="") as f:
        return {(r["case"], r["slice"]): {k: float(r[k]) for k, _, _ in COLS} for r in csv.DictReader(f)}


def paired_bootstrap(a: dict, b: dict, key: str, n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired difference ``mean(a) − mean(b)`` of column ``key`` over the slices both rows scored (NaNs dropped), and
    its 95% interval from resampling whole cases with replacement (slices of one case are not independent).
    ``p_above`` = the fraction of resamples with a positive difference. a, b: :func:`per_slice` dicts."""
    diffs: dict[str, list[float]] = {}
    for k in sorted(set(a) & set(b)):
        d = a[k][key] - b[k][key]
        if np.isfinite(d):
            diffs.setdefault(k[0], []).append(d)
    if not diffs:
        return {"delta": float("nan"), "low": float("nan"), "high": float("nan"), "p_above": float("nan"),
                "cases": 0, "slices": 0}
    sums = np.array([sum(v) for v in diffs.values()])
    counts = np.array([len(v) for v in diffs.values()])
    draw = np.random.default_rng(seed).integers(0, len(sums), size=(n_boot, len(sums)))
    means = sums[draw].sum(1) / counts[draw].sum(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"delta": float(sums.sum() / counts.sum()), "low": float(low), "high": float(high),
            "p_above": float((means > 0).mean()), "cases": len(sums), "slices": int(counts.sum())}


def paired_table(results: dict[str, dict[str, dict]], labels: dict[str, str], out_dir: Path) -> str:
    """CMRDiff minus the best competitor of each column (the highest mean over slices among COMPETITORS), paired
    over slices, with a case-resampling 95% interval: how many of the table's wins and losses are resolved."""
    comp = [k for k in COMPETITORS if results.get(k)]
    if not results.get("cmrdiff") or not comp:
        return ""
    lines = ["| task | column | best competitor | CMRDiff − competitor | 95% interval (cases resampled) | "
             "resamples > 0 | cases / slices |", "|---|---|---|---|---|---|---|"]
    for t in TASKS:
        rows = {}  # each method's metrics.csv read once per task, though it may be the best in several columns
        for k, name, digits in COLS:
            best = max(comp, key=lambda m: results[m][t]["over_slices"][k]["mean"])
            for m in ("cmrdiff", best):
                rows.setdefault(m, per_slice(out_dir / m / t))
            r = paired_bootstrap(rows["cmrdiff"], rows[best], k)
            lines.append(f"| {t} | {name} | {labels[best].split(' (')[0]} | {r['delta']:+.{digits}f} | "
                         f"[{r['low']:+.{digits}f}, {r['high']:+.{digits}f}] | {r['p_above']:.0%} | "
                         f"{r['cases']} / {r['slices']} |")
    return "\n".join(lines)


# the clinical/realism columns (bundle/clinical.py, docs/clinical_metrics.md): (label, key in summary["clinical"]
# ["over_slices"], digits); lesion columns only for the lge and t2 read-outs
CLIN_LESION = (("CR rel. error", "cr_rel_error", 2), ("Dice n-SD synth", "dice_nsd_synth", 2),
               ("Dice n-SD real", "dice_nsd_real", 2), ("Dice FWHM synth", "dice_fwhm_synth", 2),
               ("Dice FWHM real", "dice_fwhm_real", 2))
CLIN_REALISM = (("HF power ratio", "hf_ratio", 2), ("gradient ratio", "grad_ratio", 2),
                ("uncertainty ρ", "unc_spearman", 2))


def realism_table(results: dict[str, dict[str, dict]], labels: dict[str, str]) -> str:
    """Per method and task: C2ST accuracy (real vs synthetic patches; 0.5 = indistinguishable), high-frequency power
    ratio and gradient ratio (synthetic / real; 1 = as sharp as the scan), then the C2ST controls of each task."""
    head = [f"{t} {c}" for t in TASKS for c in ("C2ST", "HF ratio", "grad ratio")]
    out = ["| method | " + " | ".join(head) + " |", "|---" * (1 + len(head)) + "|"]
    controls: dict[str, dict] = {}
    for k, r in results.items():
        if not any(r.get(t) for t in TASKS):
            continue
        cells = []
        for t in TASKS:
            s = r.get(t) or {}
            real, o = s.get("realism") or {}, (s.get("clinical") or {}).get("over_slices", {})
            acc = (real.get("c2st") or {}).get("accuracy", float("nan"))
            cells += [f"{acc:.2f}"] + [f"{o[c]['mean']:.2f}" if o.get(c) and o[c]["n"] else "–"
                                       for c in ("hf_ratio", "grad_ratio")]
            if real and t not in controls:
                controls[t] = real
        out.append(f"| {labels[k]} | " + " | ".join(cells) + " |")
    if len(out) == 2:
        return ""
    ctl = "; ".join(f"{t}: real vs real {c['control_real']['accuracy']:.2f}, real vs blurred (σ "
                    f"{c['recipe']['blur_sigma']} px) {c['control_blur']['accuracy']:.2f}"
                    for t, c in controls.items())
    return ("\n".join(out) + f"\n\nC2ST controls on the same slices ({ctl}).").replace("nan", "–")


def clinical_tables(results: dict[str, dict[str, dict]], labels: dict[str, str]) -> str:
    """Per task: the lesion read-out (lge, t2) and realism columns of every evaluated method, mean over slices."""
    out = []
    for t in TASKS:
        rows = {k: r[t]["clinical"] for k, r in results.items() if r.get(t) and "clinical" in r[t]}
        if not rows:
            continue
        first = next(iter(rows.values()))
        lesion = first.get("readout") is not None
        cols = (CLIN_LESION if lesion else ()) + CLIN_REALISM
        head = [c for c, _, _ in cols] + (["burden R n-SD", "burden bias n-SD [LoA] (%)", "burden R FWHM"]
                                          if lesion else [])
        what = (f"{first['readout']} read-out, lesion labels {first.get('lesion_labels')}, "
                f"{first.get('slices_with_lesion')} slices with lesion / {first.get('slices_without_lesion')} without"
                if lesion else "no lesion read-out for bSSFP")
        out += [f"**{t}** ({what}):", "", "| method | " + " | ".join(head) + " |", "|---" * (1 + len(head)) + "|"]
        for k, c in rows.items():
            o = c["over_slices"]
            cells = [f"{o[key]['mean']:.{d}f}" if o.get(key) and o[key]["n"] else "–" for _, key, d in cols]
            if lesion:
                ba, bf = c["burden_agreement"]["nsd"], c["burden_agreement"]["fwhm"]
                cells += [f"{ba['r']:.2f}", f"{ba['bias']:+.1f} [{ba['loa_low']:+.1f}, {ba['loa_high']:+.1f}]",
                          f"{bf['r']:.2f}"]
            out.append(f"| {labels[k]} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).replace("nan", "–")


def autoencoder_scores(args) -> dict:
    """Stage-1 reconstruction PSNR/SSIM per sequence on the split (configs/inference_autoencoder.yaml)."""
    out = args.output_dir / "autoencoder"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
           str(["configs/common.yaml", "configs/inference_autoencoder.yaml"]), "--dataset_dir", str(args.dataset_dir),
           "--split", args.split, "--output_dir", str(out), "--profile", args.profile]
    ae = ROOT / "models" / f"autoencoder_{args.profile}.pt"
    done = all((out / f"{s}_summary.json").is_file() and (out / f"{s}_summary.json").stat().st_mtime > ae.stat().st_mtime
               for s in ("C0", "DE", "T2"))
    if not done or args.force:
        print("$", " ".join(cmd[1:]), flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: autoencoder evaluation failed:\n{proc.stderr[-3000:]}")
    return {s: json.loads((out / f"{s}_summary.json").read_text())["over_slices"] for s in ("C0", "DE", "T2")}


def utility(args, keys: list[str]) -> str:
    """The downstream-utility table (issue 34; configs/evaluate_utility.yaml) over the methods just evaluated whose
    syntheses are under output_dir (each method's own `_synth` files), with the shipped segmenters; '' when the
    segmenters are absent (scripts/train_segmenters.sh)."""
    seg = ROOT / "models" / f"segmenter_{args.profile}_C0_DE_T2.pt"
    if args.split == "tune" or not seg.is_file():
        print(f"utility: no segmenter {seg} (scripts/train_segmenters.sh) or a tuning-fold run - not evaluated")
        return ""
    out = args.output_dir / "utility"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
           str(["configs/common.yaml", "configs/train_segmenter.yaml", "configs/evaluate_utility.yaml"]),
           "--dataset_dir", str(args.dataset_dir), "--split", args.split, "--profile", args.profile,
           "--results_dir", str(args.output_dir), "--utility_methods", str(keys), "--output_dir", str(out)]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: the utility evaluation failed:\n{proc.stderr[-3000:]}")
    return (out / "utility.md").read_text().strip()


def write_metadata(path: Path, cmrdiff: dict[str, dict], ae: dict[str, dict], row_label: str, split: str) -> None:
    """configs/metadata.json ``eval_metrics`` from the CMRDiff row and the stage-1 scores, and the networks' data
    formats from the configs (never typed by hand)."""
    meta = json.loads(path.read_text())
    em: dict = {"note": f"MyoPS 2020 {split} split, 256x256 FOV, mean over slices; generated by `make results` "
                        f"(scripts/results.py); synthesis row: {row_label.replace('**', '')}"}
    for t in TASKS:
        o = cmrdiff[t]["over_slices"]
        em.update({f"{k}_{t}": round(o[k]["mean"], 3 if "ssim" in k else 2) for k, _, _ in COLS})
    em.update({f"autoencoder_psnr_{s}": round(ae[s]["psnr"]["mean"], 2) for s in ae})
    em.update({f"autoencoder_ssim_{s}": round(ae[s]["ssim"]["mean"], 3) for s in ae})
    meta["eval_metrics"] = em
    meta.update(data_formats())  # channel counts and definitions from the configs (bundle/metadata.py)
    path.write_text(json.dumps(meta, indent=4, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", type=Path, default=Path(os.environ.get("MYOPS_DIR", ROOT.parent / "shared/data/myops2020")))
    ap.add_argument("--split", default="validation", choices=["validation", "tune"])
    ap.add_argument("--output_dir", type=Path, default=None, help="default output/results (output/results_tune)")
    ap.add_argument("--baselines_dir", type=Path, default=None, help="default output/baselines (output/tune/baselines)")
    ap.add_argument("--myops_only_dir", type=Path, default=None, help="the baselines trained on the MyoPS cases alone "
                    "(rows *_myops): default output/baselines_myops (output/tune/baselines_myops)")
    ap.add_argument("--set", nargs="*", default=[], help="extra overrides key=value for every CMRDiff row "
                    "(e.g. models_dir=output/tune/models guide_weights=...)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--only", nargs="*", choices=sorted(METHODS), help="evaluate only these methods")
    ap.add_argument("--force", action="store_true", help="rerun evaluations even when a newer summary exists")
    ap.add_argument("--no_eval", action="store_true", help="tabulate the summaries already under output_dir (each "
                    "row's command.txt names the command that wrote it) without evaluating; never written into the docs")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args()
    tune = args.split == "tune"
    args.output_dir = args.output_dir or ROOT / "output" / ("results_tune" if tune else "results")
    args.baselines_dir = args.baselines_dir or ROOT / "output" / ("tune/baselines" if tune else "baselines")
    args.myops_only_dir = args.myops_only_dir or ROOT / "output" / ("tune/baselines_myops" if tune else "baselines_myops")
    if not (args.dataset_dir / ("train25" if tune else "test20")).is_dir():
        raise SystemExit(f"error: {args.dataset_dir} has no {'train25' if tune else 'test20'}/ folder (the {args.split} "
                         "split); pass --dataset_dir or set MYOPS_DIR")
    results: dict[str, dict[str, dict]] = {}
    labels = {key: label(key, setargs(args)) for key in (args.only or METHODS)}
    for key in args.only or METHODS:
        missing = [w for w in weights_of(key, args) if not w.is_file()]
        if missing:
            print(f"{key}: no weights at {missing[0]} (scripts/train_baselines.sh {key}) - listed as not trained")
            results[key] = {}
            continue
        if args.no_eval:
            found = {t: args.output_dir / key / t / "summary.json" for t in TASKS}
            results[key] = {t: json.loads(f.read_text()) for t, f in found.items() if f.is_file()}
            continue
        results[key] = {t: evaluate(key, t, args, args.output_dir / key / t) for t in TASKS}
    md = table(results, labels)
    clin = clinical_tables(results, labels)
    realism = realism_table(results, labels)
    paired = paired_table(results, labels, args.output_dir)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    util = utility(args, [k for k, r in results.items() if r and k in METHODS and not k.endswith("_texture")])
    for name, text in (("table", md), ("clinical", clin), ("realism", realism), ("paired", paired), ("utility", util)):
        (args.output_dir / f"{name}.md").write_text(text + "\n")
    for text in (md, clin, realism, paired, util):
        print(text)
    if args.only and not tune or args.no_eval or str(args.doc) == os.devnull:
        return  # a partial validation table is not written into the docs (the tuning-fold table may be partial)
    doc = args.doc.read_text()
    blocks = (("tune", md), ("clinical_tune", clin), ("realism_tune", realism), ("paired_tune", paired)) if tune else \
        (("results", md), ("clinical", clin), ("realism", realism), ("paired", paired), ("utility", util))
    for marker, text in blocks:
        if not text:
            continue
        block = f"<!-- {marker}:begin -->\n{text}\n<!-- {marker}:end -->"
        if f"<!-- {marker}:begin -->" not in doc:
            raise SystemExit(f"error: {args.doc} has no <!-- {marker}:begin --> / <!-- {marker}:end --> markers")
        doc = re.sub(rf"<!-- {marker}:begin -->.*?<!-- {marker}:end -->", lambda _: block, doc, flags=re.S)
    args.doc.write_text(doc)
    print("wrote the table into", args.doc)
    if not tune and results.get("cmrdiff"):
        write_metadata(ROOT / "configs" / "metadata.json", results["cmrdiff"], autoencoder_scores(args),
                       labels["cmrdiff"], args.split)
        print("wrote eval_metrics into configs/metadata.json")


if __name__ == "__main__":
    main()

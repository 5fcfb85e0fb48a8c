"""Training benchmark: slices per second and peak memory (RSS) of the bundle's own trainers, built from the
workflow configs (cpu profile) on the embedded phantom, each in a fresh process so its peak RSS is its own.

    PYTHONPATH=. .venv/bin/python bench/bench_training.py [--iterations 12] [--warmup 3] [--which vae diffusion unet_l1]

`diffusion_batch_augment` is the diffusion trainer with the latent flips and rot90 drawn for the whole batch in the
prepare batch instead of per slice in the DataLoader: same network, batch and iterations (equal work).
"slices/s" counts the training samples of one iteration: single-sequence 128x128 slices for the VAE (it trains on
each sequence separately), 3-sequence latent slices for the diffusion UNet, 3-sequence slices for unet_l1.
Prints a markdown table (the caller, bench/run_all.py, writes it into bench/results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = {
    "vae": ("VAE-GAN (AutoencoderKL + PatchDiscriminator, AdversarialTrainer)", ["configs/train_autoencoder.yaml"]),
    "diffusion": ("diffusion UNet (CMRDiff, SupervisedTrainer, heatmap loss)", ["configs/train_diffusion.yaml"]),
    "diffusion_batch_augment": ("the same, latent flips drawn per batch (`latent_augment_mode batch`)",
                                ["configs/train_diffusion.yaml"], {"latent_augment_mode": "batch"}),
    "unet_l1": ("unet_l1 baseline (BasicUNet, SupervisedTrainer)",
                ["configs/baselines/image.yaml", "configs/baselines/unet_l1.yaml"]),
}


def child(which: str, iterations: int, warmup: int, data: str) -> dict:
    """Runs in the subprocess: build the workflow's trainer from its configs and time ``iterations`` iterations
    after ``warmup`` ones."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    from bundle.phantom import make_phantom_dataset

    p = ConfigParser()
    p.read_config([str(ROOT / "configs/common.yaml")] + [str(ROOT / f) for f in WORKFLOWS[which][1]])
    p.update(WORKFLOWS[which][2] if len(WORKFLOWS[which]) > 2 else {})
    out = tempfile.mkdtemp(prefix="cmrdiff_bench_")
    p.update({"bundle_root": str(ROOT), "profile": "cpu", "output_dir": out, "dataset_dir": str(make_phantom_dataset(data)),
              "max_epochs": 1000, "val_interval": 10**6})
    if which == "unet_l1":
        p["task"] = "any"
    p.parse()
    p.get_parsed_content("initialize")  # the workflow's own steps (knob checks, determinism, weight loading)
    trainer = p.get_parsed_content("train#trainer")
    batch = p.get_parsed_content("batch_size")
    stamps: list[float] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _tick(engine):
        stamps.append(time.perf_counter())
        if len(stamps) > warmup + iterations:
            engine.terminate()

    trainer.run()
    dt = stamps[-1] - stamps[warmup]
    n = len(stamps) - 1 - warmup
    return {"which": which, "batch": batch, "iterations": n, "s_per_it": dt / n, "slices_per_s": n * batch / dt,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--which", nargs="+", default=list(WORKFLOWS), choices=list(WORKFLOWS))
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "cmrdiff_bench_phantom"))
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.iterations, args.warmup, args.data)), flush=True)
        return
    lines = ["| trainer | batch | s / iteration | slices / s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    rates: dict[str, float] = {}
    for which in args.which:
        cmd = [sys.executable, __file__, "--child", which, "--iterations", str(args.iterations),
               "--warmup", str(args.warmup), "--data", args.data]
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
        res = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not res:
            raise SystemExit(f"error: training benchmark {which} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(res[-1][7:])
        rates[which] = r["slices_per_s"]
        lines.append(f"| {WORKFLOWS[which][0]} | {r['batch']} | {r['s_per_it']:.3f} | {r['slices_per_s']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} |")
        print(lines[-1], flush=True)
    if {"diffusion", "diffusion_batch_augment"} <= rates.keys():
        lines.append(f"\nlatent flips per batch against per slice (equal work, this run): "
                     f"{rates['diffusion_batch_augment'] / rates['diffusion']:.2f}x the slices per second")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

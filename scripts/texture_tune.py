"""Choose the scanner texture's amplitude on the tuning fold (never on validation): fit ``bundle.texture`` on
``train_tune`` with the shipped autoencoder, draw it onto the autoencoder's reconstruction of every ``tune`` slice
(what a perfect diffusion sample would decode to) and score it against the real slice with the frozen realism
recipe (C2ST, high-frequency and gradient ratios) and PSNR, for each amplitude; prints one line per (sequence,
amplitude). Amplitude 0 = the reconstruction alone.

    PYTHONPATH=. .venv/bin/python scripts/texture_tune.py --amplitudes 0 0.5 0.7 0.85 1.0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bundle import clinical as C  # noqa: E402
from bundle import realism as R  # noqa: E402
from bundle.data import SEQUENCES, build_slices, discover_cases, map_fov_slices  # noqa: E402
from bundle.texture import ScannerTexture, fit_texture  # noqa: E402
from bundle.weights import load_autoencoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", default=os.environ.get("MYOPS_DIR", str(ROOT.parent / "shared/data/myops2020")))
    ap.add_argument("--amplitudes", nargs="+", type=float, default=[0.0, 0.5, 0.7, 0.85, 1.0])
    ap.add_argument("--sequences", nargs="+", default=list(SEQUENCES), choices=SEQUENCES)
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config(str(ROOT / "configs/common.yaml"))
    p.update({"dataset_dir": args.dataset_dir, "profile": args.profile, "bundle_root": str(ROOT)})
    ae = p.get_parsed_content("autoencoder")
    load_autoencoder(ae, p.get_parsed_content("autoencoder_path"))
    size, vt = p.get_parsed_content("image_size"), p.get_parsed_content("volume_transforms")

    def split(name: str) -> list[dict]:
        cases = discover_cases(args.dataset_dir, name, p["validation_ids"], tuning_ids=p["tuning_ids"])
        return build_slices(cases, vt, None, progress=False)

    train, tune = split("train_tune"), split("tune")
    base = fit_texture(ScannerTexture(), train, ae, size, progress=None)
    with torch.no_grad():
        x = torch.stack([torch.as_tensor(np.asarray(s["image"], dtype=np.float32)) for s in tune])  # (n, 3, X, Y)
        recon = map_fov_slices(lambda z: (ae(z)[0],), x.reshape(-1, 1, *x.shape[2:])[..., None], size)[0]
        recon = recon[..., 0].clamp(0, 1).reshape(x.shape)
    groups = [s["case"] for s in tune]
    for seq in args.sequences:
        c = SEQUENCES.index(seq)
        real = x[:, c].numpy()
        for amp in args.amplitudes:
            tex = ScannerTexture()
            tex.kernels.copy_(base.kernels * amp)
            synth = tex(recon[:, c : c + 1], seq, torch.Generator().manual_seed(0))[:, 0].numpy()
            rng = np.random.default_rng(0)
            a, b = [], []
            for r, s in zip(real, synth):
                body = R.body_mask(r)
                a.append(R.sample_patches(r, R.patch_centres(body, R.PER_SLICE, rng)))
                b.append(R.sample_patches(s, R.patch_centres(body, R.PER_SLICE, rng)))
            g = [k for k in groups for _ in range(R.PER_SLICE)]
            t = time.time()
            acc = R.c2st(np.concatenate(a), g, np.concatenate(b), g)["accuracy"]
            psnr = np.mean([10 * np.log10(1 / np.mean((r - s) ** 2)) for r, s in zip(real, synth)])
            hf = np.mean([C.hf_power_ratio(s, r) for r, s in zip(real, synth)])
            gr = np.mean([C.gradient_ratio(s, r) for r, s in zip(real, synth)])
            print(f"{seq} amplitude {amp:.2f}: C2ST {acc:.3f} PSNR {psnr:.2f} HF ratio {hf:.3f} grad ratio {gr:.3f} "
                  f"({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

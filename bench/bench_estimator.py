"""The default synthesis with each estimator (configs/inference.yaml's knobs: regression guide, residual, strength
0.2, N 16 over 8 views, c_I1 = c_I2 = 6, DeepCache k 2), cpu profile, random weights (speed does not depend on them):
``estimator: sample`` (each sample runs its int(50·0.2) = 10 DDIM steps) against ``estimator: x0`` (the first step's
clean-latent estimate: one network call), the same slices, samples and views, measured side by side in one run.

    PYTHONPATH=. .venv/bin/python bench/bench_estimator.py [--slices 1 4] [--out bench/results.md]

Prints a markdown table and writes it into its own marked section of bench/results.md (kept by bench/run_all.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from bench_sampling import timed
from bundle.sampler import CMRDiffSampler
from monailabel_load import write_section

ROOT = Path(__file__).resolve().parents[1]
KNOBS = ("num_inference_steps", "guidance_scale_1", "guidance_scale_2", "strength", "num_samples", "cache_interval",
         "views", "residual")


def build():
    p = ConfigParser()
    p.read_config([str(ROOT / "configs/common.yaml"), str(ROOT / "configs/inference.yaml")])
    p.update({"profile": "cpu", "output_dir": "/tmp/cmrdiff_bench", "device": "$torch.device('cpu')"})
    torch.manual_seed(0)
    net = p.get_parsed_content("network_def").eval()
    ae = p.get_parsed_content("autoencoder_def").eval()
    guide = p.get_parsed_content("generator_def").eval()
    knobs = {k: p.get_parsed_content(k) for k in KNOBS}
    return p, net, ae, guide, knobs


def table(slices: list[int]) -> list[str]:
    p, net, ae, guide, knobs = build()
    calls = {}

    def sampler(estimator: str) -> CMRDiffSampler:
        return CMRDiffSampler(scheduler=p.get_parsed_content("ddim_scheduler"), autoencoder=ae, scale_factor=1.0,
                              task="lge", tasks=p.get_parsed_content("tasks"), guide="regression", guide_network=guide,
                              seed=0, progress=False, estimator=estimator, **knobs)

    def count(m, a, o):
        calls["n"] += 1

    h = net.unet.conv_in.register_forward_hook(count)  # every step, whole or DeepCache-shallow, runs conv_in
    rows = ["| slices | estimator sample (s) | UNet calls | estimator x0 (s) | UNet calls | speed-up |", "|---|---|---|---|---|---|"]
    try:
        for b in slices:
            x = torch.rand(b, 3, 128, 128, generator=torch.Generator().manual_seed(b))
            res = {}
            for est in ("sample", "x0"):
                s = sampler(est)
                calls["n"] = 0
                with torch.inference_mode():
                    s.pipeline(x, net)
                n = calls["n"]
                res[est] = (timed(s.pipeline, x, net), n)
            rows.append(f"| {b} | {res['sample'][0]:.2f} | {res['sample'][1]} | {res['x0'][0]:.2f} | {res['x0'][1]} | "
                        f"{res['sample'][0] / res['x0'][0]:.2f}× |")
    finally:
        h.remove()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.md")
    a = ap.parse_args()
    rows = table(a.slices)
    block = ("<!-- estimator:begin -->\n## The default synthesis: estimator sample vs x0\n\n"
             f"`bench/bench_estimator.py` on {time.strftime('%Y-%m-%d')}, torch {torch.__version__} with "
             f"{torch.get_num_threads()} threads: one call of the sampler at configs/inference.yaml's defaults "
             "(N 16 over 8 views, strength 0.2, DeepCache k 2, the regression guide) on 128x128 slices, best of 3 "
             "after a warm-up, both estimators in this run. UNet calls = batched forward passes of the denoiser "
             "(the DeepCache shallow steps included).\n\n" + "\n".join(rows) + "\n<!-- estimator:end -->")
    write_section(a.out, block + "\n", "<!-- estimator:begin -->", "<!-- estimator:end -->")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

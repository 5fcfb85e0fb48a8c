"""All benchmarks in one run (`make bench`): sampling (naive loop vs the CMRDiff sampler at equal work, cost vs
steps, slices and image size, UNet GFLOP/s vs matmul rate) and training (slices/s and peak RSS of the VAE, diffusion
and unet_l1 trainers). Prints the tables and writes bench/results.md.

    PYTHONPATH=. .venv/bin/python bench/run_all.py [--out bench/results.md]

Run it on an otherwise idle machine: a second process on a 2-core CPU slows these timings by up to 100x.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sampling import sampling_table  # noqa: E402
from bench_training import WORKFLOWS  # noqa: E402

HEADER = """# Benchmarks

Written by `PYTHONPATH=. .venv/bin/python bench/run_all.py` (`make bench`) on {when}: {machine}, {cores} CPU cores,
torch {torch} with {threads} threads, cpu profile, random weights for sampling (speed does not depend on them).
Each sampling time is the best of 3 runs after one warm-up run (16 slices: one run), so that other work on the
machine disturbs it least.
"naive loop" = per slice, per DDIM step, three separate UNet calls (one per guidance branch), the condition encoder
re-run inside each call, `torch.no_grad`. "CMRDiff sampler" = `bundle/sampler.py`: condition latents and tokens
computed once, the three branches and all slices in one batched forward per step, `torch.inference_mode`.
"DeepCache k" = the same sampler with `cache_interval: k` (`bundle/deepcache.py`): the whole UNet every k-th step,
the full-resolution blocks alone in between, reusing the deep features (its quality cost: docs/results.md).
All at the same number of DDIM steps, slices and image size, side by side in this run.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.md")
    args = ap.parse_args()
    import subprocess

    head = HEADER.format(when=time.strftime("%Y-%m-%d"), machine=platform.machine(), cores=os.cpu_count(),
                         torch=torch.__version__, threads=torch.get_num_threads())
    sampling = sampling_table()
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_training.py"))], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    training = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    training = training[len(training) - len(WORKFLOWS) - 2 :]  # the final table
    comp = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_compile.py"))], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    compile_line = next((ln for ln in comp.stdout.splitlines() if ln.startswith("threads")), "failed: " + comp.stderr[-500:])
    text = (head + "\n## Sampling\n\n" + "\n".join(sampling) + "\n\n"
            "Opt-in `compile: true` of the sampler (`bench/bench_compile.py`, one 128x128 slice, 50 steps, single runs): "
            + compile_line + "\n\n## Training\n\n"
            "Trainers built from the workflow configs (cpu profile) on the phantom, one process each "
            "(`bench/bench_training.py`); slices/s after 3 warm-up iterations, peak RSS of that process.\n\n"
            + "\n".join(training) + "\n")
    # sections written by other benchmarks between their own markers (e.g. bench/monailabel_load.py) are kept
    if args.out.is_file():
        kept = re.findall(r"\n?<!-- (\w+):begin -->.*?<!-- \1:end -->\n?", args.out.read_text(), flags=re.S)
        for name in kept:
            block = re.search(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", args.out.read_text(), flags=re.S)
            text += "\n" + block.group(0) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

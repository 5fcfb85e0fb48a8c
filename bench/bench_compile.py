"""What torch.compile and channels-last would add to the batched sampler (one 128x128 slice, 50 DDIM steps, cpu
profile, random weights), against the naive loop, measured side by side in one process:

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/bench_compile.py

`compile` is an opt-in knob of the sampler (`--compile true`); channels-last is not used. Numbers and the reasons:
docs/results.md (Speed and memory).
"""

import time

import torch
import torch._inductor.config as inductor_config
from bench_sampling import TASKS, build, naive, scheduler

from bundle.sampler import CMRDiffSampler


def main() -> None:
    inductor_config.freezing = True  # constant-fold the weights (inference only)
    net, ae = build("cpu")
    x = torch.rand(1, 3, 128, 128)

    def ours(n):
        return CMRDiffSampler(scheduler(), ae, 1.0, "lge", TASKS, num_inference_steps=50, progress=False)(x, n)

    def timed(fn, *a):
        t = time.perf_counter()
        fn(*a)
        return time.perf_counter() - t

    timed(naive, x, net, ae, 50)
    tn = timed(naive, x, net, ae, 50)
    timed(ours, net)
    to = timed(ours, net)
    compiled = torch.compile(net, dynamic=False)
    first = timed(ours, compiled)
    tc = timed(ours, compiled)
    tcl = timed(ours, net.to(memory_format=torch.channels_last))
    print(f"threads {torch.get_num_threads()}: naive {tn:.2f} s | batched {to:.2f} s ({tn / to:.2f}x) | "
          f"+ torch.compile {tc:.2f} s ({tn / tc:.2f}x; first call incl. compile {first:.1f} s) | "
          f"+ channels-last {tcl:.2f} s ({tn / tcl:.2f}x)")


if __name__ == "__main__":
    main()

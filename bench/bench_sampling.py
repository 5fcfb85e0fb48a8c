"""Sampling benchmark (cpu profile, 128x128 slices, two-scale CFG): the bundle's batched sampler vs the
straightforward loop (three UNet calls per step, one slice at a time, condition encoder re-run each call),
at the same number of DDIM steps, measured side by side in one run, also with DeepCache (``cache_interval`` k: the
whole UNet every k-th step only); plus the UNet's achieved GFLOP/s against this machine's float32 matrix-multiply
rate.

    PYTHONPATH=. .venv/bin/python bench/bench_sampling.py [--steps 10 25 50] [--slices 1 4 16] [--sizes 128 256]
        [--cache 2 3]
Prints a markdown table (bench/run_all.py writes it into bench/results.md).
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.bundle import ConfigParser
from monai.networks.schedulers import DDIMScheduler

from bundle.sampler import CMRDiffSampler

TASKS = {"lge": {"target": "DE", "conditions": ["C0", "T2"]}, "t2": {"target": "T2", "conditions": ["C0", "DE"]},
         "bssfp": {"target": "C0", "conditions": ["T2", "DE"]}}


def build(profile: str = "cpu"):
    p = ConfigParser()
    p.read_config("configs/common.yaml")
    p.update({"profile": profile, "output_dir": "/tmp/cmrdiff_bench"})
    torch.manual_seed(0)
    return p.get_parsed_content("network_def").eval(), p.get_parsed_content("autoencoder_def").eval()


def scheduler():
    return DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0195,
                         clip_sample=False)


@torch.no_grad()
def naive(images, net, ae, steps: int, s1=1.5, s2=1.5, scale=1.0):
    """The straightforward loop: per slice, per step, three separate UNet calls."""
    sch = scheduler()
    sch.set_timesteps(steps)
    outs = []
    for img in images.split(1):
        mu = ae.encode(img.reshape(3, 1, *img.shape[2:]))[0] * scale  # (3, lc, h, w)
        lc, h, w = mu.shape[1:]
        z = torch.randn(1, lc, h, w)
        branches = []
        for k1, k2 in ((True, True), (True, False), (False, False)):
            keep = torch.tensor([[k1, False, k2]])  # lge: c1 = C0 (slot 0), c2 = T2 (slot 2)
            cond = (mu.unsqueeze(0) * keep.view(1, 3, 1, 1, 1)).reshape(1, 3 * lc, h, w)
            branches.append((cond, keep))
        for t in sch.timesteps:
            tt = torch.tensor([int(t)])
            e = [net(torch.cat([z, c], 1), tt, class_labels=torch.tensor([1]), images=img, keep=k) for c, k in branches]
            eps = e[2] + s1 * (e[1] - e[2]) + s2 * (e[0] - e[1])
            z, _ = sch.step(eps, int(t), z)
        outs.append(ae.decode_stage_2_outputs(z / scale))
    return torch.cat(outs)


def ours(images, net, ae, steps: int, cache_interval: int = 1):
    s = CMRDiffSampler(scheduler(), ae, 1.0, "lge", TASKS, num_inference_steps=steps, progress=False,
                       cache_interval=cache_interval)
    return s(images, net)


def timed(fn, *a, repeat: int = 3) -> float:
    """Best of ``repeat`` runs after one warm-up run (the least disturbed by other work on a 2-core machine)."""
    fn(*a)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*a)
        best = min(best, time.perf_counter() - t)
    return best


def unet_gflop(net, size: int, batch: int = 3) -> float:
    """FLOPs of one batched UNet forward (3 CFG rows), counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    lat = size // 4
    x = torch.randn(batch, net.unet.in_channels, lat, lat)
    ctx = net.context(torch.rand(batch, 3, size, size), torch.ones(batch, 3, dtype=torch.bool))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x, torch.zeros(batch, dtype=torch.long), context=ctx, class_labels=torch.ones(batch, dtype=torch.long))
    return fc.get_total_flops() / 1e9


def matmul_gflops(n: int = 1024, repeat: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e9


def sampling_table(steps_list=(10, 25, 50), slices_list=(1, 4, 16), sizes=(128, 256),
                   caches=(2, 3)) -> list[str]:
    """Markdown lines: naive loop vs the CMRDiff sampler (plain, then DeepCache with each interval in ``caches``)
    at equal steps, then cost vs slices and image size."""
    net, ae = build("cpu")
    extra = "".join(f" DeepCache k={k} (s) | speed-up |" for k in caches)
    lines = ["| what | steps | slices | size | naive loop (s) | CMRDiff sampler (s) | s per slice | speed-up |" + extra,
             "|---|---|---|---|---|---|---|---|" + "---|---|" * len(caches)]

    def row(what, steps, n, size, repeat, with_naive=True):
        x = torch.rand(n, 3, size, size)
        tn = timed(naive, x, net, ae, steps, repeat=repeat) if with_naive else float("nan")
        to = timed(ours, x, net, ae, steps, repeat=repeat)
        ratio = (lambda t: f"{tn / t:.2f}x" if tn == tn else "-")
        cells = "".join(f" {tc:.2f} | {ratio(tc)} |" for tc in
                        (timed(ours, x, net, ae, steps, k, repeat=repeat) for k in caches))
        tn_s = f"{tn:.2f}" if tn == tn else "-"
        lines.append(f"| {what} | {steps} | {n} | {size} | {tn_s} | {to:.2f} | {to / n:.2f} | {ratio(to)} |" + cells)
        print(lines[-1], flush=True)

    for steps in steps_list:
        row("1 slice", steps, 1, 128, 3)
    for n in slices_list:
        row("volume", 50, n, 128, 3 if n <= 4 else 1, with_naive=n <= 4)
    for size in sizes:
        row("image size", 50, 1, size, 3, with_naive=False)
    gf = unet_gflop(net, 128)
    x = torch.rand(1, 3, 128, 128)
    net_t = timed(lambda: net(torch.randn(3, net.unet.in_channels, 32, 32), torch.zeros(3, dtype=torch.long),
                              context=net.context(x.repeat(3, 1, 1, 1), torch.ones(3, 3, dtype=torch.bool)),
                              class_labels=torch.ones(3, dtype=torch.long)), repeat=20)
    mm = matmul_gflops()
    lines += ["", f"UNet forward (3 CFG rows, 32x32 latent): {gf:.2f} GFLOP in {net_t * 1e3:.1f} ms = "
              f"{gf / net_t:.1f} GFLOP/s; float32 1024^3 matmul: {mm:.1f} GFLOP/s "
              f"({100 * gf / net_t / mm:.0f}% of it)."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--slices", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--cache", type=int, nargs="*", default=[2, 3], help="DeepCache intervals to time too")
    args = ap.parse_args()
    print("\n".join(sampling_table(args.steps, args.slices, args.sizes, args.cache)))


if __name__ == "__main__":
    main()

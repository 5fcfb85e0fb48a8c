"""CPU seconds per VAE-GAN training iteration for the architectures of the stage-1 recipe sweep (docs/results.md):
AutoencoderKL forward/backward/step with L1 + a 0.05 PatchGAN term, then a discriminator step, at 128x128, batch 16,
on random images; best of the last 4 of 6 iterations. Epochs x iterations x this gives each recipe's CPU budget.

    PYTHONPATH=. .venv/bin/python bench/bench_vae_recipes.py
"""

from __future__ import annotations

import time

import torch
from monai.networks.nets import AutoencoderKL, PatchDiscriminator


def seconds_per_iteration(channels, latent_channels: int, num_res_blocks: int, batch: int = 16) -> float:
    torch.manual_seed(0)
    ae = AutoencoderKL(spatial_dims=2, in_channels=1, out_channels=1, channels=channels,
                       latent_channels=latent_channels, num_res_blocks=num_res_blocks, norm_num_groups=8,
                       attention_levels=[False] * len(channels), with_encoder_nonlocal_attn=False,
                       with_decoder_nonlocal_attn=False, include_fc=False)
    d = PatchDiscriminator(spatial_dims=2, in_channels=1, out_channels=1, channels=32, num_layers_d=3, norm="INSTANCE")
    og, od = torch.optim.Adam(ae.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    x = torch.rand(batch, 1, 128, 128)
    times = []
    for _ in range(6):
        t = time.perf_counter()
        r, _, _ = ae(x)
        loss = (r - x).abs().mean() + 0.05 * d(r)[-1].mean()
        og.zero_grad()
        loss.backward()
        og.step()
        dl = d(r.detach())[-1].mean() - d(x)[-1].mean()
        od.zero_grad()
        dl.backward()
        od.step()
        times.append(time.perf_counter() - t)
    return min(times[2:])


def main() -> None:
    print("| channels | latent channels | res-blocks | s / iteration of 16 |\n|---|---|---|---|")
    for ch, lat, nrb in (([16, 32, 64], 4, 1), ([16, 32, 64], 8, 1), ([16, 32, 64], 8, 2), ([32, 64, 64], 8, 1)):
        print(f"| {ch} | {lat} | {nrb} | {seconds_per_iteration(ch, lat, nrb):.2f} |", flush=True)


if __name__ == "__main__":
    main()

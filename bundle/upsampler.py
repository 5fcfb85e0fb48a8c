"""The texture upsampler: a stochastic ×2 decoder head from the model's 128² field to the scan's 256² field.

The stage-1 autoencoder of the ``cpu`` profile works at 128² (the 256² field area-downsampled ×2) and its decoder is
an L1 regressor: it returns the mean of ``p(x | z)``, without the scan's fine, noise-like texture, and bicubic
upsampling cannot add any. :class:`TextureUpsampler` is the missing step ``p(x_256 | x_128)``: bicubic upsampling plus
a residual that a small network draws from the upsampled image and a fresh noise map, trained as a GAN (PatchGAN +
L1 + a phase-free spectral term, configs/train_upsampler.yaml) on real slices only: input the autoencoder's
reconstruction of a real slice, degraded by a random blur so that smoother inputs (a synthesis) are covered too;
target the real 256² slice. Each call draws new noise, so one sample carries texture and the mean of many is smooth.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.inferers import Inferer
from monai.networks.layers import GaussianFilter
from torch import nn

from bundle.data import area_resize, bicubic_resize


class TextureUpsampler(nn.Module):
    """(B, 1, h, w) in [0, 1] -> (B, 1, factor·h, factor·w): ``bicubic(x) + net([bicubic(x), noise])``.

    ``net`` is any 2-in, 1-out image network (configs: a MONAI ``BasicUNet``); its last convolution is zeroed, so an
    untrained upsampler is bicubic upsampling. ``generator`` (optional) makes the noise reproducible.
    """

    def __init__(self, net: nn.Module, factor: int = 2) -> None:
        super().__init__()
        self.net, self.factor = net, int(factor)
        last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        up = bicubic_resize(x.float(), (self.factor * h, self.factor * w))
        noise = torch.randn(up.shape, generator=generator, dtype=up.dtype).to(up.device)
        return up + self.net(torch.cat([up, noise], 1))


class DegradedReconstructionInferer(Inferer):
    """Training input of the upsampler: real slices (B, 1, H, W) -> area-downsampled ×factor, reconstructed by the
    frozen ``autoencoder`` (its sampled latent, as in training), each blurred with probability ``blur_prob`` by a
    Gaussian of sigma ~ U(0, ``max_sigma``) pixels -> ``upsampler`` -> (B, 1, H, W). ``max_sigma=0``: no blur."""

    def __init__(self, autoencoder: nn.Module, factor: int = 2, max_sigma: float = 1.0, blur_prob: float = 0.7) -> None:
        super().__init__()
        self.autoencoder, self.factor = autoencoder, int(factor)
        self.max_sigma, self.blur_prob = float(max_sigma), float(blur_prob)

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) real slices -> (B, 1, H/factor, W/factor) blurred reconstructions."""
        h, w = x.shape[-2:]
        small = area_resize(x.float(), (h // self.factor, w // self.factor))
        with torch.no_grad():
            self.autoencoder.eval()
            rec = self.autoencoder(small)[0].clamp(0, 1)
        if self.max_sigma <= 0:
            return rec
        out = []
        for r in rec:
            if float(torch.rand(())) < self.blur_prob:
                sigma = float(torch.rand(())) * self.max_sigma
                if sigma > 0.05:  # reflected border: a zero border would darken the edges
                    pad = int(3 * sigma) + 1
                    padded = torch.nn.functional.pad(r[None], (pad,) * 4, mode="reflect")
                    r = GaussianFilter(2, sigma).to(r.device)(padded)[0, :, pad:-pad, pad:-pad]
            out.append(r)
        return torch.stack(out)

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        return network(self.degrade(inputs))


class TextureLoss(nn.Module):
    """``L1(down(x), down(y)) + spectral_weight · mean | |FFT(x)| − |FFT(y)| |`` (+ ``radial_weight`` · the mean
    absolute difference of :func:`radial_log_power`) on (B, 1, H, W). ``down`` is area
    downsampling by ``l1_factor`` (1: none): with 2 the L1 term holds the content at the input's scale and leaves the
    finer texture, which the input cannot predict, to the spectral and adversarial terms (L1 would average it away).
    The spectral term compares amplitudes only (orthonormal 2D FFT of the mean-subtracted images), so the scan's
    power at each frequency is rewarded whatever its phase."""

    def __init__(self, spectral_weight: float = 1.0, l1_factor: int = 1, radial_weight: float = 0.0,
                 radial_bins: int = 32) -> None:
        super().__init__()
        self.spectral_weight, self.l1_factor = float(spectral_weight), int(l1_factor)
        self.radial_weight, self.radial_bins = float(radial_weight), int(radial_bins)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        f = self.l1_factor
        down = (lambda t: torch.nn.functional.avg_pool2d(t, f)) if f > 1 else (lambda t: t)  # noqa: E731
        loss = torch.nn.functional.l1_loss(down(pred), down(target))
        if self.spectral_weight > 0:
            amp = lambda t: torch.fft.fft2(t - t.mean((-2, -1), keepdim=True), norm="ortho").abs()  # noqa: E731
            loss = loss + self.spectral_weight * (amp(pred) - amp(target)).abs().mean()
        if self.radial_weight > 0:
            loss = loss + self.radial_weight * (radial_log_power(pred, self.radial_bins)
                                                - radial_log_power(target, self.radial_bins)).abs().mean()
        return loss


def radial_log_power(x: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """(B, 1, H, W) -> (B, bins): log of the mean power of the mean-subtracted image's orthonormal 2D FFT in equal
    radial frequency bins from 0 to 0.5 cycles/pixel (the corners beyond are left out). Phase-free and scale-free:
    each band's power counts alike, the faint high frequencies of the scan's texture as much as the strong low ones."""
    h, w = x.shape[-2:]
    power = torch.fft.fft2(x - x.mean((-2, -1), keepdim=True), norm="ortho").abs().pow(2).flatten(1)  # (B, H·W)
    fy, fx = torch.fft.fftfreq(h, device=x.device), torch.fft.fftfreq(w, device=x.device)
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).flatten()
    idx = (r / 0.5 * bins).long()
    keep = idx < bins
    sums = power.new_zeros(power.shape[0], bins).index_add_(1, idx[keep], power[:, keep])
    counts = torch.bincount(idx[keep], minlength=bins).clamp_min(1).to(power.dtype)
    return torch.log(sums / counts + 1e-10)

"""Scanner texture: the part of a scan that the stage-1 autoencoder cannot carry, drawn as colored Gaussian noise.

A VAE decoder is a distribution ``p(x | z)``; showing its mean (the decoded image) drops the scan's fine, noise-like
texture, which carries no anatomy but is what a reader (and the C2ST of ``bundle.realism``) sees first. This module
models the residual ``r = x − decode(encode(x))`` of real training slices (the model's field at ``target_spacing``,
the autoencoder run at the profile's ``image_size`` and resized back as in inference) as a stationary Gaussian field
per sequence, with the median over slices of the residual's power spectrum inside the body (robust to the few
slices whose residual holds misfit anatomy rather than texture): ``r ≈ amplitude · h_s ∗ w``, ``w`` white N(0, 1),
``h_s`` a zero-phase (``kernel_size``²) filter, ``amplitude`` a factor chosen on the tuning fold (fit_texture.yaml). A *sample* output gets ``h_s ∗ w`` added inside its body; the mean
of N samples (the PSNR-optimal estimate) never does. Fitting it is ``configs/fit_texture.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bundle.data import SEQUENCES, map_fov_slices
from bundle.errors import ConfigError, flag
from bundle.realism import BODY_FRACTION


def wanted(texture: str | bool, path: str | Path) -> bool:
    """The inference knob ``texture``: true / false, or ``auto`` (true exactly when the weights file ``path``
    exists). Checks the value only; loading is the workflow's ``load_texture`` step."""
    if str(texture).strip().lower() == "auto":
        return Path(path).is_file()
    try:
        return flag(texture, "texture")
    except ConfigError:
        raise ConfigError(f"texture must be true, false or auto, got {texture!r}") from None


class ScannerTexture(nn.Module):
    """Per-sequence texture filters ``kernels`` (3, k, k) (order ``bundle.data.SEQUENCES``: C0, DE, T2), odd k.

    ``forward(image, sequence)``: (N, 1, X, Y) images in [0, 1] -> the same plus a texture draw of that sequence
    inside each image's body (a soft mask: image / (``BODY_FRACTION`` × its 99.5th percentile), clipped to [0, 1]),
    clamped to [0, 1]. Noise comes from ``generator`` (or torch's global RNG)."""

    def __init__(self, kernel_size: int = 31) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        self.register_buffer("kernels", torch.zeros(len(SEQUENCES), kernel_size, kernel_size))

    def noise(self, shape: tuple[int, int, int], sequence: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """A texture draw (N, 1, X, Y) of ``sequence`` for ``shape`` = (N, X, Y)."""
        k = self.kernels[SEQUENCES.index(sequence)]
        p = k.shape[-1] // 2
        n, x, y = shape
        white = torch.randn(n, 1, x + 2 * p, y + 2 * p, generator=generator, device=k.device)
        return F.conv2d(white, k[None, None])

    def forward(self, image: torch.Tensor, sequence: str, generator: torch.Generator | None = None) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 1:
            raise ValueError(f"expected (N, 1, X, Y) images, got {tuple(image.shape)}")
        flat = image.float().flatten(1)
        level = torch.quantile(flat, 0.995, dim=1).clamp_min(1e-6)[:, None, None, None]
        body = (image.float() / (BODY_FRACTION * level)).clamp(0, 1)
        noise = self.noise((image.shape[0], *image.shape[2:]), sequence, generator).to(image.device)
        return (image.float() + body * noise).clamp(0, 1)

    def add_to_volume(self, volume: torch.Tensor, sequence: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """Field-of-view volumes (B, 1, X, Y, S) -> the same with a texture draw on every slice."""
        b, c, x, y, s = volume.shape
        flat = volume.permute(0, 4, 1, 2, 3).reshape(b * s, c, x, y)
        return self(flat, sequence, generator).reshape(b, s, c, x, y).permute(0, 2, 3, 4, 1)


def residual_power(real: np.ndarray, recon: np.ndarray, fraction: float = BODY_FRACTION) -> tuple[np.ndarray, float]:
    """|FFT|² of the body-masked residual of one (X, Y) slice, and the body's pixel count."""
    ref = np.asarray(real, dtype=np.float64)
    body = ref > fraction * np.percentile(ref, 99.5)
    r = (ref - np.asarray(recon, dtype=np.float64)) * body
    return np.abs(np.fft.fft2(r)) ** 2, float(body.sum())


def kernel_from_power(power: np.ndarray, kernel_size: int) -> np.ndarray:
    """The zero-phase filter h (k, k) whose white-noise response has the per-pixel power spectrum ``power`` (X, Y)
    (the mean |FFT|² of residuals divided by their pixel count): |DFT(h)|² = power, cropped to the central k²."""
    h = np.fft.fftshift(np.real(np.fft.ifft2(np.sqrt(np.maximum(power, 0.0)))))
    cx, cy, p = h.shape[0] // 2, h.shape[1] // 2, kernel_size // 2
    return h[cx - p : cx + p + 1, cy - p : cy + p + 1].astype(np.float32)


@torch.no_grad()
def fit_texture(texture: ScannerTexture, slices: Sequence[dict], autoencoder: nn.Module, image_size: int | None,
                device: torch.device | str = "cpu", batch_size: int = 16, amplitude: float = 1.0,
                progress: Callable[[str], None] | None = print) -> ScannerTexture:
    """Fit ``texture`` in place from real slices (dicts with ``image`` (3, X, Y), the field at target spacing): per
    sequence, the median over slices of the body-normalised residual power spectrum of ``x − autoencoder(x)`` (run at
    ``image_size`` like inference), turned into a filter and scaled by ``amplitude``. Returns ``texture``."""
    if not slices:
        raise ValueError("fit_texture: no slices")
    if not amplitude > 0:
        raise ValueError(f"amplitude must be > 0, got {amplitude!r}")
    autoencoder.eval()
    size = tuple(np.asarray(slices[0]["image"]).shape[-2:])
    power = np.zeros((len(SEQUENCES), len(slices), *size), np.float32)
    for i in range(0, len(slices), batch_size):
        x = torch.stack([torch.as_tensor(np.asarray(s["image"], dtype=np.float32)) for s in slices[i : i + batch_size]])
        if tuple(x.shape[-2:]) != size:
            raise ValueError(f"fit_texture: slices of different sizes ({size} and {tuple(x.shape[-2:])})")
        flat = x.reshape(-1, 1, *size)[..., None]  # (b·3, 1, X, Y, 1): every sequence on its own

        def rec(z: torch.Tensor) -> tuple[torch.Tensor]:
            return (autoencoder(z.to(device))[0].cpu(),)

        recon = map_fov_slices(rec, flat, image_size)[0][..., 0].clamp(0, 1).reshape(x.shape).numpy()
        for j in range(x.shape[0]):
            for c in range(len(SEQUENCES)):
                pw, n = residual_power(x[j, c].numpy(), recon[j, c])
                power[c, i + j] = pw / max(n, 1.0)
        if progress is not None:
            progress(f"texture: {min(i + batch_size, len(slices))}/{len(slices)} slices")
    k = texture.kernels.shape[-1]
    # a periodogram value is exponentially distributed about the spectrum: its median is ln 2 x its mean
    kernels = [amplitude * kernel_from_power(np.median(power[c], axis=0) / np.log(2), k) for c in range(len(SEQUENCES))]
    texture.kernels.copy_(torch.as_tensor(np.stack(kernels)))
    return texture

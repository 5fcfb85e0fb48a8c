"""Stage-1 (VAE-GAN) pieces that plug MONAI's ``AutoencoderKL`` and ``PatchDiscriminator`` into
``monai.engines.AdversarialTrainer``: inferers that adapt the networks' outputs, the L1+KL reconstruction
loss and the warmed-up adversarial terms, and the latent scale factor stored with the weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from monai.inferers import Inferer
from monai.losses import PatchAdversarialLoss
from torch import nn

from bundle.data import map_fov_slices


class AutoencoderKLInferer(Inferer):
    """Runs ``AutoencoderKL`` on images (B, 1, H, W) and returns the reconstruction (B, 1, H, W).

    The KL divergence of the last call's posterior (a scalar, batch mean) is kept in ``self.kl`` for
    :class:`VAEReconstructionLoss`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.kl = torch.zeros(())

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        recon, mu, sigma = network(inputs)
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2).clamp_min(1e-12)) - 1)
        self.kl = kl.flatten(1).sum(1).mean()
        return recon


class AutoencoderVolumeInferer(Inferer):
    """Reconstructs field-of-view volumes (B, C, X, Y, S) slice by slice and channel by channel through the VAE
    (resized to ``image_size`` with area interpolation and back with bicubic) -> (B, C, X, Y, S) in [0, 1]."""

    def __init__(self, image_size: int | None = None, batch_size: int = 32) -> None:
        super().__init__()
        self.image_size, self.batch_size = image_size, batch_size

    @torch.inference_mode()
    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        def reconstruct(x: torch.Tensor) -> tuple[torch.Tensor]:  # (N, C, s, s): every channel on its own
            flat = x.reshape(-1, 1, *x.shape[2:])
            rec = torch.cat([network(flat[i : i + self.batch_size])[0] for i in range(0, len(flat), self.batch_size)])
            return (rec.reshape(x.shape),)

        return map_fov_slices(reconstruct, inputs, self.image_size)[0].clamp(0, 1)


class PatchLogitsInferer(Inferer):
    """Runs ``PatchDiscriminator`` and returns its last output, the patch logits (B, 1, h, w)."""

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        return network(inputs)[-1]


class VAEReconstructionLoss(nn.Module):
    """``L1(recon, image) + kl_weight · KL`` (+ ``perceptual_weight · perceptual`` when a perceptual loss is given)
    (+ ``freq_weight · mean |FFT(recon) − FFT(image)|``, the orthonormal 2D FFT of (B, 1, H, W): every frequency
    weighted alike, so the fine texture that L1 averages away counts as much as the coarse shape).

    ``inferer`` is the :class:`AutoencoderKLInferer` that produced ``recon`` (it holds the KL term).
    """

    def __init__(
        self,
        inferer: AutoencoderKLInferer,
        kl_weight: float = 1e-6,
        perceptual_loss: nn.Module | None = None,
        perceptual_weight: float = 0.0,
        freq_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.inferer, self.kl_weight, self.freq_weight = inferer, kl_weight, float(freq_weight)
        self.perceptual_loss, self.perceptual_weight = perceptual_loss, perceptual_weight

    def forward(self, recon: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.l1_loss(recon.float(), image.float()) + self.kl_weight * self.inferer.kl
        if self.perceptual_loss is not None and self.perceptual_weight > 0:
            loss = loss + self.perceptual_weight * self.perceptual_loss(recon.float(), image.float())
        if self.freq_weight > 0:
            diff = torch.fft.fft2(recon.float() - image.float(), norm="ortho")
            loss = loss + self.freq_weight * diff.abs().mean()
        return loss


class WarmupAdversarialLoss(nn.Module):
    """A ``PatchAdversarialLoss`` term that is 0 for the first ``warmup_iterations`` calls.

    ``for_discriminator=False``: ``forward(fake_logits)`` is the generator term, ``weight·L(fake, real)``.
    ``for_discriminator=True``: ``forward(real_logits, fake_logits)`` is ``weight·(L(real)+L(fake))/2``.
    The call counter is a buffer, so it is checkpointed with the trainer and resumes where it stopped.
    """

    def __init__(
        self, weight: float = 0.1, warmup_iterations: int = 0, for_discriminator: bool = False,
        criterion: str = "least_squares",
    ) -> None:
        super().__init__()
        self.adv = PatchAdversarialLoss(criterion=criterion, reduction="mean")
        self.weight, self.warmup, self.for_discriminator = weight, warmup_iterations, for_discriminator
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, logits: torch.Tensor, fake_logits: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        if int(self.calls) <= self.warmup or self.weight == 0:
            return logits.sum() * 0.0
        if not self.for_discriminator:
            return self.weight * self.adv(logits.float(), target_is_real=True, for_discriminator=False)
        real = self.adv(logits.float(), target_is_real=True, for_discriminator=True)
        fake = self.adv(fake_logits.float(), target_is_real=False, for_discriminator=True)
        return self.weight * 0.5 * (real + fake)


@torch.no_grad()
def compute_scale_factor(autoencoder: nn.Module, batches: Iterable, device: torch.device | str = "cpu",
                         key: str = "image", max_batches: int = 50) -> float:
    """``1 / std`` of the latent means ``z_mu`` over up to ``max_batches`` batches of images (B, 1, H, W)."""
    autoencoder.eval()
    zs = []
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        zs.append(autoencoder.encode(batch[key].to(device))[0].float().cpu())
    if not zs:
        raise ValueError("compute_scale_factor: no batches to estimate the latent std from")
    return float(1.0 / torch.cat(zs).std())


def export_autoencoder(autoencoder: nn.Module, best_checkpoint: str, slices: list[dict], path: str,
                       arch: dict, device: torch.device | str = "cpu", overwrite_shipped: bool = False) -> str:
    """Load the best checkpoint, compute the latent scale factor on the (unaugmented) training ``slices``
    ((3, H, W) images) and write the shipped weights file with the factor stored in it."""
    from monai.data import DataLoader

    from bundle.data import per_sequence
    from bundle.weights import load_best, save_weights

    load_best(autoencoder, best_checkpoint)
    scale = compute_scale_factor(autoencoder, DataLoader(per_sequence(slices), batch_size=32), device)
    save_weights(path, autoencoder, arch, overwrite_shipped=overwrite_shipped, scale_factor=scale)
    return f"{path} (scale_factor={scale:.4f})"

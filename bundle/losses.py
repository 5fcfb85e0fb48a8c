"""Heatmap loss: the prediction error (the diffusion model's noise or velocity, or the guide regressor's image) weighted
up on the myocardium and on hard regions."""

from __future__ import annotations

import torch
from torch import nn


class HeatmapDiffusionLoss(nn.Module):
    """``mean(W · (target − pred)²)`` with per-latent-pixel weight ``W = 1 + λ_myo·M + λ_hard·H``.

    - M (B, 1, h, w): myocardium mask ({200, 1220, 2221}) on the prediction's grid (the latent grid: see
      :func:`latent_mask`; the image grid for the guide regressor, ``configs/train_guide.yaml``).
    - H (B, 1, h, w): the per-pixel error ``|target − pred|`` averaged over channels, divided by its per-sample
      maximum and detached (it steers the weight, it gives no gradient path).
    ``λ_myo = λ_hard = 0`` is the plain LDM loss. ``target`` may be a ``(target, mask)`` pair (as built by
    :class:`bundle.engine.CMRDiffPrepareBatch`) or a ``(target, mask, sample_weight)`` triple (sample_weight (B,)
    multiplies each sample's weight, :class:`MinSNRWeight`); without a mask M = 0.
    """

    def __init__(self, lambda_myo: float = 1.0, lambda_hard: float = 1.0, distance: str = "l2") -> None:
        super().__init__()
        if lambda_myo < 0 or lambda_hard < 0:
            raise ValueError(f"heatmap loss weights must be >= 0, got lambda_myo={lambda_myo}, lambda_hard={lambda_hard}")
        if distance not in ("l2", "l1"):
            raise ValueError(f"heatmap loss distance must be 'l2' or 'l1', got {distance!r}")
        self.lambda_myo, self.lambda_hard, self.distance = lambda_myo, lambda_hard, distance

    def forward(self, pred: torch.Tensor, target, mask: torch.Tensor | None = None,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(target, (tuple, list)):
            target, mask, sample_weight = (*target, None)[:3]
        diff = target.float() - pred.float()
        weight = torch.ones_like(diff[:, :1])
        if self.lambda_myo and mask is not None:
            weight = weight + self.lambda_myo * mask.to(weight)
        if self.lambda_hard:
            err = diff.detach().abs().mean(1, keepdim=True)
            err = err / err.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
            weight = weight + self.lambda_hard * err
        if sample_weight is not None:  # (B,): e.g. the min-SNR-γ weight of each sample's timestep
            weight = weight * sample_weight.to(weight).view(-1, 1, 1, 1)
        return (weight * (diff.pow(2) if self.distance == "l2" else diff.abs())).mean()


class DecodedLoss(nn.Module):
    """A latent prediction's loss in image space: ``loss(decode(pred / scale_factor), target, mask)`` with the frozen
    VAE's decoder (gradients flow through it to ``pred``, not into it). pred (B, lc, h, w); target (B, 1, H, W) the
    target image in [0, 1] or a ``(target, mask)`` pair (mask (B, 1, H, W), as for :class:`HeatmapDiffusionLoss`).
    For an x0-predicting model: the latent space is not isometric to the image, so the latent L2 optimum (a mean of
    latents) can decode worse than its input (docs/results.md, v0.12.0 round 9)."""

    def __init__(self, autoencoder: nn.Module, scale_factor: float, loss: nn.Module) -> None:
        super().__init__()
        self.decoder = [autoencoder.eval().requires_grad_(False)]  # a list: not a submodule (no state_dict entry)
        self.scale_factor, self.loss = float(scale_factor), loss

    def forward(self, pred: torch.Tensor, target, mask: torch.Tensor | None = None,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(target, (tuple, list)):
            target, mask, sample_weight = (*target, None)[:3]
        image = self.decoder[0].decode_stage_2_outputs(pred / self.scale_factor)
        return self.loss(image, target, mask, sample_weight)


class MinSNRWeight:
    """Min-SNR-γ loss weighting (Hang et al., ICCV 2023): timesteps (B,) -> per-sample weights (B,) that cap the
    x0-space weight of every noise level at γ. With SNR_t = ᾱ_t / (1 − ᾱ_t) of ``scheduler`` (a DDPM-type scheduler
    with ``alphas_cumprod``): ``min(SNR, γ) / SNR`` for an epsilon target, ``min(SNR, γ) / (SNR + 1)`` for a velocity,
    ``min(SNR, γ)`` for the clean latent (``sample``). Not defined for rectified flow."""

    def __init__(self, scheduler, gamma: float, prediction_type: str) -> None:
        if float(gamma) <= 0:
            raise ValueError(f"snr_gamma must be > 0 to weight the loss, got {gamma}")
        if prediction_type not in ("epsilon", "v_prediction", "sample") or not hasattr(scheduler, "alphas_cumprod"):
            raise ValueError(f"snr_gamma needs prediction_type epsilon, v_prediction or sample with a DDPM-type "
                             f"scheduler, got {prediction_type!r} with {type(scheduler).__name__}")
        self.gamma, self.prediction_type = float(gamma), prediction_type
        self.alphas_cumprod = scheduler.alphas_cumprod.detach().double().cpu()

    def __call__(self, timesteps: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod[timesteps.long().cpu()]
        snr = ab / (1 - ab)
        weight = snr.clamp(max=self.gamma)  # the x0-space weight; divided by the target's own weight in x0 terms
        if self.prediction_type != "sample":
            weight = weight / (snr if self.prediction_type == "epsilon" else snr + 1)
        return weight.float().to(timesteps.device)


def latent_mask(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """Myocardium mask (B, 1, H, W) -> (B, 1, h, w) on the latent grid (max-pool: a latent pixel counts if
    any of its image pixels is myocardium)."""
    return nn.functional.adaptive_max_pool2d(mask.float(), latent_size)

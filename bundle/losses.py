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
    :class:`bundle.engine.CMRDiffPrepareBatch`); without a mask M = 0.
    """

    def __init__(self, lambda_myo: float = 1.0, lambda_hard: float = 1.0, distance: str = "l2") -> None:
        super().__init__()
        if lambda_myo < 0 or lambda_hard < 0:
            raise ValueError(f"heatmap loss weights must be >= 0, got lambda_myo={lambda_myo}, lambda_hard={lambda_hard}")
        if distance not in ("l2", "l1"):
            raise ValueError(f"heatmap loss distance must be 'l2' or 'l1', got {distance!r}")
        self.lambda_myo, self.lambda_hard, self.distance = lambda_myo, lambda_hard, distance

    def forward(self, pred: torch.Tensor, target, mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(target, (tuple, list)):
            target, mask = target
        diff = target.float() - pred.float()
        weight = torch.ones_like(diff[:, :1])
        if self.lambda_myo and mask is not None:
            weight = weight + self.lambda_myo * mask.to(weight)
        if self.lambda_hard:
            err = diff.detach().abs().mean(1, keepdim=True)
            err = err / err.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
            weight = weight + self.lambda_hard * err
        return (weight * (diff.pow(2) if self.distance == "l2" else diff.abs())).mean()


def latent_mask(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """Myocardium mask (B, 1, H, W) -> (B, 1, h, w) on the latent grid (max-pool: a latent pixel counts if
    any of its image pixels is myocardium)."""
    return nn.functional.adaptive_max_pool2d(mask.float(), latent_size)

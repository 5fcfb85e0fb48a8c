"""The CMRDiff denoiser: MONAI ``DiffusionModelUNet`` plus a condition encoder for cross-attention."""

from __future__ import annotations

import torch
from torch import nn


class CMRDiffNet(nn.Module):
    """``forward(x, timesteps, context=None, class_labels=None, images=None, keep=None)``.

    - x (B, 4·lc, h, w): the noisy target latent followed by the three condition slots (C0, DE, T2 latents ×
      scale factor; the target's slot and dropped conditions are zero).
    - timesteps (B,) long; class_labels (B,) long: index of the target sequence (0 C0, 1 DE, 2 T2).
    - context (B, 3·T, D) precomputed tokens, or ``images`` (B, 3, H, W) with ``keep`` (B, 3) bool to encode
      them here (training); neither = the all-null context.
    Returns the prediction (B, lc, h, w) (noise, velocity or clean latent, per ``prediction_type``).
    """

    def __init__(self, unet: nn.Module, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.unet, self.encoder = unet, encoder

    def context(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor | None:
        """Cross-attention tokens (B, 3·T, D) for condition images (B, 3, H, W) and slot mask (B, 3)."""
        return None if self.encoder is None else self.encoder(images, keep)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, images: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        if self.encoder is not None and context is None:
            context = self.encoder(images, keep) if images is not None else self.encoder.null(x.shape[0])
        if class_labels is None and getattr(self.unet, "num_class_embeds", None):
            raise ValueError("this CMRDiffNet is class-conditional: pass class_labels (index of the target sequence)")
        return self.unet(x, timesteps, context=context, class_labels=class_labels)

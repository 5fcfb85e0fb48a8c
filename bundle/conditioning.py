"""Condition encoders that turn the condition images into cross-attention tokens, with per-slot null tokens.

Slots follow the canonical sequence order C0, DE, T2. ``keep`` (B, 3) bool says which slots carry a
condition; every other slot (the target's, and any dropped condition) gets that slot's learned null tokens.
The default :class:`PatchConditionEncoder` is small and trains with the UNet (offline);
:class:`CLIPConditionEncoder` uses a local ``transformers`` CLIP vision model (never downloads).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class _SlotTokens(nn.Module):
    """Shared logic: per-slot embeddings and null tokens; subclasses implement ``_tokens`` (N,1,H,W)->(N,T,D)."""

    def __init__(self, context_dim: int, tokens_per_condition: int, num_slots: int = 3) -> None:
        super().__init__()
        self.context_dim, self.tokens, self.num_slots = context_dim, tokens_per_condition, num_slots
        self.slot_embedding = nn.Parameter(torch.zeros(num_slots, 1, context_dim))
        self.null_tokens = nn.Parameter(torch.zeros(num_slots, tokens_per_condition, context_dim))
        nn.init.normal_(self.slot_embedding, std=0.02)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def null(self, batch_size: int) -> torch.Tensor:
        """All-null context (B, num_slots*T, D): the unconditional ∅ of classifier-free guidance."""
        return self.null_tokens.unsqueeze(0).expand(batch_size, -1, -1, -1).reshape(batch_size, -1, self.context_dim)

    def forward(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """images (B, num_slots, H, W), keep (B, num_slots) bool -> context (B, num_slots*T, D).

        Only kept slots are encoded; the others take the null tokens (no information, no gradient path).
        """
        b, s = images.shape[:2]
        out = self.null_tokens.unsqueeze(0).expand(b, -1, -1, -1).clone()  # (B, S, T, D)
        idx = keep.nonzero(as_tuple=False)
        if idx.numel():
            tok = self._tokens(images[idx[:, 0], idx[:, 1]].unsqueeze(1).to(out.dtype))  # (K, T, D)
            out[idx[:, 0], idx[:, 1]] = tok + self.slot_embedding[idx[:, 1]]
        return out.reshape(b, s * self.tokens, self.context_dim)


class PatchConditionEncoder(_SlotTokens):
    """Default encoder: a shared strided-conv stem -> ``T`` pooled patch tokens of width ``context_dim`` per
    condition image (1, H, W), plus learned positional and slot embeddings."""

    def __init__(self, context_dim: int = 64, tokens_per_condition: int = 16, num_slots: int = 3,
                 hidden: int = 32) -> None:
        super().__init__(context_dim, tokens_per_condition, num_slots)
        side = int(round(tokens_per_condition**0.5))
        if side * side != tokens_per_condition:
            raise ValueError(f"tokens_per_condition must be a square number, got {tokens_per_condition}")
        self.stem = nn.Sequential(
            nn.Conv2d(1, hidden, 4, stride=4), nn.SiLU(),
            nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * hidden, context_dim, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(side),
        )
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens_per_condition, context_dim) * 0.02)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x).flatten(2).transpose(1, 2) + self.pos_embedding


class CLIPConditionEncoder(_SlotTokens):
    """CLIP image features as tokens: ``transformers.CLIPVisionModel`` loaded from a local folder
    (``weights_dir``, e.g. a saved ``openai/clip-vit-base-patch32``) or built from a ``config`` (random
    weights, for tests). The grayscale image is repeated to RGB, resized to the model's input size and
    CLIP-normalised; the patch tokens are pooled to ``T`` tokens and projected to ``context_dim``.
    The CLIP backbone is frozen unless ``trainable=True``."""

    MEAN = (0.48145466, 0.4578275, 0.40821073)
    STD = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, weights_dir: str | None = None, config: dict | None = None, context_dim: int = 64,
                 tokens_per_condition: int = 16, num_slots: int = 3, trainable: bool = False) -> None:
        super().__init__(context_dim, tokens_per_condition, num_slots)
        from transformers import CLIPVisionConfig, CLIPVisionModel

        if weights_dir is not None:
            if not Path(weights_dir).is_dir():
                raise FileNotFoundError(f"CLIP weights_dir {weights_dir} is not a folder (no download at run time)")
            self.clip = CLIPVisionModel.from_pretrained(weights_dir, local_files_only=True)
        elif config is not None:
            self.clip = CLIPVisionModel(CLIPVisionConfig(**config))
        else:
            raise ValueError("CLIPConditionEncoder needs weights_dir (a local folder) or config")
        self.clip.requires_grad_(trainable)
        self.size = int(self.clip.config.image_size)
        self.pool = nn.AdaptiveAvgPool1d(tokens_per_condition)
        self.proj = nn.Linear(self.clip.config.hidden_size, context_dim)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = (x.repeat(1, 3, 1, 1) - self.mean) / self.std
        h = self.clip(pixel_values=x).last_hidden_state[:, 1:]  # (N, P, hidden), CLS dropped
        return self.proj(self.pool(h.transpose(1, 2)).transpose(1, 2))

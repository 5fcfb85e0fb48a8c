"""DeepCache for MONAI's ``DiffusionModelUNet``: reuse the deep features across denoising steps.

Adjacent DDIM steps change the deep (low-resolution) features of the UNet little (Ma et al., "DeepCache", CVPR 2024).
A *full* step runs the whole network and keeps the input of the last (full-resolution) up block; a *shallow* step
runs only ``conv_in``, the first down block and the last up block, taking the deep part from the cache. With one full
step every ``interval`` steps the network does the same number of denoising steps for a fraction of the work.
A shallow step on the input of the full step it follows gives exactly the full output (tested).
"""

from __future__ import annotations

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn


class DeepCacheUNet(nn.Module):
    """``forward(x, timesteps, context=None, class_labels=None, full=True)`` -> the UNet's output.

    - x (B, C_in, h, w), timesteps (B,), context (B, T, D) or None, class_labels (B,) or None: as for ``unet``.
    - ``full=True`` runs the whole ``unet`` and caches the deep features (B, C, h, w); ``full=False`` reuses them (the
      batch must be laid out as in the last full step). The first call must be full.
    """

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        for name in ("conv_in", "down_blocks", "middle_block", "up_blocks", "out", "time_embed"):
            if not hasattr(unet, name):
                raise TypeError(f"DeepCacheUNet needs a MONAI DiffusionModelUNet, got {type(unet).__name__}")
        self.unet = unet
        self.cache: torch.Tensor | None = None

    def reset(self) -> None:
        self.cache = None

    def _embedding(self, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        u = self.unet
        emb = u.time_embed(get_timestep_embedding(timesteps, u.block_out_channels[0]).to(dtype=x.dtype))
        if u.num_class_embeds is not None:
            if class_labels is None:
                raise ValueError("class_labels should be provided when num_class_embeds > 0")
            emb = emb + u.class_embedding(class_labels).to(dtype=x.dtype)
        return emb

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, full: bool = True) -> torch.Tensor:
        u = self.unet
        emb = self._embedding(x, timesteps, class_labels)
        h = u.conv_in(x)
        res = [h]
        last = u.up_blocks[-1]
        if not full and self.cache is None:
            raise RuntimeError("DeepCacheUNet: the first call must be a full step (nothing cached yet)")
        if full:
            for block in u.down_blocks:
                h, r = block(hidden_states=h, temb=emb, context=context)
                res.extend(r)
            h = u.middle_block(hidden_states=h, temb=emb, context=context)
            for block in u.up_blocks[:-1]:
                n = len(block.resnets)
                h = block(hidden_states=h, res_hidden_states_list=res[-n:], temb=emb, context=context)
                res = res[:-n]
            self.cache = h
        else:
            if self.cache.shape[0] != x.shape[0]:
                raise ValueError(f"DeepCacheUNet: batch of {x.shape[0]} after a full step on {self.cache.shape[0]}")
            # the skips of the last up block: conv_in's output and the first down block's resnet outputs
            _, r = u.down_blocks[0](hidden_states=h, temb=emb, context=context)
            res.extend(r)
            res = res[: len(last.resnets)]
            h = self.cache
        h = last(hidden_states=h, res_hidden_states_list=res, temb=emb, context=context)
        return u.out(h)

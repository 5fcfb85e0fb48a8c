"""DeepCacheUNet on tiny MONAI UNets: a full step is the plain forward, a shallow step on the same input
reproduces it exactly from the cache, and misuse gives clear errors."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from bundle.deepcache import DeepCacheUNet


def _unet(num_res_blocks: int, attention_first: bool) -> DiffusionModelUNet:
    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=2, in_channels=6, out_channels=2, channels=[8, 16, 16],
                             attention_levels=[attention_first, True, True], num_head_channels=8,
                             num_res_blocks=num_res_blocks, norm_num_groups=4, with_conditioning=True,
                             cross_attention_dim=8, num_class_embeds=3, include_fc=False)
    with torch.no_grad():  # MONAI zero-inits the output convolution: perturb so outputs can differ
        for prm in net.parameters():
            prm.add_(torch.randn_like(prm) * 0.05)
    return net.eval()


def _inputs(seed: int = 0, b: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((b, 6, 16, 16), generator=g), torch.randint(0, 1000, (b,), generator=g),
            torch.randn((b, 4, 8), generator=g), torch.randint(0, 3, (b,), generator=g))


@pytest.mark.parametrize("num_res_blocks,attention_first", [(1, False), (2, False), (1, True)])
@torch.no_grad()
def test_full_and_shallow_steps_match_the_unet(num_res_blocks, attention_first):
    net = _unet(num_res_blocks, attention_first)
    cached = DeepCacheUNet(net)
    x, t, ctx, lab = _inputs()
    ref = net(x, t, context=ctx, class_labels=lab)
    full = cached(x, t, context=ctx, class_labels=lab, full=True)
    torch.testing.assert_close(full, ref, rtol=1e-5, atol=1e-6)
    shallow = cached(x, t, context=ctx, class_labels=lab, full=False)  # same input: the cache is exact
    torch.testing.assert_close(shallow, ref, rtol=1e-5, atol=1e-6)
    # a different input reuses the stale deep features: not the UNet's output any more
    x2, t2, _, _ = _inputs(seed=1)
    stale = cached(x2, t2, context=ctx, class_labels=lab, full=False)
    assert not torch.allclose(stale, net(x2, t2, context=ctx, class_labels=lab), atol=1e-5)


@torch.no_grad()
def test_misuse_is_a_clear_error():
    with pytest.raises(TypeError, match="DiffusionModelUNet"):
        DeepCacheUNet(torch.nn.Linear(2, 2))
    cached = DeepCacheUNet(_unet(1, False))
    x, t, ctx, lab = _inputs()
    with pytest.raises(RuntimeError, match="first call must be a full step"):
        cached(x, t, context=ctx, class_labels=lab, full=False)
    cached(x, t, context=ctx, class_labels=lab, full=True)
    x4, t4, ctx4, lab4 = _inputs(b=4)
    with pytest.raises(ValueError, match="batch of 4"):
        cached(x4, t4, context=ctx4, class_labels=lab4, full=False)
    cached.reset()
    assert cached.cache is None

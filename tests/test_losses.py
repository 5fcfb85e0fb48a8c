"""bundle/losses.py: the heatmap-weighted denoising loss and the latent-grid myocardium mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bundle.losses import HeatmapDiffusionLoss, latent_mask


def _hand_loss(pred, target, mask, lam_myo, lam_hard):
    """numpy reference: mean(W·diff²), W = 1 + λm·M + λh·H, H = channel-mean |diff| / per-sample max."""
    diff = target - pred  # (B, C, h, w)
    err = np.abs(diff).mean(1, keepdims=True)
    h = err / err.reshape(err.shape[0], -1).max(1).reshape(-1, 1, 1, 1)
    w = 1.0 + lam_myo * mask + lam_hard * h
    return float((w * diff**2).mean())


def test_hand_computed_2x2():
    # B=1, C=1, 2x2 latent: |err| = [[1, 2], [0.5, 4]] -> H = [[.25, .5], [.125, 1]], M = [[1, 0], [0, 1]]
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, -2.0], [0.5, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    lam_m, lam_h = 2.0, 3.0
    # W = 1 + 2*M + 3*H = [[3.75, 2.5], [1.375, 6]]; diff² = [[1, 4], [.25, 16]]
    expected = (3.75 * 1 + 2.5 * 4 + 1.375 * 0.25 + 6 * 16) / 4
    assert expected == pytest.approx(_hand_loss(pred.numpy(), target.numpy(), mask.numpy(), lam_m, lam_h))
    loss = HeatmapDiffusionLoss(lambda_myo=lam_m, lambda_hard=lam_h)(pred, target, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_matches_numpy_reference_multichannel_batch():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g)
    mask = (torch.rand(3, 1, 5, 6, generator=g) > 0.5).float()
    target[1] *= 10  # a per-sample (not per-batch) max matters
    loss = HeatmapDiffusionLoss(0.7, 1.3)(pred, target, mask)
    ref = _hand_loss(pred.numpy().astype(np.float64), target.numpy().astype(np.float64), mask.numpy(), 0.7, 1.3)
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_zero_lambdas_is_mse():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    mask = torch.ones(2, 1, 8, 8)
    loss = HeatmapDiffusionLoss(0.0, 0.0)(pred, target, mask)
    torch.testing.assert_close(loss, F.mse_loss(pred, target))
    # without a mask, the myocardium term vanishes: only the hard-region term differs from MSE
    assert HeatmapDiffusionLoss(5.0, 0.0)(pred, target).item() == pytest.approx(F.mse_loss(pred, target).item())


def test_hard_region_weight_is_detached():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(2, 3, 4, 4, generator=g)
    mask = (torch.rand(2, 1, 4, 4, generator=g) > 0.5).float()
    p0 = torch.randn(2, 3, 4, 4, generator=g)
    lam_m, lam_h = 1.5, 2.0

    pred = p0.clone().requires_grad_(True)
    HeatmapDiffusionLoss(lam_m, lam_h)(pred, target, mask).backward()

    # the same loss with W computed beforehand as a constant
    err = (target - p0).abs().mean(1, keepdim=True)
    h = err / err.flatten(1).amax(1).view(-1, 1, 1, 1)
    w = 1 + lam_m * mask + lam_h * h
    ref_pred = p0.clone().requires_grad_(True)
    (w * (target - ref_pred).pow(2)).mean().backward()
    torch.testing.assert_close(pred.grad, ref_pred.grad)

    # sanity: letting the gradient flow through H would give a different gradient
    und = p0.clone().requires_grad_(True)
    e2 = (target - und).abs().mean(1, keepdim=True)
    w2 = 1 + lam_m * mask + lam_h * e2 / e2.flatten(1).amax(1).view(-1, 1, 1, 1)
    (w2 * (target - und).pow(2)).mean().backward()
    assert not torch.allclose(und.grad, ref_pred.grad)


def test_tuple_target_equals_explicit_mask():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, 6, 6, generator=g)
    mask = (torch.rand(2, 1, 6, 6, generator=g) > 0.5).float()
    fn = HeatmapDiffusionLoss(2.0, 1.0)
    explicit = fn(pred, target, mask)
    torch.testing.assert_close(fn(pred, (target, mask)), explicit)
    torch.testing.assert_close(fn(pred, [target, mask]), explicit)
    assert not torch.allclose(fn(pred, target), explicit)  # the mask is actually used


def test_l1_distance_weights_absolute_errors():
    """distance="l1" (the guide regressor's option): the same weights on |error| instead of error²."""
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    torch.testing.assert_close(HeatmapDiffusionLoss(0.0, 0.0, distance="l1")(pred, target), F.l1_loss(pred, target))
    err = (target - pred).abs()
    w = 1 + 2.0 * mask + 0.5 * err / err.flatten(1).amax(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(HeatmapDiffusionLoss(2.0, 0.5, distance="l1")(pred, target, mask), (w * err).mean())
    with pytest.raises(ValueError, match="distance"):
        HeatmapDiffusionLoss(distance="l3")


@pytest.mark.parametrize("lam", [(-0.1, 1.0), (1.0, -0.1)])
def test_negative_lambda_raises(lam):
    with pytest.raises(ValueError, match="must be >= 0"):
        HeatmapDiffusionLoss(*lam)


def test_latent_mask_max_pools():
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, 0, 9, 2] = 1  # a single myocardium pixel -> latent cell (9 // 4, 2 // 4) = (2, 0)
    lm = latent_mask(mask, (4, 4))
    assert lm.shape == (2, 1, 4, 4) and lm.dtype == torch.float32
    expected = torch.zeros(2, 1, 4, 4)
    expected[0, 0, 2, 0] = 1
    torch.testing.assert_close(lm, expected)
    # bool masks work too
    torch.testing.assert_close(latent_mask(mask.bool(), (4, 4)), expected)


"""bundle.regression: the image-space baselines (unet_l1, pix2pix) on tiny networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.engines import AdversarialTrainer
from monai.networks.nets import BasicUNet, PatchDiscriminator
from torch import nn

from bundle.regression import (
    ConditionalPatchInferer,
    TranslationInferer,
    TranslationPrepareBatch,
    TranslationVolumeInferer,
    translation_inputs,
)
from bundle.vae import WarmupAdversarialLoss

TASKS = {"lge": {"target": "DE", "conditions": ["C0", "T2"]}, "t2": {"target": "T2", "conditions": ["C0", "DE"]},
         "bssfp": {"target": "C0", "conditions": ["T2", "DE"]}}


def _batch(b=4, size=16):
    return {"image": torch.rand(b, 3, size, size), "case": [f"c{i}" for i in range(b)], "slice": torch.arange(b)}


def test_translation_inputs_zero_the_target_and_one_hot_it():
    images = torch.rand(2, 3, 8, 8) + 0.1
    x = translation_inputs(images, torch.tensor([1, 0]))
    assert x.shape == (2, 6, 8, 8)
    assert (x[0, 1] == 0).all() and torch.equal(x[0, [0, 2]], images[0, [0, 2]])
    assert (x[1, 0] == 0).all() and torch.equal(x[1, 1:3], images[1, 1:3])
    assert torch.equal(x[0, 3:, 0, 0], torch.tensor([0.0, 1.0, 0.0])) and (x[1, 3] == 1).all()


def test_prepare_batch_task_and_all_tasks():
    batch = _batch()
    inputs, real, args, kw = TranslationPrepareBatch("lge", TASKS)(batch)
    assert inputs.shape == (4, 6, 16, 16) and real.shape == (4, 1, 16, 16) and args == ()
    torch.testing.assert_close(real, batch["image"][:, 1:2])  # lge -> DE
    assert kw["condition"] is inputs and kw["real"] is real
    inputs, real, _, _ = TranslationPrepareBatch("any", TASKS, all_tasks=True)(batch)
    assert inputs.shape == (12, 6, 16, 16)  # every slice once per task (bssfp, lge, t2 sorted)
    for k, slot in enumerate((0, 1, 2)):
        torch.testing.assert_close(real[4 * k : 4 * k + 4], batch["image"][:, slot : slot + 1])
        assert (inputs[4 * k : 4 * k + 4, slot] == 0).all()


def test_prepare_batch_seeded_targets_repeat():
    batch = _batch(16)
    a = TranslationPrepareBatch("any", TASKS, seed=3)(batch)[1]
    b = TranslationPrepareBatch("any", TASKS, seed=3)(batch)[1]
    assert torch.equal(a, b)


def test_prepare_batch_with_mask_pairs_the_target_with_its_myocardium():
    batch = dict(_batch(), mask=(torch.rand(4, 1, 16, 16) > 0.5).float())
    _, (real, mask), _, kw = TranslationPrepareBatch("lge", TASKS, with_mask=True)(batch)
    torch.testing.assert_close(real, batch["image"][:, 1:2])
    assert kw["real"] is real and torch.equal(mask, batch["mask"])
    _, (real, mask), _, _ = TranslationPrepareBatch("any", TASKS, all_tasks=True, with_mask=True)(batch)
    assert real.shape == mask.shape == (12, 1, 16, 16)
    assert all(torch.equal(mask[4 * k : 4 * k + 4], batch["mask"]) for k in range(3))
    _, (real, mask), _, _ = TranslationPrepareBatch("any", TASKS, with_mask=True)(_batch())  # unlabelled slices
    assert mask.shape == real.shape and not mask.any()


def test_guide_heatmap_loss_weights_the_myocardium_of_the_image():
    """configs/train_guide.yaml: the heatmap loss on the regressor's image counts myocardium errors more."""
    from bundle.losses import HeatmapDiffusionLoss

    batch = dict(_batch(2), mask=torch.zeros(2, 1, 16, 16))
    batch["mask"][:, :, 4:8, 4:8] = 1
    _, goal, _, _ = TranslationPrepareBatch("t2", TASKS, with_mask=True)(batch)
    pred_in, pred_out = goal[0].clone(), goal[0].clone()
    pred_in[:, :, 5, 5] += 0.5  # the same error inside / outside the myocardium
    pred_out[:, :, 12, 12] += 0.5
    loss = HeatmapDiffusionLoss(lambda_myo=3.0, lambda_hard=0.0)
    assert loss(pred_in, goal).item() == pytest.approx(4 * loss(pred_out, goal).item())
    assert loss(pred_out, goal).item() == pytest.approx(nn.functional.mse_loss(pred_out, goal[0]).item())


class _Spy(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


def _disc():
    return PatchDiscriminator(spatial_dims=2, in_channels=7, out_channels=1, channels=4, num_layers_d=2)


def test_conditional_patch_inferer_swaps_in_the_real_target():
    cond, real, fake = torch.rand(2, 6, 16, 16), torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    d = _Spy(_disc())
    inferer = ConditionalPatchInferer()
    inferer(cond, d, condition=cond, real=real)  # what AdversarialTrainer passes as "reals"
    inferer(fake, d, condition=cond, real=real)
    torch.testing.assert_close(d.seen[0], torch.cat([cond, real], 1))
    torch.testing.assert_close(d.seen[1], torch.cat([cond, fake], 1))


def test_adversarial_trainer_iteration_is_conditional():
    g = BasicUNet(spatial_dims=2, in_channels=6, out_channels=1, features=(4, 4, 4, 4, 4, 4))
    d = _Spy(_disc())
    data = [_batch(2, 32)]
    trainer = AdversarialTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters()), g_loss_function=WarmupAdversarialLoss(0.01),
        recon_loss_function=nn.L1Loss(), d_network=d, d_optimizer=torch.optim.Adam(d.parameters()),
        d_loss_function=WarmupAdversarialLoss(1.0, for_discriminator=True), g_inferer=TranslationInferer(),
        d_inferer=ConditionalPatchInferer(), prepare_batch=TranslationPrepareBatch("lge", TASKS), decollate=False)
    trainer.run()
    out = trainer.state.output
    assert out["pred"].shape == (2, 1, 32, 32) and torch.isfinite(out["reconstruction_loss"])
    assert all(x.shape[1] == 7 for x in d.seen)
    # the discriminator's "real" pass saw the LGE reference, not the generator inputs
    torch.testing.assert_close(d.seen[1][:, 6:], data[0]["image"][:, 1:2])


@pytest.mark.parametrize("task,slot", [("lge", 1), ("t2", 2), ("bssfp", 0)])
def test_volume_inferer_shapes_and_task(task, slot):
    seen = []

    def net(x):
        seen.append(x)
        return x[:, :1] * 0 + 2.0  # out of range: clamped

    vol = torch.rand(1, 3, 32, 32, 3)
    out = TranslationVolumeInferer(task, TASKS, image_size=16)(vol, net)
    assert out.shape == (1, 1, 32, 32, 3) and out.max() == 1.0
    assert seen[0].shape == (3, 6, 16, 16) and (seen[0][:, slot] == 0).all() and (seen[0][:, 3 + slot] == 1).all()
    assert TranslationVolumeInferer(task, TASKS)(torch.rand(2, 3, 16, 16), net).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="volumes"):
        TranslationVolumeInferer(task, TASKS)(torch.rand(1, 2, 16, 16, 3), net)


def test_volume_inferer_views_average_the_flipped_predictions():
    """views=2: the network runs once on the slices and their left-right mirror (one batch) and the mirrored
    prediction is flipped back before the mean: a left-to-right ramp added by the network averages to its mean."""
    seen = []
    ramp = torch.linspace(0, 1, 16)

    def net(x):
        seen.append(x.shape[0])
        return x[:, :1] * 0 + 0.25 * ramp

    x = torch.rand(2, 3, 16, 16)
    out = TranslationVolumeInferer("lge", TASKS, views=2)(x, net)
    assert seen == [4]
    torch.testing.assert_close(out, torch.full((2, 1, 16, 16), 0.125))
    torch.testing.assert_close(TranslationVolumeInferer("lge", TASKS)(x, net), (0.25 * ramp).expand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="views"):
        TranslationVolumeInferer("lge", TASKS, views=5)


def test_linear_fit_recovers_per_task_coefficients():
    """Slices built so that each sequence is an exact linear function of the two others' sum: the fit finds the
    coefficients, ignores the target's own channel, and predicts the target exactly."""
    from bundle.regression import LinearFit, fit_linear

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(6, 1, 16, 16, generator=g), torch.rand(6, 1, 16, 16, generator=g)
    de = 0.3 * a + 0.5 * b + 0.1  # DE from C0 (= a) and T2 (= b): the lge task is exact
    slices = [{"image": torch.cat([a[i], de[i], b[i]])} for i in range(6)]
    model = fit_linear(LinearFit(), slices, TASKS)
    assert torch.allclose(model.weight[1], torch.tensor([0.3, 0.0, 0.5]), atol=1e-4)
    assert model.bias[1].item() == pytest.approx(0.1, abs=1e-4)
    x = torch.stack([s["image"] for s in slices])
    pred = model(translation_inputs(x, torch.full((6,), 1)))
    assert pred.shape == (6, 1, 16, 16) and torch.allclose(pred[:, 0], x[:, 1], atol=1e-4)
    # another task uses its own row: t2 from C0 and DE is not the lge mapping
    assert not torch.allclose(model(translation_inputs(x, torch.full((6,), 2))), pred, atol=1e-3)
    with pytest.raises(ValueError, match="no training slices"):
        fit_linear(LinearFit(), [], TASKS)


def test_train_guide_config_wires_the_heatmap_loss_and_the_mask():
    """configs/train_guide.yaml on top of the unet_l1 baseline: heatmap loss (its knobs), mask-paired targets, and
    augmentation that moves the mask with the image; the baseline itself keeps L1."""
    from monai.bundle import ConfigParser

    from bundle.losses import HeatmapDiffusionLoss

    def parsed(*extra):
        root = Path(__file__).resolve().parents[1] / "configs"
        p = ConfigParser()
        p.read_config([str(root / f) for f in ("common.yaml", "baselines/image.yaml", "baselines/unet_l1.yaml", *extra)])
        p["output_dir"] = "/tmp"
        return p

    p = parsed("train_guide.yaml")
    p["guide_lambda_myo"] = 2.5
    loss = p.get_parsed_content("train#loss")
    assert isinstance(loss, HeatmapDiffusionLoss) and loss.lambda_myo == 2.5 and loss.lambda_hard == 1.0
    assert loss.distance == "l1"  # the shipped guide's recipe (docs/results.md)
    assert p.get_parsed_content("train#prepare_batch").with_mask
    assert [type(t).__name__ for t in p.get_parsed_content("augment").transforms] == ["RandFlipd", "RandFlipd",
                                                                                       "RandRotate90d"]
    p["augment_affine"] = True
    spatial = [t for t in p.get_parsed_content("augment").transforms if type(t).__name__ != "RandAdjustContrastd"]
    assert len(spatial) == 4 and all("mask" in t.keys for t in spatial)
    base = parsed()
    assert isinstance(base.get_parsed_content("train#loss"), nn.L1Loss)
    assert not base.get_parsed_content("train#prepare_batch").with_mask


def test_augment_affine_knob_moves_images_off_the_flip_grid_and_the_mask_with_them():
    """unet_l1.yaml's `augment_affine` (shared by unet_l1, pix2pix and the guide): off, every output is one of the 8
    flips/rot90s of the input; on, small rotations/scalings/shifts appear, drawn once for the three sequences and the
    mask (nearest, still binary, still on the image's bright block), and a gamma changes intensities."""
    from monai.bundle import ConfigParser
    from monai.utils import set_determinism

    root = Path(__file__).resolve().parents[1] / "configs"
    block = torch.zeros(1, 32, 32)
    block[:, 6:20, 9:24] = 1.0
    image = torch.cat([block * 0.8, block * 0.5 + 0.1, torch.linspace(0, 1, 32).expand(1, 32, 32)])
    dihedral = [torch.rot90(f, k, (1, 2)) for f in (image, image.flip(1), image.flip(2), image.flip(1).flip(2))
                for k in range(4)]

    def outputs(affine: bool | str) -> list[dict]:
        p = ConfigParser()
        p.read_config([str(root / f) for f in ("common.yaml", "baselines/image.yaml", "baselines/unet_l1.yaml")])
        p["output_dir"], p["augment_affine"] = "/tmp", affine
        augment = p.get_parsed_content("augment")
        set_determinism(seed=0)
        augment.set_random_state(seed=0)
        outs = [augment({"image": image.clone(), "mask": block.clone()}) for _ in range(12)]
        set_determinism(seed=None)
        return outs

    for out in outputs("false"):  # the command line's --augment_affine false is a string, and off
        assert any(torch.equal(torch.as_tensor(out["image"]), d) for d in dihedral)
    moved = 0
    for out in outputs(True):
        img, mask = torch.as_tensor(out["image"]), torch.as_tensor(out["mask"])
        moved += not any(torch.allclose(img, d, atol=1e-4) for d in dihedral)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        inside = mask[0] > 0.5
        if inside.sum() > 20:  # the mask still sits on the bright block of the first two sequences
            assert img[0][inside].mean() > 3 * img[0][~inside].mean() + 1e-3
    assert moved >= 3


def test_load_ensemble_averages_the_members_and_checks_each_file(tmp_path):
    from bundle.regression import MeanOfNetworks, load_ensemble, load_guide
    from bundle.weights import WeightsError, save_weights

    def unet():
        return BasicUNet(spatial_dims=2, in_channels=6, out_channels=1, features=(4, 4, 8, 8, 16, 4))

    arch = {"profile": "cpu", "features": [4, 4, 8, 8, 16, 4]}
    nets, paths = [], []
    for i in range(2):
        torch.manual_seed(i)
        nets.append(unet().eval())
        paths.append(tmp_path / f"g{i}.pt")
        save_weights(paths[i], nets[i], dict(arch, method="guide"))
    x = torch.rand(2, 6, 32, 32)
    with torch.no_grad():
        want = (nets[0](x) + nets[1](x)) / 2
        one = load_guide(unet(), paths[0], "cpu", arch["features"])
        assert not isinstance(one, MeanOfNetworks)  # one file: the network itself, as before
        assert torch.allclose(one(x), nets[0](x))
        ens = load_guide(unet(), [str(p) for p in paths], "cpu", arch["features"])
        assert isinstance(ens, MeanOfNetworks) and not ens.training
        assert torch.allclose(ens(x), want, atol=1e-6)
        assert not torch.allclose(ens(x), nets[0](x), atol=1e-4)  # both members count
    with pytest.raises(WeightsError, match="g9.pt"):
        load_ensemble(unet(), [paths[0], tmp_path / "g9.pt"], arch)
    with pytest.raises(WeightsError, match="features"):
        load_ensemble(unet(), paths, {"features": [8, 8, 8, 8, 8, 8]})
    with pytest.raises(WeightsError, match="at least one"):
        load_ensemble(unet(), [], arch)


def test_translation_inferer_draws_the_texture_only_when_given_one():
    from bundle.regression import TranslationVolumeInferer
    from bundle.texture import ScannerTexture

    tasks = {"lge": {"target": "DE", "conditions": ["C0", "T2"]}}
    net = lambda x: x[:, :1] * 0 + 0.5  # noqa: E731  a constant 'regressor' (B, 6, H, W) -> (B, 1, H, W)
    vol = torch.rand(1, 3, 32, 32, 2)
    plain = TranslationVolumeInferer("lge", tasks)(vol, net)
    tex = ScannerTexture(3)
    tex.kernels.fill_(0.01)
    a = TranslationVolumeInferer("lge", tasks, texture=tex, seed=3)(vol, net)
    b = TranslationVolumeInferer("lge", tasks, texture=tex, seed=3)(vol, net)
    torch.testing.assert_close(a, b)
    assert torch.all(plain == 0.5) and (a - plain).abs().mean() > 0.01

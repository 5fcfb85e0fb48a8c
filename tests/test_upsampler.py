"""bundle/upsampler.py: the texture upsampler (bicubic when untrained, seeded fresh noise, 2x size), its degraded
training input, the phase-free spectral loss, the sampler drawing only the kept sample with it (the mean of N
untouched), the image-space and autoencoder inferers, and the training workflow on the phantom."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet
from torch import nn

from bundle.data import bicubic_resize
from bundle.upsampler import DegradedReconstructionInferer, TextureLoss, TextureUpsampler, radial_log_power

FEATURES = (4, 4, 4, 4, 4, 4)


def _upsampler(perturb: bool = True) -> TextureUpsampler:
    torch.manual_seed(0)
    up = TextureUpsampler(BasicUNet(2, 2, 1, features=FEATURES))
    if perturb:  # the last convolution starts at zero: give it weights so noise reaches the output
        with torch.no_grad():
            for p in up.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return up.eval()


def test_untrained_upsampler_is_bicubic_upsampling():
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(_upsampler(perturb=False)(x), bicubic_resize(x, (32, 32)))


def test_draws_are_seeded_fresh_and_twice_the_size():
    up, x = _upsampler(), torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        a = up(x, generator=torch.Generator().manual_seed(1))
        b = up(x, generator=torch.Generator().manual_seed(1))
        c = up(x, generator=torch.Generator().manual_seed(2))
    assert a.shape == (2, 1, 32, 32)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().mean() > 1e-3  # another noise draw, another texture


class _Blur(nn.Module):
    """An 'autoencoder' (N, 1, H, W) -> ((N, 1, H, W), mu, sigma): a 3x3 mean, so its output is known."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), None, None


def test_degraded_input_is_the_reconstruction_at_half_size_blurred_at_random():
    x = torch.rand(4, 1, 32, 32)
    sharp = DegradedReconstructionInferer(_Blur(), max_sigma=0.0).degrade(x)
    want = _Blur()(torch.nn.functional.avg_pool2d(x, 2))[0].clamp(0, 1)
    torch.testing.assert_close(sharp, want)
    torch.manual_seed(0)
    blurred = DegradedReconstructionInferer(_Blur(), max_sigma=2.0, blur_prob=1.0).degrade(x)
    assert blurred.shape == sharp.shape and blurred.std() < sharp.std()  # blurring lowers the variance
    out = DegradedReconstructionInferer(_Blur(), max_sigma=0.0)(x, _upsampler())
    assert out.shape == x.shape


def test_spectral_term_ignores_phase_and_l1_does_not():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 32, 32, generator=g)
    shifted = torch.roll(y, shifts=(5, 7), dims=(-2, -1))  # same amplitude spectrum, other phase
    spectral_only = TextureLoss(1.0)(shifted, y) - torch.nn.functional.l1_loss(shifted, y)
    assert abs(float(spectral_only)) < 1e-5
    assert float(TextureLoss(1.0)(y, y)) == 0.0
    smooth = torch.nn.functional.avg_pool2d(y, 3, 1, 1)  # power lost: the spectral term sees it
    assert float(TextureLoss(1.0)(smooth, y)) > float(TextureLoss(0.0)(smooth, y)) + 1e-3
    radial = TextureLoss(0.0, radial_weight=1.0)
    assert float(radial(shifted, y) - torch.nn.functional.l1_loss(shifted, y)) == pytest.approx(0.0, abs=1e-3)
    big = torch.rand(2, 1, 128, 128, generator=g)  # a circular 3x3 mean: power lost at high frequencies only
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(big, (1, 1, 1, 1), mode="circular"), 3, 1)
    lost = radial_log_power(big) - radial_log_power(blurred)  # (B, bins)
    assert lost.shape == (2, 32) and (lost[:, 16:] > 2.0).all() and (lost[:, :3] < 0.1).all()


def test_coarse_l1_leaves_texture_below_the_input_scale_to_the_spectral_term():
    """With l1_factor 2 a zero-mean 2x2 texture (a checkerboard) costs nothing in the L1 term; at 1 it does."""
    y = torch.full((1, 1, 16, 16), 0.5)
    checker = 0.1 * (torch.arange(16)[:, None] + torch.arange(16)[None, :]).remainder(2).float().sub(0.5)
    textured = y + checker
    assert float(TextureLoss(0.0, l1_factor=2)(textured, y)) == pytest.approx(0.0, abs=1e-7)
    assert float(TextureLoss(0.0, l1_factor=1)(textured, y)) == pytest.approx(0.05, rel=1e-5)
    assert float(TextureLoss(1.0, l1_factor=2)(textured, y)) > 1e-3  # the spectral term sees the added power


def test_translation_and_autoencoder_inferers_draw_with_an_upsampler():
    from bundle.regression import TranslationVolumeInferer
    from bundle.vae import AutoencoderVolumeInferer

    tasks = {"lge": {"target": "DE", "conditions": ["C0", "T2"]}}
    net = lambda x: x[:, :1] * 0 + 0.5  # noqa: E731  a constant 'regressor'
    vol = torch.rand(1, 3, 32, 32, 2)
    plain = TranslationVolumeInferer("lge", tasks, image_size=16)(vol, net)
    drawn = TranslationVolumeInferer("lge", tasks, image_size=16, upsampler=_upsampler(), seed=3)(vol, net)
    again = TranslationVolumeInferer("lge", tasks, image_size=16, upsampler=_upsampler(), seed=3)(vol, net)
    torch.testing.assert_close(drawn, again)
    assert torch.allclose(plain, torch.full_like(plain, 0.5)) and (drawn - plain).abs().mean() > 1e-3
    rec = AutoencoderVolumeInferer(image_size=16, upsampler=_upsampler())(vol, _Blur())
    assert rec.shape == vol.shape


@pytest.mark.slow
def test_train_upsampler_workflow_on_the_phantom(tmp_path):
    """configs/train_upsampler.yaml on the embedded phantom with the shipped autoencoder: it trains, validates and
    exports weights that inference loads with --upsample true, writing a _sample different from the plain one."""
    import subprocess
    import sys

    import nibabel as nib

    from tests.conftest import REPO_ROOT

    if not (REPO_ROOT / "models" / "autoencoder_cpu.pt").is_file():
        pytest.skip("shipped autoencoder absent")
    run = [sys.executable, "-m", "monai.bundle", "run", "--config_file"]
    proc = subprocess.run([*run, "['configs/common.yaml','configs/train_upsampler.yaml']", "--output_dir",
                           str(tmp_path / "train"), "--max_epochs", "2", "--val_interval", "1", "--adv_warmup_epochs",
                           "1", "--upsampler_features", "[8, 8, 8, 8, 8, 8]", "--crop_size", "64"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = tmp_path / "train" / "models" / "upsampler_cpu.pt"
    assert weights.is_file() and "saved" in proc.stdout + proc.stderr
    samples = {}
    for k, extra in (("plain", []), ("up", ["--upsample", "true", "--upsampler_weights", str(weights),
                                          "--upsampler_features", "[8, 8, 8, 8, 8, 8]"])):
        out = tmp_path / k
        proc = subprocess.run([*run, "['configs/common.yaml','configs/inference.yaml']", "--task", "lge",
                               "--output_dir", str(out), "--num_samples", "2", "--views", "1",
                               "--num_inference_steps", "5", *extra], cwd=REPO_ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        samples[k] = [nib.load(f).get_fdata() for f in sorted(out.glob("*_DE_sample.nii.gz"))]
        synth = [nib.load(f).get_fdata() for f in sorted(out.glob("*_DE_synth.nii.gz"))]
        samples[k + "_mean"] = synth
    assert samples["up"] and all(a.shape == b.shape for a, b in zip(samples["up"], samples["plain"]))
    assert max(abs(a - b).mean() for a, b in zip(samples["up"], samples["plain"])) > 1e-4
    for a, b in zip(samples["up_mean"], samples["plain_mean"]):  # the mean of N: not drawn by the upsampler
        assert abs(a - b).max() < 1e-5

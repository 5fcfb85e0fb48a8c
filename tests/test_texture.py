"""bundle.texture: the filter from a power spectrum, the fit from real-minus-reconstruction residuals, the draw
inside the body only, and the sampler adding it to the sample output and never to the mean of N."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bundle.errors import ConfigError
from bundle.texture import ScannerTexture, fit_texture, kernel_from_power, wanted


def test_flat_power_gives_a_scaled_delta_and_white_noise_of_that_variance():
    k = kernel_from_power(np.full((64, 64), 0.04), 7)
    assert k.shape == (7, 7)
    assert k[3, 3] == pytest.approx(0.2, rel=1e-5) and np.abs(k).sum() == pytest.approx(0.2, rel=1e-5)
    tex = ScannerTexture(7)
    tex.kernels.copy_(torch.as_tensor(np.stack([k] * 3)))
    n = tex.noise((4, 64, 64), "DE", torch.Generator().manual_seed(0))
    assert n.shape == (4, 1, 64, 64) and n.std().item() == pytest.approx(0.2, rel=0.05)


class _Blur(nn.Module):
    """An 'autoencoder' that returns a blurred copy: (N, 1, H, W) -> ((N, 1, H, W), mu, sigma)."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), None, None


class _Identity(nn.Module):
    def forward(self, x):
        return x, None, None


def _slices(n=4, size=32, seed=0):
    g = np.random.default_rng(seed)
    return [{"image": (0.5 + 0.05 * g.standard_normal((3, size, size))).astype(np.float32)} for _ in range(n)]


def test_fit_matches_the_residual_variance_and_is_zero_for_a_perfect_autoencoder():
    slices = _slices(n=31)
    perfect = fit_texture(ScannerTexture(9), slices, _Identity(), None, progress=None)
    assert perfect.kernels.abs().max() == 0
    tex = fit_texture(ScannerTexture(9), slices, _Blur(), None, progress=None)
    x = torch.as_tensor(np.stack([s["image"] for s in slices]))
    body = x > 0  # every pixel: a stationary residual, no edges
    resid = (x - torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)) * body
    for c, seq in enumerate(("C0", "DE", "T2")):
        draw = tex.noise((64, 32, 32), seq, torch.Generator().manual_seed(c))
        expected = (resid[:, c].pow(2).sum() / body[:, c].sum()).sqrt().item()  # the residual's RMS in the body
        assert draw.std().item() == pytest.approx(expected, rel=0.1)


def test_draw_is_added_inside_the_body_only_clamped_and_seeded():
    tex = ScannerTexture(5)
    tex.kernels.fill_(0.02)
    img = torch.zeros(2, 1, 32, 32)
    img[:, :, 8:24, 8:24] = 0.6
    a = tex(img, "T2", torch.Generator().manual_seed(3))
    b = tex(img, "T2", torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert torch.equal(a[img == 0], img[img == 0])  # background (below 5 % of the p99.5) untouched
    assert (a[img > 0] - 0.6).abs().mean() > 0.01 and a.min() >= 0 and a.max() <= 1
    vol = img.permute(1, 2, 3, 0)[None]  # (1, 1, X, Y, S=2)
    assert tex.add_to_volume(vol, "T2").shape == vol.shape
    with pytest.raises(ValueError, match="odd"):
        ScannerTexture(4)


def test_the_knob(tmp_path):
    f = tmp_path / "texture_cpu.pt"
    assert wanted("auto", f) is False and wanted("true", f) is True and wanted(False, f) is False
    f.write_bytes(b"x")
    assert wanted("auto", f) is True
    with pytest.raises(ConfigError, match="true, false or auto"):
        wanted("maybe", f)


@pytest.mark.slow
def test_fit_texture_workflow_is_seeded_and_guarded(tmp_path):
    """configs/fit_texture.yaml on the embedded phantom (written by its provide_data step) with the shipped
    autoencoder: two runs give identical, non-zero kernels; writing into models/ needs --overwrite_shipped."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    if not (REPO_ROOT / "models" / "autoencoder_cpu.pt").is_file():
        pytest.skip("shipped autoencoder absent")
    base = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
            "['configs/common.yaml','configs/fit_texture.yaml']"]
    kernels = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        proc = subprocess.run([*base, "--output_dir", str(out)], cwd=REPO_ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "no --dataset_dir given" in proc.stdout + proc.stderr
        kernels.append(torch.load(out / "models" / "texture_cpu.pt", weights_only=True)["state_dict"]["kernels"])
    assert torch.equal(kernels[0], kernels[1]) and kernels[0].abs().sum() > 0
    shipped = (REPO_ROOT / "models" / "texture_cpu.pt").read_bytes()
    proc = subprocess.run([*base, "--output_dir", str(tmp_path / "g"), "--export_dir", str(REPO_ROOT / "models")],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "overwrite_shipped" in proc.stderr
    assert (REPO_ROOT / "models" / "texture_cpu.pt").read_bytes() == shipped

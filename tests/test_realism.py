"""bundle/realism.py: the C2ST recipe and its two controls on textured synthetic slices (no data needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from bundle import realism as R


def _slice(rng: np.random.Generator, n: int = 96) -> np.ndarray:
    """A textured 'body' (a disc of speckled tissue on a dark background), (n, n) in [0, 1]."""
    x, y = np.mgrid[:n, :n]
    disc = (x - n / 2) ** 2 + (y - n / 2) ** 2 < (0.4 * n) ** 2
    tissue = 0.5 + 0.25 * gaussian_filter(rng.standard_normal((n, n)), 1.0) + 0.08 * rng.standard_normal((n, n))
    return np.clip(np.where(disc, tissue, 0.01 * rng.random((n, n))), 0, 1).astype(np.float32)


def test_body_mask_and_patches():
    rng = np.random.default_rng(0)
    img = _slice(rng)
    body = R.body_mask(img)
    assert body[48, 48] and not body[0, 0]
    c = R.patch_centres(body, 100, rng)
    assert c.shape == (100, 2) and body[c[:, 0], c[:, 1]].all()
    assert (c >= 16).all() and (c <= 96 - 16).all()  # every 32x32 patch lies inside the slice
    p = R.sample_patches(img, c)
    assert p.shape == (100, 32, 32)
    np.testing.assert_allclose(p.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(p.std(axis=(1, 2)), 1, atol=1e-2)
    assert R.patch_centres(np.zeros((96, 96), bool), 5, rng).shape == (0, 2)


def _collect(fake) -> dict:
    rng = np.random.default_rng(1)
    col = R.C2STCollector(seed=0, per_slice=32)
    for case in range(6):
        for _ in range(2):
            real = _slice(rng)
            col.add(fake(real, rng), real, f"case{case}")
    return col.summary()


@pytest.mark.slow
def test_c2st_controls_and_a_blurred_synthesis():
    """Real vs real comes out near 0.5, real vs blurred near 1; a 'synthesis' that is another draw of the same texture
    is indistinguishable, one that is smoothed (what a regression does) is told apart."""
    s = _collect(lambda real, rng: _slice(rng))
    assert 0.35 <= s["control_real"]["accuracy"] <= 0.65, s["control_real"]
    assert s["control_blur"]["accuracy"] >= 0.85, s["control_blur"]
    assert 0.35 <= s["c2st"]["accuracy"] <= 0.65, s["c2st"]
    assert len(s["c2st"]["folds"]) == 3 and s["c2st"]["cases"] == 6 and s["c2st"]["patches"] == 2 * 12 * 32
    smooth = _collect(lambda real, rng: gaussian_filter(real, 1.5))
    assert smooth["c2st"]["accuracy"] >= 0.85, smooth["c2st"]
    assert smooth["recipe"]["epochs"] == 12 and smooth["recipe"]["patch"] == 32


def test_c2st_needs_two_cases():
    p = np.zeros((4, 32, 32), np.float32)
    assert math.isnan(R.c2st(p, ["a"] * 4, p, ["a"] * 4)["accuracy"])
    assert math.isnan(R.C2STCollector().summary()["c2st"]["accuracy"])

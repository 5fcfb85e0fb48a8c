"""Clinical fidelity and realism of a synthesized slice (docs/clinical_metrics.md).

Pure functions on 2D slices (torch tensors or numpy arrays, (X, Y), normalised [0, 1] units) and the MyoPS label
map of the slice (values 0, 200, 500, 600, 1220, 2221):

* lesion read-out inside the ground-truth myocardium {200, 1220, 2221}, remote = normal myocardium 200; lesion =
  scar 2221 for LGE (target DE), edema ∪ scar {1220, 2221} for T2; no read-out for bSSFP (C0): contrast ratio
  lesion/remote, reader-style threshold masks (FWHM and n-SD) and their Dice against the lesion label, lesion burden
  (% of the myocardium above the threshold) and its agreement between synthetic and real over slices;
* realism: high-frequency power ratio and mean gradient-magnitude ratio, synthetic / real (1 = as sharp as real);
* uncertainty calibration: Spearman correlation of the per-voxel std map with |synthetic − real|.

Undefined values (no lesion, no remote myocardium, no myocardium, no uncertainty map, a zero denominator) are NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from bundle.data import MYOCARDIUM_LABELS
from bundle.realism import body_mask

REMOTE_LABEL = 200
#: the sequence read-outs: lesion labels and default n of the n-SD threshold
LESION_LABELS: dict[str, tuple[int, ...]] = {"lge": (2221,), "t2": (1220, 2221)}
NSD_DEFAULT: dict[str, float] = {"lge": 5.0, "t2": 2.0}
#: which read-out a target sequence gets (C0 = bSSFP: none)
READOUT_OF_TARGET: dict[str, str | None] = {"DE": "lge", "T2": "t2", "C0": None}
FWHM_FRACTION = 0.5
HF_CUTOFF = 0.25  # cycles/pixel = half of Nyquist

#: per-slice columns (metrics.csv; averaged over slices in summary.json's "clinical" section)
LESION_COLUMNS = ("cr_real", "cr_synth", "cr_rel_error",
                  "dice_fwhm_real", "dice_fwhm_synth", "dice_nsd_real", "dice_nsd_synth",
                  "burden_fwhm_real", "burden_fwhm_synth", "burden_nsd_real", "burden_nsd_synth")
REALISM_COLUMNS = ("hf_ratio", "grad_ratio", "unc_spearman")
CLINICAL_COLUMNS = LESION_COLUMNS + REALISM_COLUMNS

Array = np.ndarray | torch.Tensor


def _np(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def readout_of(target: str) -> str | None:
    """The lesion read-out of a target sequence: ``"lge"`` (DE), ``"t2"`` (T2) or None (C0)."""
    return READOUT_OF_TARGET.get(target)


def regions(label: Array, readout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean (X, Y) masks (myocardium, lesion, remote) of a label slice (X, Y) for ``readout`` (lge, t2)."""
    lab = np.rint(_np(label).astype(np.float64)).astype(np.int64)
    myo = np.isin(lab, MYOCARDIUM_LABELS)
    return myo, np.isin(lab, LESION_LABELS[readout]) & myo, lab == REMOTE_LABEL


def contrast_ratio(image: Array, lesion: Array, remote: Array) -> float:
    """mean(image[lesion]) / mean(image[remote]) (unitless); NaN if either region is empty or the remote mean is 0."""
    img, les, rem = _np(image).astype(np.float64), _np(lesion).astype(bool), _np(remote).astype(bool)
    if not les.any() or not rem.any():
        return math.nan
    r = img[rem].mean()
    return float(img[les].mean() / r) if r > 1e-12 else math.nan


def relative_error(synth: float, real: float) -> float:
    """|synth − real| / real; NaN where either is NaN or real is 0."""
    if math.isnan(synth) or math.isnan(real) or real == 0:
        return math.nan
    return abs(synth - real) / abs(real)


def fwhm_mask(image: Array, myocardium: Array, fraction: float = FWHM_FRACTION) -> np.ndarray:
    """Voxels of the myocardium >= ``fraction`` · max(image in the myocardium) (X, Y) bool; empty without myocardium."""
    img, myo = _np(image).astype(np.float64), _np(myocardium).astype(bool)
    if not myo.any():
        return np.zeros_like(myo)
    return myo & (img >= fraction * img[myo].max())


def nsd_mask(image: Array, myocardium: Array, remote: Array, n: float) -> np.ndarray | None:
    """Voxels of the myocardium >= mean(remote) + n · std(remote) (population std) (X, Y) bool; None without remote."""
    img, myo, rem = _np(image).astype(np.float64), _np(myocardium).astype(bool), _np(remote).astype(bool)
    if not rem.any():
        return None
    return myo & (img >= img[rem].mean() + n * img[rem].std())


def dice(mask: Array | None, reference: Array) -> float:
    """Dice 2|A∩B| / (|A| + |B|) of ``mask`` against ``reference`` (X, Y); NaN if the reference is empty or mask None."""
    ref = _np(reference).astype(bool)
    if mask is None or not ref.any():
        return math.nan
    m = _np(mask).astype(bool)
    return float(2 * (m & ref).sum() / (m.sum() + ref.sum()))


def burden(mask: Array | None, myocardium: Array) -> float:
    """Lesion burden: % of the myocardium voxels in ``mask``; NaN without myocardium or mask."""
    myo = _np(myocardium).astype(bool)
    if mask is None or not myo.any():
        return math.nan
    return float(100.0 * (_np(mask).astype(bool) & myo).sum() / myo.sum())


def agreement(synth: Sequence[float], real: Sequence[float]) -> dict[str, float]:
    """Agreement of paired values over slices (pairs with a NaN are dropped): Pearson ``r``, ``bias`` = mean(synth −
    real), Bland–Altman 95% limits ``loa_low``/``loa_high`` = bias ∓ 1.96 · SD (sample SD, ddof 1) and ``n`` pairs.
    r is NaN below 2 pairs or for a constant series; the limits are NaN below 2 pairs."""
    s, r = np.asarray(synth, dtype=np.float64), np.asarray(real, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(r)
    s, r = s[ok], r[ok]
    out = {"r": math.nan, "bias": math.nan, "loa_low": math.nan, "loa_high": math.nan, "n": int(s.size)}
    if s.size == 0:
        return out
    d = s - r
    out["bias"] = float(d.mean())
    if s.size >= 2:
        sd = float(d.std(ddof=1))
        out["loa_low"], out["loa_high"] = out["bias"] - 1.96 * sd, out["bias"] + 1.96 * sd
        if s.std() > 0 and r.std() > 0:
            out["r"] = float(np.corrcoef(s, r)[0, 1])
    return out


def radial_power_spectrum(image: Array) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum |FFT2|² of an (X, Y) slice, mean subtracted: (frequencies in cycles/pixel,
    mean power per ring); rings are 1/min(X, Y) wide, up to Nyquist (0.5; the corners beyond it are not full rings)."""
    img = _np(image).astype(np.float64)
    img = img - img.mean()
    p = np.abs(np.fft.fft2(img)) ** 2
    fx, fy = np.meshgrid(np.fft.fftfreq(img.shape[0]), np.fft.fftfreq(img.shape[1]), indexing="ij")
    n = min(img.shape)
    ring = np.rint(np.hypot(fx, fy) * n).astype(np.int64)
    keep = ring <= n // 2
    total = np.bincount(ring[keep], weights=p[keep], minlength=n // 2 + 1)
    count = np.bincount(ring[keep], minlength=n // 2 + 1)
    return np.arange(n // 2 + 1) / n, total / np.maximum(count, 1)


def hf_power(image: Array, cutoff: float = HF_CUTOFF) -> float:
    """High-frequency power: sum of the radially averaged power spectrum over rings > ``cutoff`` cycles/pixel."""
    f, p = radial_power_spectrum(image)
    return float(p[f > cutoff].sum())


def hf_power_ratio(synth: Array, real: Array, cutoff: float = HF_CUTOFF) -> float:
    """hf_power(synth) / hf_power(real); 1 = as much fine detail (and noise) as the real scan, < 1 = smoother."""
    h = hf_power(real, cutoff)
    return hf_power(synth, cutoff) / h if h > 0 else math.nan


def mean_gradient(image: Array, mask: np.ndarray | None = None) -> float:
    """Mean gradient magnitude of an (X, Y) slice (central differences, ``np.gradient``), per pixel of ``mask``
    (bool (X, Y); None: the whole slice)."""
    gx, gy = np.gradient(_np(image).astype(np.float64))
    g = np.hypot(gx, gy)
    return float(g[mask].mean() if mask is not None else g.mean())


def gradient_ratio(synth: Array, real: Array) -> float:
    """mean_gradient(synth) / mean_gradient(real) inside the body of the real slice (> 5 % of its p99.5,
    :func:`bundle.realism.body_mask`); 1 = edges as strong as the real scan; NaN for a flat real slice."""
    body = body_mask(_np(real))
    if not body.any():
        return math.nan
    g = mean_gradient(real, body)
    return mean_gradient(synth, body) / g if g > 0 else math.nan


def uncertainty_spearman(std: Array | None, synth: Array, real: Array) -> float:
    """Spearman rank correlation of the per-voxel std map with |synth − real| over the field of view = voxels where
    real or synth > 0 (the zero padding and exact-zero air are left out); NaN without a map, below 3 voxels or when
    either is constant."""
    if std is None:
        return math.nan
    from scipy.stats import spearmanr

    u, p, r = (_np(a).astype(np.float64) for a in (std, synth, real))
    if u.shape != p.shape:
        return math.nan
    fov = (r > 0) | (p > 0)
    if fov.sum() < 3:
        return math.nan
    u, e = u[fov], np.abs(p - r)[fov]
    if np.ptp(u) == 0 or np.ptp(e) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(u, e)[0]
    return float(rho)


def clinical_slice_metrics(synth: Array, real: Array, label: Array | None, readout: str | None,
                           std: Array | None = None, fwhm_fraction: float = FWHM_FRACTION,
                           nsd: float | None = None, hf_cutoff: float = HF_CUTOFF) -> dict[str, float]:
    """All :data:`CLINICAL_COLUMNS` of one slice plus ``lesion_px`` (lesion voxels, NaN without read-out/label).

    ``synth``, ``real`` (X, Y) normalised; ``label`` (X, Y) MyoPS label map or None (-> NaN lesion columns);
    ``readout`` ``"lge"``/``"t2"``/None; ``std`` (X, Y) per-voxel std of the samples or None; ``nsd`` = n of the
    n-SD threshold (None: 5 for lge, 2 for t2)."""
    out = {k: math.nan for k in LESION_COLUMNS}
    out["lesion_px"] = math.nan
    out["hf_ratio"] = hf_power_ratio(synth, real, hf_cutoff)
    out["grad_ratio"] = gradient_ratio(synth, real)
    out["unc_spearman"] = uncertainty_spearman(std, synth, real)
    if readout is None or label is None:
        return out
    myo, lesion, remote = regions(label, readout)
    out["lesion_px"] = float(lesion.sum())
    n = NSD_DEFAULT[readout] if nsd is None else nsd
    for name, img in (("real", real), ("synth", synth)):
        out[f"cr_{name}"] = contrast_ratio(img, lesion, remote)
        fw, sd = fwhm_mask(img, myo, fwhm_fraction), nsd_mask(img, myo, remote, n)
        out[f"dice_fwhm_{name}"], out[f"dice_nsd_{name}"] = dice(fw, lesion), dice(sd, lesion)
        out[f"burden_fwhm_{name}"], out[f"burden_nsd_{name}"] = burden(fw, myo), burden(sd, myo)
    out["cr_rel_error"] = relative_error(out["cr_synth"], out["cr_real"])
    return out

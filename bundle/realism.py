"""Realism: a two-sample classifier test (C2ST) that tells real from synthetic texture (docs/clinical_metrics.md).

The frozen recipe (issue 31; fixed before any synthesis was scored): 32×32 patches whose centre lies inside the body
(reference > 5 % of its 99.5th percentile), each z-scored (texture, not intensity); 48 patches per slice and class,
drawn at independent random positions for each class; a CNN of three 3×3 conv layers (16, 32, 32 channels, ReLU,
max-pool after the first two, global average pool, linear); Adam 1e-3, 12 epochs, batch 32; 3 folds split by case;
the result is the mean test accuracy (0.5 = indistinguishable, 1 = always told apart). Controls on the same slices:
real vs real (must be near 0.5) and real vs real blurred by a Gaussian of σ = 1 px (must be high).

The issue's starting recipe (8 epochs, batch 64, σ = 0.75 px) had not converged: on the tuning fold's real LGE slices
(the control only, no synthesis) it told the blurred scan apart 0.64 of the time; 12 epochs of batch 32 (3× the
optimizer steps) gave 0.69 at σ = 0.75 and 0.79 at σ = 1 (docs/clinical_metrics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

PATCH, PER_SLICE, BODY_FRACTION, BLUR_SIGMA = 32, 48, 0.05, 1.0
FOLDS, EPOCHS, BATCH, LR = 3, 12, 32, 1e-3


def body_mask(reference: np.ndarray, fraction: float = BODY_FRACTION) -> np.ndarray:
    """Voxels of an (X, Y) reference slice above ``fraction`` × its 99.5th percentile (bool (X, Y))."""
    ref = np.asarray(reference, dtype=np.float64)
    return ref > fraction * np.percentile(ref, 99.5)


def sample_patches(image: np.ndarray, centres: np.ndarray, size: int = PATCH) -> np.ndarray:
    """z-scored ``size``² patches of an (X, Y) ``image`` at ``centres`` (n, 2) -> (n, size, size) float32."""
    img = np.asarray(image, dtype=np.float32)
    h = size // 2
    p = np.stack([img[x - h:x - h + size, y - h:y - h + size] for x, y in centres]) if len(centres) else \
        np.zeros((0, size, size), np.float32)
    mu, sd = p.mean(axis=(1, 2), keepdims=True), p.std(axis=(1, 2), keepdims=True)
    return ((p - mu) / (sd + 1e-6)).astype(np.float32)


def patch_centres(body: np.ndarray, n: int, rng: np.random.Generator, size: int = PATCH) -> np.ndarray:
    """``n`` random centres (n, 2) inside ``body`` (X, Y) whose ``size``² patch lies inside the slice (drawn with
    replacement; (0, 2) when the body has no such voxel)."""
    h = size // 2
    valid = np.zeros_like(body, dtype=bool)
    valid[h:body.shape[0] - (size - h) + 1, h:body.shape[1] - (size - h) + 1] = True
    idx = np.argwhere(body & valid)
    if len(idx) == 0:
        return np.zeros((0, 2), np.int64)
    return idx[rng.integers(0, len(idx), size=n)]


class PatchClassifier(nn.Module):
    """Real-vs-synthetic patch CNN: (B, 1, 32, 32) -> logits (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))[:, 0]


def _fit_and_score(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, seed: int) -> float:
    """Train :class:`PatchClassifier` on (n, 32, 32) patches with labels 0/1 and return its test accuracy."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PatchClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    x, y = torch.from_numpy(xtr)[:, None], torch.from_numpy(ytr).float()
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            b = order[i:i + BATCH]
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = (net(torch.from_numpy(xte)[:, None]) > 0).numpy()
    return float((pred == (yte > 0.5)).mean())


def c2st(a: np.ndarray, a_groups: list[str], b: np.ndarray, b_groups: list[str], folds: int = FOLDS,
         seed: int = 0) -> dict:
    """Two-sample classifier test of patch sets ``a`` (class 0) and ``b`` (class 1), (n, 32, 32) each, with the case
    of each patch in ``*_groups``: cases are split into ``folds`` folds (sorted, round robin), a classifier is trained
    on the other folds and tested on each; ``{"accuracy": mean test accuracy, "folds": [...], "patches": n}`` (NaN
    accuracy with fewer than 2 cases)."""
    cases = sorted(set(a_groups) | set(b_groups))
    out = {"accuracy": math.nan, "folds": [], "patches": int(len(a) + len(b)), "cases": len(cases)}
    if len(cases) < 2 or len(a) == 0 or len(b) == 0:
        return out
    k = min(folds, len(cases))
    fold_of = {c: i % k for i, c in enumerate(cases)}
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a), np.float32), np.ones(len(b), np.float32)])
    f = np.array([fold_of[c] for c in [*a_groups, *b_groups]])
    accs = []
    for i in range(k):
        te = f == i
        if te.all() or not te.any() or len(set(y[~te])) < 2:
            continue
        accs.append(_fit_and_score(x[~te], y[~te], x[te], y[te], seed + i))
    out["folds"] = accs
    out["accuracy"] = float(np.mean(accs)) if accs else math.nan
    return out


@dataclass
class C2STCollector:
    """Collects, slice by slice, the patches of the synthesis and of the reference (plus the two controls) and runs
    :func:`c2st` on them. Patch positions come from a generator seeded by ``seed``, so a rerun draws the same ones."""

    seed: int = 0
    per_slice: int = PER_SLICE
    real: list = field(default_factory=list)
    real2: list = field(default_factory=list)
    blurred: list = field(default_factory=list)
    synth: list = field(default_factory=list)
    groups: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def reset(self) -> None:
        for v in (self.real, self.real2, self.blurred, self.synth, self.groups):
            v.clear()
        self.rng = np.random.default_rng(self.seed)

    def add(self, synth: np.ndarray, real: np.ndarray, case: str) -> None:
        """One (X, Y) slice pair: four independent position draws (real, synth, real again, blurred real)."""
        from scipy.ndimage import gaussian_filter

        real = np.asarray(real, dtype=np.float32)
        body = body_mask(real)
        draws = [patch_centres(body, self.per_slice, self.rng) for _ in range(4)]
        if any(len(d) == 0 for d in draws):
            return
        self.real.append(sample_patches(real, draws[0]))
        self.synth.append(sample_patches(synth, draws[1]))
        self.real2.append(sample_patches(real, draws[2]))
        self.blurred.append(sample_patches(gaussian_filter(real, BLUR_SIGMA), draws[3]))
        self.groups.append(case)

    def summary(self) -> dict:
        """``{"c2st": synthetic vs real, "control_real": real vs real, "control_blur": real vs blurred real}``, each a
        :func:`c2st` result; the recipe's constants under ``"recipe"``."""
        recipe = dict(patch=PATCH, per_slice=self.per_slice, body_fraction=BODY_FRACTION, blur_sigma=BLUR_SIGMA,
                      folds=FOLDS, epochs=EPOCHS, batch=BATCH, lr=LR, seed=self.seed)
        if not self.groups:
            empty = {"accuracy": math.nan, "folds": [], "patches": 0, "cases": 0}
            return {"c2st": empty, "control_real": empty, "control_blur": empty, "recipe": recipe}
        g = [c for c in self.groups for _ in range(self.per_slice)]
        real = np.concatenate(self.real)
        return {"c2st": c2st(real, g, np.concatenate(self.synth), g, seed=self.seed),
                "control_real": c2st(real, g, np.concatenate(self.real2), g, seed=self.seed),
                "control_blur": c2st(real, g, np.concatenate(self.blurred), g, seed=self.seed),
                "recipe": recipe}

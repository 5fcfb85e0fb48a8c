"""The few dictionary transforms MONAI lacks: loading whose read errors name the file, case validation, sequence
stacking, the intensity protocol, the myocardium mask and pasting a field-of-view slab back onto the native grid.

Intensity protocol (also the evaluation protocol): per case and sequence, take the ``fov``×``fov`` centre
crop of the native grid (offset ``floor((X-fov)/2)``; if smaller, ``floor((fov-X)/2)`` zeros before; MONAI
``ResizeWithPadOrCropd``), clip to ``[0, p99.5]`` of that crop and divide by ``p99.5`` so values lie in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import LoadImaged, MapTransform

from bundle.data import LABEL_VALUES, MYOCARDIUM_LABELS, SEQUENCES, DataError, check_geometry


def _name(d: Mapping, key: Hashable) -> str:
    meta = getattr(d[key], "meta", {}) or {}
    return str(meta.get("filename_or_obj", key))


class _NamingLoader:
    """Wraps ``LoadImage``: any failure to read a file (missing, not an image, a truncated ``.nii.gz`` whose
    decompression ends early with a bare ``EOFError``/``zlib.error``) becomes a :class:`DataError` naming it."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __call__(self, filename, reader=None):
        try:
            return self.loader(filename, reader)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the reader raised, the file is what is wrong
            if isinstance(filename, (str, os.PathLike)) and not os.path.exists(filename):
                raise DataError(f"{filename}: file not found") from None
            raise DataError(f"{filename}: cannot read it as an image ({type(e).__name__}: {e})") from None

    def __getattr__(self, name: str):  # image_only, readers, register, ... of the wrapped LoadImage
        if name == "loader":  # not set yet (unpickling in a DataLoader worker)
            raise AttributeError(name)
        return getattr(self.loader, name)


class LoadCased(LoadImaged):
    """``LoadImaged`` whose read errors are a :class:`DataError` naming the file (see ``_NamingLoader``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loader = _NamingLoader(self._loader)


class ValidateCased(MapTransform):
    """Refuse a case that is not a set of finite 3D volumes on one grid, has an all-zero image slice, or whose
    label has unknown values.

    Runs after ``LoadImaged`` (no channel dim yet); every message names the offending file.
    """

    def __init__(self, keys: KeysCollection, label_key: str = "gd", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key = label_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        keys = [k for k in self.key_iterator(d)]
        if not keys:
            raise DataError(f"no image among {list(self.keys)} in case {d.get('case', '?')}")
        check_geometry({k: tuple(d[k].shape) for k in keys},
                       {k: np.asarray(getattr(d[k], "affine", np.eye(4))) for k in keys}, {k: _name(d, k) for k in keys})
        for k in keys:
            arr, shape = d[k], tuple(d[k].shape)
            t = torch.as_tensor(arr)
            if not torch.isfinite(t).all():
                raise DataError(f"{_name(d, k)}: contains NaN or infinite voxels")
            if k != self.label_key:
                empty = [s for s in range(shape[-1]) if not bool(t[..., s].any())]
                if empty:
                    raise DataError(f"{_name(d, k)}: slice(s) {empty} are all zero (nothing to synthesize from)")
            if k == self.label_key:
                bad = sorted(set(torch.unique(t).int().tolist()) - set(LABEL_VALUES))
                if bad:
                    raise DataError(f"{_name(d, k)}: unknown label values {bad[:10]} (expected {list(LABEL_VALUES)})")
        return d


class StackSequencesd(MapTransform):
    """Stack the sequences present into ``image`` (3, X, Y, S) in canonical order C0, DE, T2.

    A missing sequence (the one to synthesize) becomes zeros; ``present`` records which were given.
    """

    def __init__(self, keys: KeysCollection = SEQUENCES, name: str = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.name = name

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        given = [k for k in self.keys if k in d]
        ref = d[given[0]]
        chans = [torch.as_tensor(d.pop(k)).float() if k in given else torch.zeros_like(torch.as_tensor(ref)).float()
                 for k in self.keys]
        d[self.name] = torch.cat(chans, 0)
        d["present"] = [k in given for k in self.keys]
        return d


def normalize_fov(x: torch.Tensor, upper_percentile: float = 99.5) -> torch.Tensor:
    """Clip each channel of ``x`` (C, ...) to [0, p_upper] and scale to [0, 1]; an all-zero channel stays zero."""
    x = torch.as_tensor(x).float()
    his = np.percentile(x.reshape(x.shape[0], -1).cpu().numpy(), upper_percentile, axis=1)
    out = [torch.zeros_like(x[c]) if hi <= 0 else x[c].clamp(0, float(hi)) / float(hi) for c, hi in enumerate(his)]
    return torch.stack(out)


class NormalizeFOVd(MapTransform):
    """The intensity protocol on ``image`` (C, X, Y, S) already cropped to the field of view."""

    def __init__(self, keys: KeysCollection = "image", upper_percentile: float = 99.5) -> None:
        super().__init__(keys)
        self.upper_percentile = upper_percentile

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = normalize_fov(d[k], self.upper_percentile)
        return d


class MyocardiumMaskd(MapTransform):
    """``mask`` = label ∈ {200, 1220, 2221} as float (1, X, Y, S); no-op when the label is absent."""

    def __init__(self, label_key: str = "gd", mask_key: str = "mask", labels: Sequence[int] = MYOCARDIUM_LABELS):
        super().__init__(label_key, allow_missing_keys=True)
        self.mask_key, self.labels = mask_key, list(labels)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            lab = torch.as_tensor(d[k])
            d[self.mask_key] = torch.isin(lab, torch.tensor(self.labels, dtype=lab.dtype)).float()
        return d


def fov_offsets(native: Sequence[int], fov: int) -> tuple[int, int]:
    """Offsets of the centred ``fov`` crop in the native (X, Y) plane (negative = padding), exactly as MONAI's
    ``ResizeWithPadOrCrop``: crop start ``X//2 - fov//2`` (= ``floor((X-fov)/2)`` for an even fov), zero padding
    ``floor((fov-X)/2)`` before (so an odd padding width puts the extra zero row after the image)."""
    return tuple(n // 2 - fov // 2 if n >= fov else -((fov - n) // 2) for n in native[:2])


def paste_fov(slab: np.ndarray, native_shape: Sequence[int]) -> np.ndarray:
    """Inverse of the FOV crop: put ``slab`` (fov, fov, S) onto a zero volume of ``native_shape`` (X, Y, S).

    Voxels outside the field of view are 0; padded rows (native smaller than the FOV) are dropped.
    """
    fov = slab.shape[0]
    out = np.zeros(tuple(native_shape), dtype=slab.dtype)
    ox, oy = fov_offsets(native_shape, fov)
    sx, sy = max(0, -ox), max(0, -oy)  # start inside the slab when the native grid is smaller
    tx, ty = max(0, ox), max(0, oy)  # start inside the native grid
    nx, ny = min(fov - sx, native_shape[0] - tx), min(fov - sy, native_shape[1] - ty)
    out[tx : tx + nx, ty : ty + ny] = slab[sx : sx + nx, sy : sy + ny]
    return out

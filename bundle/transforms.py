"""The few dictionary transforms MONAI lacks: loading whose read errors name the file, case validation, sequence
stacking, the intensity protocol, the myocardium mask, pasting a field-of-view slab back onto the native grid, and
the latent flips and rot90 drawn for a whole batch (``BatchFlipRot90d``).

Geometry (``CanonicalGeometryd``, ``FieldOfViewd``): the case is reoriented (slice axis last, in-plane axes as in
the training data), resampled in-plane to the training pixel spacing (``target_spacing``; or left on its native
grid with ``target_spacing: native``), and the ``fov``×``fov`` centre of that field is what the model sees; the
whole field is kept as ``field`` (see ``bundle.fill.FillFieldd`` for how it is synthesized and
``bundle.io.SaveSynthesisd`` for how it is mapped back).

Intensity protocol (also the evaluation protocol): per case and sequence, take the ``fov``×``fov`` centre
crop (offset ``floor((X-fov)/2)``; if smaller, ``floor((fov-X)/2)`` zeros before; MONAI
``ResizeWithPadOrCropd``), clip to ``[0, p99.5]`` of that crop and divide by ``p99.5`` so values lie in [0, 1]; a
signed input (PSIR LGE) is windowed on both sides instead, ``[p0.5, p99.5]`` -> [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import LoadImaged, MapTransform, Randomizable, Transform

from bundle.data import (
    LABEL_VALUES,
    MYOCARDIUM_LABELS,
    SEQUENCES,
    DataError,
    check_geometry,
)
from bundle.errors import ConfigError, is_null, number


def _name(d: Mapping, key: Hashable) -> str:
    meta = getattr(d[key], "meta", {}) or {}
    return str(meta.get("filename_or_obj", key))


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a reader raises for a file that is not a readable image: OS errors, a truncated ``.nii.gz``
    (``EOFError``/``zlib.error``), nibabel's ``ImageFileError``/``HeaderDataError`` and the ``ValueError`` of a
    malformed header, MONAI's "no suitable reader" ``RuntimeError`` (told apart by its message, see ``__call__``)."""
    import zlib

    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    return OSError, EOFError, zlib.error, ImageFileError, HeaderDataError, ValueError, RuntimeError


class _NamingLoader:
    """Wraps ``LoadImage``: a failure to read a file (missing, not an image, a truncated ``.nii.gz`` whose
    decompression ends early with a bare ``EOFError``/``zlib.error``) becomes a :class:`DataError` naming it; any other
    exception (a bug in a library or here) keeps its type and traceback."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __call__(self, filename, reader=None):
        if isinstance(filename, (str, os.PathLike)) and not os.path.exists(filename):
            raise DataError(f"{filename}: file not found")
        try:
            return self.loader(filename, reader)
        except DataError:
            raise
        except _read_errors() as e:
            if isinstance(e, RuntimeError) and "reader" not in str(e).lower():
                raise  # a RuntimeError that is not MONAI's "cannot find a suitable reader": a bug, not the file
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
    """The intensity protocol on ``image`` (C, X, Y, S) already cropped to the field of view.

    The window of each channel comes from the field of view (:func:`intensity_windows`): ``[0, p_upper]``, or for
    a signed channel (PSIR LGE: more than ``signed_fraction`` of the voxels negative) ``[p_lo, p_hi]`` of
    ``signed_percentiles`` (``signed_fraction`` None: the old ``[0, p_upper]`` window for every input). The same
    windows are applied to ``field_key`` (the whole field, when present) and recorded in ``norm`` (a JSON string:
    one ``{sequence, lo, hi, signed, percentiles}`` per channel).
    """

    def __init__(self, keys: KeysCollection = "image", upper_percentile: float = 99.5, field_key: str | None = None,
                 signed_fraction: float | None = None, signed_percentiles: Sequence[float] = (0.5, 99.5),
                 sequences: Sequence[str] = SEQUENCES) -> None:
        super().__init__(keys)
        self.upper_percentile, self.field_key = upper_percentile, field_key
        if is_null(signed_fraction, "false", "off"):
            signed_fraction = None
        if isinstance(signed_fraction, bool):
            signed_fraction = 0.01 if signed_fraction else None
        self.signed_fraction, self.signed_percentiles = signed_fraction, tuple(float(v) for v in signed_percentiles)
        self.sequences = list(sequences)

    def __call__(self, data: Mapping) -> dict:
        import json

        d = dict(data)
        for k in self.key_iterator(d):
            wins = intensity_windows(d[k], self.upper_percentile, self.signed_fraction, self.signed_percentiles)
            d[k] = apply_windows(d[k], wins)
            if self.field_key and self.field_key in d:
                d[self.field_key] = apply_windows(d[self.field_key], wins)
            present = d.get("present", [True] * len(wins))
            d["norm"] = json.dumps([dict(w, sequence=self.sequences[c] if c < len(self.sequences) else str(c),
                                         present=bool(present[c])) for c, w in enumerate(wins)])
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


# --- geometry: orientation, in-plane spacing, field of view (issue 16) ------------------------------------------

# World (RAS) direction cosines of the voxel axes 0, 1, 2 of the training data: the normalised mean of the 25
# myops_training_* affines (every one of them within 27 degrees of it per axis). Axis 0 ~ left-posterior, axis 1 ~
# superior, axis 2 (the slice axis) ~ right-posterior-superior: the orientation the shipped models were trained on.
TRAINING_AXES = np.array([[-0.69, -0.71, -0.13], [-0.35, 0.19, 0.92], [0.63, -0.67, 0.39]])
ANISOTROPY = 1.5  # the slice axis' spacing must be >= this x the in-plane spacing ...
MAX_STACK_SLICES = 32  # ... or, without such an axis (e.g. a unit affine), the stack may have at most this many slices
_FLIP = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def is_native(target_spacing) -> bool:
    """``target_spacing`` None/0/'native'/'none'/'null' = the native grid (the shipped weights' training path)."""
    if is_null(target_spacing, "native", "0"):
        return True
    try:
        return number(target_spacing, "target_spacing") <= 0
    except ConfigError:
        raise ConfigError(f"target_spacing must be a pixel size in mm (> 0) or 'native', got {target_spacing!r}") \
            from None


def stack_slice_axis(affine: np.ndarray, shape: Sequence[int], name: str) -> int:
    """The slice axis of a 2D multi-slice stack: the axis with the largest spacing when it is >= ``ANISOTROPY`` x
    the others; else (no such axis) the last axis if it has at most ``MAX_STACK_SLICES`` slices. Anything else
    (a 4D cine, an isotropic 3D volume) is refused with a :class:`DataError` naming the file."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        kind = "a 4D series (e.g. cine: X, Y, slices, time)" if len(shape) == 4 else f"a {len(shape)}D image"
        raise DataError(f"{name}: {kind} of shape {shape}; CMRDiff takes 2D multi-slice short-axis stacks "
                        "(3D: X, Y, slices); pass one time frame / one stack per file")
    sp = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    order = np.argsort(sp)
    if sp[order[2]] >= ANISOTROPY * sp[order[1]]:
        return int(order[2])
    if shape[2] <= MAX_STACK_SLICES:
        return 2
    raise DataError(f"{name}: looks like an isotropic 3D volume (shape {shape}, spacing "
                    f"{tuple(round(float(s), 3) for s in sp)} mm): CMRDiff takes 2D multi-slice short-axis stacks "
                    f"(thick slices, at most {MAX_STACK_SLICES} slices without a slice spacing "
                    f">= {ANISOTROPY}x the pixel size); reformat it to short-axis slices first")


def canonical_axcodes(affine: np.ndarray, slice_axis: int, reference: np.ndarray = TRAINING_AXES) -> str:
    """Target axis codes (for MONAI ``Orientation``) of the signed in-plane permutation of the input's axes, with
    the slice axis last, whose directions are closest to ``reference`` (rows: world directions of the training
    data's voxel axes). Flipped or in-plane-transposed copies of one image give the same canonical array."""
    import nibabel as nib

    a = np.asarray(affine, float)[:3, :3]
    dirs = a / np.linalg.norm(a, axis=0)
    inplane = [i for i in range(3) if i != slice_axis]
    best, best_score = None, -np.inf
    for perm in (inplane, inplane[::-1]):
        for signs in ((1, 1, 1), (1, 1, -1), (1, -1, 1), (1, -1, -1), (-1, 1, 1), (-1, 1, -1), (-1, -1, 1),
                      (-1, -1, -1)):
            axes = (perm[0], perm[1], slice_axis)
            score = sum(s * float(dirs[:, ax] @ reference[i]) for i, (ax, s) in enumerate(zip(axes, signs)))
            if score > best_score + 1e-9:
                best, best_score = (axes, signs), score
    codes = nib.aff2axcodes(np.asarray(affine, float))
    axes, signs = best
    return "".join(codes[ax] if s > 0 else _FLIP[codes[ax]] for ax, s in zip(axes, signs))


class CanonicalGeometryd(MapTransform):
    """Orientation and in-plane spacing of a case (every key on the same grid, (1, X, Y, S) MetaTensors):

    1. find the slice axis (:func:`stack_slice_axis`; 4D and isotropic 3D inputs are refused);
    2. reorient (MONAI ``Orientation``, a lossless flip/transpose) to :func:`canonical_axcodes`: slice axis last,
       in-plane axes as in the training data;
    3. resample in-plane to ``target_spacing`` mm (MONAI ``Spacing`` with pixdim ``(s, s, 0)``: the slice spacing
       and slice positions are kept), bilinear for images, nearest for ``label_key``.

    ``target_spacing`` None/0/'native' leaves the data as stored (the native grid: the path the shipped weights
    were trained through). Records ``geometry`` (a JSON string: input spacing/codes, canonical codes, spacing used).
    """

    def __init__(self, keys: KeysCollection, target_spacing=None, label_key: str = "gd",
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.native = is_native(target_spacing)
        self.target_spacing = None if self.native else float(target_spacing)
        self.label_key = label_key

    def __call__(self, data: Mapping) -> dict:
        import json

        import nibabel as nib
        from monai.transforms import Orientation, Spacing

        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        ref = d[keys[0]]
        affine = np.asarray(torch.as_tensor(getattr(ref, "affine", torch.eye(4))).double())
        shape = tuple(ref.shape[1:])
        ax = stack_slice_axis(affine, shape, _name(d, keys[0]))
        geo = {"input_shape": list(shape), "input_spacing_mm": [round(float(v), 4) for v in
                                                                np.linalg.norm(affine[:3, :3], axis=0)],
               "input_axcodes": "".join(nib.aff2axcodes(affine)), "slice_axis": ax}
        if self.native:
            if ax != 2:
                raise DataError(f"{_name(d, keys[0])}: the slice axis (largest spacing) is axis {ax}, not the last; "
                                "the native-grid path (target_spacing native) takes (X, Y, slices) stacks only")
            geo.update(target_spacing_mm=None, axcodes=geo["input_axcodes"])
        else:
            codes = canonical_axcodes(affine, ax)
            s = self.target_spacing
            for k in keys:
                x = Orientation(axcodes=codes, labels=(("L", "R"), ("P", "A"), ("I", "S")))(d[k])
                mode = "nearest" if k == self.label_key else "bilinear"
                d[k] = Spacing(pixdim=(s, s, 0), mode=mode, padding_mode="border")(x)
            geo.update(target_spacing_mm=s, axcodes=codes, shape=list(d[keys[0]].shape[1:]))
        d["geometry"] = json.dumps(geo)
        return d


class FieldOfViewd(MapTransform):
    """Keep the whole (resampled) field as ``field_key`` with its affine (``field_affine``, 4x4 float64), then
    crop/pad ``keys`` to the model's ``fov`` x ``fov`` centre (MONAI ``ResizeWithPadOrCrop``, the offsets of
    :func:`fov_offsets`)."""

    def __init__(self, keys: KeysCollection, fov: int, image_key: str = "image", field_key: str = "field",
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        from monai.transforms import ResizeWithPadOrCropd

        self.image_key, self.field_key, self.fov = image_key, field_key, int(fov)
        self.crop = ResizeWithPadOrCropd(keys, spatial_size=[self.fov, self.fov, -1], allow_missing_keys=True)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.field_key and self.image_key in d:
            img = d[self.image_key]
            d[self.field_key] = img
            d["field_affine"] = np.asarray(torch.as_tensor(getattr(img, "affine", torch.eye(4))).double())
        return self.crop(d)


def intensity_windows(x: torch.Tensor, upper_percentile: float = 99.5, signed_fraction: float | None = 0.01,
                      signed_percentiles: Sequence[float] = (0.5, 99.5)) -> list[dict]:
    """Per channel of ``x`` (C, ...) the window mapped to [0, 1]: ``[0, p_upper]`` (magnitude images, the training
    protocol), or for a signed channel (more than ``signed_fraction`` of its voxels < 0, e.g. PSIR LGE; None = never)
    ``[p_lo, p_hi]`` of ``signed_percentiles``, both sides."""
    arr = torch.as_tensor(x).float().reshape(x.shape[0], -1).cpu().numpy()
    out = []
    for c in arr:
        signed = signed_fraction is not None and float((c < 0).mean()) > float(signed_fraction)
        if signed:
            lo, hi = (float(v) for v in np.percentile(c, list(signed_percentiles)))
            out.append({"lo": lo, "hi": hi, "signed": True, "percentiles": [float(p) for p in signed_percentiles]})
        else:
            out.append({"lo": 0.0, "hi": float(np.percentile(c, upper_percentile)), "signed": False,
                        "percentiles": [None, float(upper_percentile)]})
    return out


def apply_windows(x: torch.Tensor, windows: Sequence[Mapping]) -> torch.Tensor:
    """Clip each channel of ``x`` to its window and map it to [0, 1]; an empty window gives zeros."""
    x = torch.as_tensor(x).float()
    out = [torch.zeros_like(x[c]) if w["hi"] <= w["lo"] else (x[c].clamp(w["lo"], w["hi"]) - w["lo"]) / (w["hi"] - w["lo"])
           for c, w in enumerate(windows)]
    return torch.stack(out)


LATENT_AUGMENT_MODES = ("dataset", "batch")


def per_slice(transforms: Sequence, mode: str) -> list:
    """The latent flips and rot90 as per-slice DataLoader transforms (``mode`` ``dataset``, the shipped recipe) or
    none there (``batch``: :class:`BatchFlipRot90d` draws them for the whole batch in the prepare batch)."""
    if mode not in LATENT_AUGMENT_MODES:
        raise ConfigError(f"latent_augment_mode must be one of {list(LATENT_AUGMENT_MODES)}, got {mode!r}")
    return list(transforms) if mode == "dataset" else []


class BatchFlipRot90d(Randomizable, Transform):
    """The latent augmentation of the training slices (MONAI ``RandFlipd`` on spatial axis 0, then on axis 1, then
    ``RandRotate90d`` with ``max_k`` 3, each with probability ``prob``), drawn per sample but applied to a whole
    collated batch at once: every tensor in ``keys`` (B, C, H, W) (e.g. ``image`` (B, 3, H, W) and ``latent``
    (B, 3·lc, h, w)) gets the same flips and rotation for the same sample. The outputs are plain tensors (no
    ``MetaTensor`` bookkeeping); other keys pass unchanged. Same distribution as the per-slice transforms, another
    random stream (this transform's own ``R``, seeded by ``seed``; checkpointed with the run's random transforms)."""

    def __init__(self, keys: KeysCollection, prob: float = 0.5, seed: int | None = 0) -> None:
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"BatchFlipRot90d: prob must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self.set_random_state(seed=seed)

    def randomize(self, data: int) -> None:
        b = data
        self._flip0 = torch.from_numpy(self.R.random_sample(b) < self.prob)
        self._flip1 = torch.from_numpy(self.R.random_sample(b) < self.prob)
        rotate = self.R.random_sample(b) < self.prob
        self._k = torch.from_numpy(np.where(rotate, self.R.randint(1, 4, size=b), 0))  # quarter turns, 0-3

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        present = [k for k in self.keys if k in d]
        if not present:
            return d
        b = len(d[present[0]])
        self.randomize(b)
        for k in present:
            x = torch.as_tensor(d[k]).as_subclass(torch.Tensor)
            if x.ndim != 4 or len(x) != b:
                raise ValueError(f"BatchFlipRot90d: {k!r} must be a (B={b}, C, H, W) batch, got {tuple(x.shape)}")
            d[k] = self._apply(x)
        return d

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the same with each sample flipped/rotated as drawn (one ``torch.where`` per operation)."""
        dev = x.device
        x = torch.where(self._flip0.to(dev).view(-1, 1, 1, 1), x.flip(2), x)
        x = torch.where(self._flip1.to(dev).view(-1, 1, 1, 1), x.flip(3), x)
        for turns in (1, 2, 3):
            chosen = self._k == turns  # on the CPU: no device sync to skip a turn nobody drew
            if not chosen.any():
                continue
            if turns % 2 and x.shape[2] != x.shape[3]:  # a non-square batch would not collate (per-slice alike)
                raise ValueError(f"BatchFlipRot90d: a quarter turn of the non-square batch {tuple(x.shape)}")
            x = torch.where(chosen.to(dev).view(-1, 1, 1, 1), torch.rot90(x, turns, (2, 3)), x)
        return x

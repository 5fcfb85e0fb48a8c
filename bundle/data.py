"""MyoPS 2020 case discovery, splits and slicing.

The official layout under ``dataset_dir`` is::

    train25/myops_training_1xx_{C0,DE,T2}.nii.gz    train25_myops_gd/myops_training_1xx_gd.nii.gz
    test20/myops_test_2xx_{C0,DE,T2}.nii.gz         test20_gd/myops_test_2xx_gd.nii.gz

Split rule (deterministic): ``train`` = every ``myops_training_*`` case; ``validation`` = the
``myops_test_*`` cases whose id is in ``validation_ids`` (a fixed list in ``configs/common.yaml``);
``test`` = every other ``myops_test_*`` case. The tuning fold (knobs are chosen there, never on ``validation``):
``tune`` = the ``myops_training_*`` cases whose id is in ``tuning_ids`` (a fixed list in ``configs/common.yaml``),
``train_tune`` = the other training cases (what a model is trained on while tuning). Cases are sorted by id. A split may be partly present
(e.g. only ``test20/``); an empty split raises :class:`DataError` naming the folder searched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bundle.errors import UserError

SEQUENCES: tuple[str, ...] = ("C0", "DE", "T2")  # bSSFP, LGE, T2-weighted: the canonical channel order
LABEL_VALUES: tuple[int, ...] = (0, 200, 500, 600, 1220, 2221)
MYOCARDIUM_LABELS: tuple[int, ...] = (200, 1220, 2221)
SPLITS = ("train", "validation", "test", "tune", "train_tune")
_FOLDERS = {"training": ("train25", "train25_myops_gd"), "test": ("test20", "test20_gd")}
_NAME = re.compile(r"^(myops_(training|test)_(\d+))_(C0|DE|T2)\.nii(\.gz)?$")


class DataError(UserError):
    """Bad or missing input data; the message names the file, folder or field."""


def _label_file(folder: Path, case: str) -> Path | None:
    """The label file of ``case`` in ``folder``: ``<case>_gd.nii.gz``, else ``<case>_gd.nii``, else None."""
    for ext in (".nii.gz", ".nii"):
        gd = folder / f"{case}_gd{ext}"
        if gd.is_file():
            return gd
    return None


def discover_cases(
    dataset_dir: str | Path, split: str, validation_ids: Sequence[int], require_label: bool = False,
    required: Sequence[str] = SEQUENCES, tuning_ids: Sequence[int] = (),
) -> list[dict[str, str]]:
    """List the cases of ``split`` as dicts ``{"case", "C0", "DE", "T2"[, "gd"]}`` (paths as str).

    A case needs the ``required`` sequences (all three for training; the two conditions for inference);
    its label ``gd`` is added when the file exists (``require_label=True`` makes a missing label an error).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {SPLITS}")
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"dataset_dir {str(root)!r} is not a directory")
    kind = "training" if split in ("train", "tune", "train_tune") else "test"
    img_dir, gd_dir = (root / f for f in _FOLDERS[kind])
    found: dict[str, dict[str, str]] = {}
    ids: dict[str, int] = {}
    if img_dir.is_dir():
        for f in sorted(img_dir.iterdir()):
            m = _NAME.match(f.name)
            if m and m.group(2) == kind:
                found.setdefault(m.group(1), {"case": m.group(1)})[m.group(4)] = str(f)
                ids[m.group(1)] = int(m.group(3))
    val = {int(i) for i in validation_ids}
    tune = {int(i) for i in tuning_ids}
    if split == "tune" and not tune:
        raise DataError("split 'tune' needs a non-empty tuning_ids list (field `tuning_ids`)")
    cases = []
    for case in sorted(found, key=lambda c: ids[c]):
        if split == "validation" and ids[case] not in val or split == "test" and ids[case] in val:
            continue
        if split == "tune" and ids[case] not in tune or split == "train_tune" and ids[case] in tune:
            continue
        item = found[case]
        missing = [s for s in required if s not in item]
        if missing:
            raise DataError(f"case {case} in {img_dir} lacks sequence file(s) {missing}: "
                            f"{', '.join(f'{case}_{s}.nii.gz' for s in missing)} not found")
        gd = _label_file(gd_dir, case)
        if gd is not None:
            item["gd"] = str(gd)
        elif require_label:
            raise DataError(f"case {case}: label file {gd_dir / (case + '_gd.nii.gz')} not found")
        cases.append(item)
    if not cases:
        raise DataError(
            f"split {split!r} is empty: no {'myops_' + kind + '_*'} cases"
            + (f" with ids {sorted(val)}" if split == "validation" else "")
            + (f" outside the validation ids {sorted(val)}" if split == "test" else "")
            + (f" with tuning ids {sorted(tune)}" if split == "tune" else "")
            + (f" outside the tuning ids {sorted(tune)}" if split == "train_tune" else "")
            + f" in {img_dir}"
        )
    return cases


_FLAT = re.compile(r"^(.+_(\d+))_(C0|DE|T2)\.nii(\.gz)?$")


def discover_flat_cases(dataset_dir: str | Path, case_ids: Sequence[int], required: Sequence[str] = SEQUENCES,
                        ) -> list[dict[str, str]]:
    """Cases of a flat folder ``<name>_<id>_{C0,DE,T2}.nii.gz`` (e.g. MyoPS++ centre D: ``myopspp_4001_C0.nii.gz``),
    restricted to ``case_ids`` (every case when empty), sorted by id; a label ``<name>_<id>_gd.nii.gz`` in the same
    folder is added when present. No split rule: the ids are the selection."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"dataset_dir {str(root)!r} is not a directory")
    want = {int(i) for i in case_ids or ()}
    found: dict[str, dict[str, str]] = {}
    ids: dict[str, int] = {}
    for f in sorted(root.iterdir()):
        m = _FLAT.match(f.name)
        if m and (not want or int(m.group(2)) in want):
            found.setdefault(m.group(1), {"case": m.group(1)})[m.group(3)] = str(f)
            ids[m.group(1)] = int(m.group(2))
    missing_ids = sorted(want - set(ids.values()))
    if missing_ids:
        raise DataError(f"case ids {missing_ids} not found in {root} (expected <name>_<id>_C0.nii.gz, ...)")
    cases = []
    for case in sorted(found, key=lambda c: ids[c]):
        item = found[case]
        missing = [q for q in required if q not in item]
        if missing:
            raise DataError(f"case {case} in {root} lacks sequence file(s) {missing}")
        gd = _label_file(root, case)
        if gd is not None:
            item["gd"] = str(gd)
        cases.append(item)
    if not cases:
        raise DataError(f"no <name>_<id>_{{C0,DE,T2}}.nii.gz cases in {root}")
    return cases


def check_geometry(shapes: dict[str, tuple], affines: dict[str, np.ndarray], files: dict[str, str]) -> None:
    """Refuse a case whose sequences/label differ in shape or affine, or are not 3D volumes."""
    keys = list(shapes)
    for k in keys:
        if len(shapes[k]) != 3:
            kind = " (a 4D series such as cine: pass one time frame per file)" if len(shapes[k]) == 4 else ""
            raise DataError(f"{files[k]}: expected a 3D volume (X, Y, slices): a 2D multi-slice short-axis stack, "
                            f"got shape {tuple(shapes[k])}{kind}")
    ref = keys[0]
    for k in keys[1:]:
        if tuple(shapes[k]) != tuple(shapes[ref]):
            raise DataError(f"shape mismatch: {files[k]} {tuple(shapes[k])} vs {files[ref]} {tuple(shapes[ref])}")
        if not np.allclose(affines[k], affines[ref], atol=1e-3):
            raise DataError(f"affine mismatch between {files[k]} and {files[ref]}")


def volumes_to_slices(volumes: Sequence[dict]) -> list[dict]:
    """Split preprocessed volumes into 2D samples.

    Each volume dict holds ``image`` (3, X, Y, S) in canonical order C0, DE, T2 and optionally
    ``mask`` (1, X, Y, S). Returns one dict per slice: ``image`` (3, X, Y), ``mask`` (1, X, Y) when
    present, plus ``case`` and ``slice``.
    """
    out = []
    for vol in volumes:
        image = vol["image"]
        for s in range(image.shape[-1]):
            item = {"case": vol["case"], "slice": s, "image": torch.as_tensor(image[..., s]).float()}
            for key in ("mask", "regions"):  # the myocardium mask; the segmenter's region masks (bundle.segmentation)
                if key in vol:
                    item[key] = torch.as_tensor(vol[key][..., s]).float()
            out.append(item)
    return out


def area_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) ``x`` area-resized (averaged) to ``size`` (H', W'): the downsampling to the model's pixel scale;
    ``x`` itself when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="area")


def bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) ``x`` bicubic-resized (``align_corners=False``) to ``size`` (H', W'): the way back from the
    model's pixel scale (see ``scripts/resize_ceiling.py``); ``x`` itself when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)


def map_fov_slices(fn, volumes: torch.Tensor, image_size: int | None = None) -> tuple[torch.Tensor | None, ...]:
    """Run a 2D model on every slice of field-of-view volumes, batched.

    ``volumes`` (B, C, X, Y, S) are cut into slices (B·S, C, X, Y), area-resized to ``image_size``, and passed to
    ``fn``, which returns a tuple of (B·S, 1, size, size) tensors (or ``None`` entries); each is resized back with
    bicubic interpolation (much closer to the native image than bilinear, see ``scripts/resize_ceiling.py``) and
    returned as (B, 1, X, Y, S). Values are not clamped.
    """
    if volumes.ndim != 5:
        raise ValueError(f"expected (B, C, X, Y, S) volumes, got {tuple(volumes.shape)}")
    b, c, nx, ny, ns = volumes.shape
    x = volumes.permute(0, 4, 1, 2, 3).reshape(b * ns, c, nx, ny).float()
    size = image_size or nx
    x = area_resize(x, (size, size))

    def back(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = bicubic_resize(t, (nx, ny))
        return t.reshape(b, ns, t.shape[1], nx, ny).permute(0, 2, 3, 4, 1)

    return tuple(back(t) for t in fn(x))


def per_sequence(slices: Sequence[dict]) -> list[dict]:
    """One single-channel sample ``{"image": (1, X, Y), "case", "slice", "sequence"}`` per sequence and slice
    (the shared VAE trains on all three sequences)."""
    return [
        {"image": s["image"][i : i + 1], "case": s["case"], "slice": s["slice"], "sequence": seq}
        for s in slices
        for i, seq in enumerate(SEQUENCES)
    ]


def build_slices(cases: Sequence[dict], volume_transform, slice_transform=None, progress: bool = True) -> list[dict]:
    """Load and preprocess ``cases`` once (``volume_transform``), split them into slices and apply
    ``slice_transform`` to each: the in-memory 2D data set used by training and validation. When some cases are
    labelled and others not, the unlabelled slices get an all-zero ``mask`` (1, H, W), so any batch collates."""
    from tqdm import tqdm

    out = []
    for case in tqdm(cases, desc="loading cases", disable=not progress, leave=False):
        try:
            vol = volume_transform(case)
        except RuntimeError as e:  # MONAI's Compose wraps errors in RuntimeError("applying transform ..."):
            cause = e  # surface a DataError (its message names the file) instead
            while cause is not None and not isinstance(cause, DataError):
                cause = cause.__cause__
            if cause is None:
                raise
            raise DataError(str(cause)) from e
        for s in volumes_to_slices([vol]):
            s = slice_transform(s) if slice_transform is not None else s
            out.append({k: _plain(v) for k, v in s.items()})
    if any("mask" in s for s in out):  # labelled and unlabelled cases together: one batchable set of keys
        for s in out:
            if "mask" not in s:
                s["mask"] = torch.zeros_like(s["image"][:1])
    return out


def _plain(v):
    """MetaTensor -> plain tensor (slices carry no per-slice metadata; batching MetaTensors is slow)."""
    return v.as_tensor() if hasattr(v, "as_tensor") else v

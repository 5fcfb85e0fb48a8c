"""The volume pipeline of configs/common.yaml and the transforms of bundle/transforms.py."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged

from bundle.data import LABEL_VALUES, SEQUENCES, DataError
from bundle.phantom import phantom_affine
from bundle.transforms import (
    BatchFlipRot90d,
    CanonicalGeometryd,
    FieldOfViewd,
    LoadCased,
    MyocardiumMaskd,
    NormalizeFOVd,
    StackSequencesd,
    ValidateCased,
    fov_offsets,
    normalize_fov,
    paste_fov,
    per_slice,
    stack_slice_axis,
)

FOV = 256
KEYS = [*SEQUENCES, "gd"]


def _save(path, arr, affine):
    img = nib.Nifti1Image(np.asarray(arr), None)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)
    return str(path)


def _write_case(tmp_path, arrays: dict, affine=None, case="myops_test_299") -> dict:
    """Write ``arrays`` ({key: array}) as ``{case}_{key}.nii.gz``; return the case dict of discover_cases."""
    item = {"case": case}
    for key, arr in arrays.items():
        aff = affine if affine is not None else phantom_affine(np.shape(arr)[:3])
        item[key] = _save(tmp_path / f"{case}_{key}.nii.gz", arr, aff)
    return item


def _norm(x: np.ndarray) -> np.ndarray:
    """Hand computation of the intensity protocol on one cropped channel."""
    hi = np.percentile(x.astype(np.float64), 99.5)
    return np.zeros_like(x, dtype=np.float64) if hi <= 0 else np.clip(x, 0, hi) / hi


@pytest.fixture(scope="module")
def volume_transforms(parser):
    """The native-grid path with the old window (``--target_spacing native --signed_fraction none``): the exact
    crop/normalisation arithmetic below."""
    return parser(target_spacing="native", signed_fraction="none").get_parsed_content("volume_transforms")


@pytest.fixture(scope="module")
def resampling_transforms(parser):
    """The default path: reorientation + in-plane resampling to ``target_spacing``."""
    return parser().get_parsed_content("volume_transforms")


@pytest.fixture(scope="module")
def crop_transform(volume_transforms):
    (t,) = [t for t in volume_transforms.transforms if isinstance(t, FieldOfViewd)]
    return t


def _crop_or_pad(raw: np.ndarray) -> np.ndarray:
    """The FOV crop in numpy (zero padding ``floor((FOV-X)/2)`` before when smaller)."""
    out = np.zeros((FOV, FOV, raw.shape[2]), dtype=raw.dtype)
    (ox, oy) = ((n - FOV) // 2 if n >= FOV else -((FOV - n) // 2) for n in raw.shape[:2])
    src = raw[max(ox, 0) : max(ox, 0) + FOV, max(oy, 0) : max(oy, 0) + FOV]
    out[max(-ox, 0) : max(-ox, 0) + src.shape[0], max(-oy, 0) : max(-oy, 0) + src.shape[1]] = src
    return out


# --- slice axis and orientation -------------------------------------------------------------------------------


def test_slice_axis_and_in_plane_orientation(tmp_path, volume_transforms):
    shape = (300, 280, 5)
    rng = np.random.default_rng(0)
    aff = phantom_affine(shape)  # oblique, permuted and flipped (LSP-like): must not be reoriented
    assert not np.allclose(np.abs(aff[:3, :3]) > 1e-3, np.eye(3, dtype=bool))
    arrays = {}
    for i, seq in enumerate(SEQUENCES):
        # a distinctive constant per slice (k-th slice ~ 1000 * (k + 1)) plus an asymmetric in-plane texture
        arrays[seq] = (1000.0 * (np.arange(shape[2]) + 1 + i) + 300 * rng.random(shape)).astype(np.float32)
    out = volume_transforms(_write_case(tmp_path, arrays, aff))
    img = out["image"]
    assert tuple(img.shape) == (3, FOV, FOV, shape[2])
    for c, seq in enumerate(SEQUENCES):
        expect = _norm(arrays[seq][22:278, 12:268])  # offsets (300-256)//2, (280-256)//2
        np.testing.assert_allclose(img[c].numpy(), expect, rtol=1e-5, atol=1e-6)
        means = img[c].numpy().mean(axis=(0, 1))
        assert np.all(np.diff(means) > 0), f"{seq}: slices out of order {means}"
    assert "mask" not in out and out["present"] == [True, True, True]
    # (outputs take their geometry from the input files: see tests/test_io.py and tests/test_workflows.py)


def test_loaded_label_keeps_axes(tmp_path, volume_transforms):
    shape = (288, 272, 3)
    gd = np.zeros(shape, np.int16)
    gd[140:150, 100:130, 0] = 200  # slice 0: myocardium in a horizontal bar
    gd[120:160, 150:155, 2] = 500  # slice 2: blood pool only
    arrays = {s: np.ones(shape, np.float32) for s in SEQUENCES} | {"gd": gd}
    out = volume_transforms(_write_case(tmp_path, arrays))
    expect = _crop_or_pad((gd == 200).astype(np.float32))
    assert tuple(out["mask"].shape) == (1, FOV, FOV, 3)
    np.testing.assert_array_equal(out["mask"][0].numpy(), expect)
    np.testing.assert_array_equal(np.asarray(out["gd"][0]), _crop_or_pad(gd))


# --- intensity protocol ---------------------------------------------------------------------------------------


def test_normalize_fov_unit():
    x = torch.zeros(3, 201)
    x[0] = torch.arange(201.0)  # p99.5 of 0..200 is exactly 199
    x[1] = torch.arange(201.0) - 50  # negatives
    # channel 2 all zero
    y = normalize_fov(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(y[0, 199]) == 1.0 and float(y[0, 200]) == 1.0
    torch.testing.assert_close(y[0, :199], torch.arange(199.0) / 199)
    hi1 = np.percentile(np.arange(201.0) - 50, 99.5)
    assert torch.all(y[1, :51] == 0) and y[1, 60] == pytest.approx(10 / hi1)
    assert torch.all(y[2] == 0) and torch.isfinite(y).all()
    d = NormalizeFOVd("image")({"image": MetaTensor(x.clone(), meta={"filename_or_obj": "x"})})
    assert isinstance(d["image"], MetaTensor) and d["image"].meta["filename_or_obj"] == "x"
    torch.testing.assert_close(d["image"].as_tensor(), y)


def test_normalization_matches_numpy_on_fov_crop(tmp_path, volume_transforms):
    shape = (320, 300, 3)
    rng = np.random.default_rng(1)
    c0 = rng.gamma(2.0, 200.0, shape).astype(np.float32)
    c0[:20] = 1e5  # very bright rows outside the crop: the percentile must ignore them
    t2 = (rng.normal(0, 300.0, shape)).astype(np.float32)  # half negative
    arrays = {"C0": c0, "DE": np.zeros(shape, np.float32), "T2": t2}
    written = {k: v for k, v in arrays.items() if k != "DE"}  # the missing sequence is zero-filled
    img = volume_transforms(_write_case(tmp_path, written))["image"].numpy()
    ox, oy = (320 - FOV) // 2, (300 - FOV) // 2
    for c, seq in enumerate(SEQUENCES):
        crop = arrays[seq][ox : ox + FOV, oy : oy + FOV]
        np.testing.assert_allclose(img[c], _norm(crop), rtol=1e-5, atol=1e-6)
        assert img[c].min() >= 0 and img[c].max() <= 1
    assert not img[1].any()  # all-zero channel stays zero
    assert img[0].max() == 1.0 and img[2].max() == 1.0
    assert np.all(img[2][arrays["T2"][ox : ox + FOV, oy : oy + FOV] <= 0] == 0)  # negatives clipped to 0
    assert np.isclose((img[0] == 1).mean(), 0.005, atol=0.001)  # the top 0.5 % saturates


# --- crop / pad offsets and paste_fov -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "native, offsets",
    [((409, 300), (76, 22)), ((200, 100), (-28, -78)), ((256, 256), (0, 0)), ((411, 255), (77, 0)),
     ((201, 199), (-27, -28))],
)
def test_crop_offsets_and_paste_inverse(native, offsets, crop_transform):
    assert fov_offsets(native, FOV) == offsets
    raw = np.random.default_rng(2).random((*native, 2)).astype(np.float32) + 1  # > 0 everywhere
    slab = np.asarray(crop_transform({"image": torch.as_tensor(raw)[None]})["image"][0])
    assert slab.shape == (FOV, FOV, 2)
    np.testing.assert_array_equal(slab, _crop_or_pad(raw))
    ox, oy = offsets
    if native == (409, 300):
        np.testing.assert_array_equal(slab, raw[76:332, 22:278])
    if native == (200, 100):
        np.testing.assert_array_equal(slab[28:228, 78:178], raw)
        assert (slab > 0).sum() == raw.size  # zero padding elsewhere
    back = paste_fov(slab, raw.shape)
    assert back.shape == raw.shape and back.dtype == slab.dtype
    inside = np.zeros(native, bool)
    inside[max(ox, 0) : max(ox, 0) + FOV, max(oy, 0) : max(oy, 0) + FOV] = True
    np.testing.assert_array_equal(back[inside], raw[inside])  # exact inverse on the field of view
    assert not back[~inside].any()  # zero outside
    if min(native) <= FOV and max(native) <= FOV:
        np.testing.assert_array_equal(back, raw)


# --- labels ---------------------------------------------------------------------------------------------------


def test_myocardium_mask():
    values = torch.tensor([*LABEL_VALUES, 200, 1220, 2221, 500], dtype=torch.float32)
    gd = values.reshape(1, 2, 5, 1).repeat(1, 1, 1, 3)
    d = MyocardiumMaskd(label_key="gd")({"gd": gd})
    assert d["mask"].shape == gd.shape and d["mask"].dtype == torch.float32
    expect = torch.isin(gd, torch.tensor([200.0, 1220.0, 2221.0])).float()
    torch.testing.assert_close(d["mask"], expect)
    assert float(d["mask"].sum()) == 3 * 6
    for v in LABEL_VALUES:
        m = MyocardiumMaskd()({"gd": torch.full((1, 2, 2, 1), float(v))})["mask"]
        assert bool((m == 1).all()) == (v in (200, 1220, 2221)) and bool((m == 0).all()) != (v in (200, 1220, 2221))
    assert "mask" not in MyocardiumMaskd()({"image": torch.zeros(1, 2, 2, 1)})


# --- case validation ------------------------------------------------------------------------------------------

_SHAPE = (64, 72, 3)


def _validate(tmp_path, **change):
    """Write a valid small case, replace arrays/affines given in ``change`` and run LoadImaged + ValidateCased."""
    aff = phantom_affine(_SHAPE)
    arrays = {s: np.full(_SHAPE, 10 + i, np.float32) for i, s in enumerate(SEQUENCES)}
    gd = np.zeros(_SHAPE, np.int16)
    gd[10:20, 10:20] = 200
    arrays["gd"] = gd
    item = {"case": "myops_test_299"}
    for key, arr in arrays.items():
        arr = change.get(key, arr)
        item[key] = _save(tmp_path / f"myops_test_299_{key}.nii.gz", arr, change.get(f"{key}_affine", aff))
    d = LoadImaged(KEYS, image_only=True, allow_missing_keys=True)(item)
    return ValidateCased(KEYS)(d)


def test_validate_accepts_valid_case(tmp_path):
    d = _validate(tmp_path)
    assert set(d) == {"case", *KEYS}


@pytest.mark.parametrize(
    "change, file_key, match",
    [
        ({"DE": np.zeros((64, 70, 3), np.float32)}, "DE", "shape mismatch"),
        ({"gd": np.zeros((64, 72, 4), np.int16)}, "gd", "shape mismatch"),
        ({"T2_affine": phantom_affine(_SHAPE) @ np.diag([1.0, 1.0, 1.1, 1.0])}, "T2", "affine mismatch"),
        ({s: np.zeros(_SHAPE[:2], np.float32) for s in SEQUENCES} | {"gd": np.zeros(_SHAPE[:2], np.int16)},
         "C0", "3D"),
        ({"DE": np.zeros((*_SHAPE, 2), np.float32)}, "DE", "3D"),
        ({"T2": np.where(np.arange(64)[:, None, None] == 5, np.nan, 1.0) * np.ones(_SHAPE, np.float32)},
         "T2", "NaN"),
        ({"gd": (np.where(np.arange(64)[:, None, None] == 5, 300, 0) * np.ones(_SHAPE)).astype(np.int16)},
         "gd", "300"),
    ],
    ids=["shape", "label-shape", "affine", "2d", "4d", "nan", "label-300"],
)
def test_validate_rejects(tmp_path, change, file_key, match):
    with pytest.raises(DataError, match=match) as err:
        _validate(tmp_path, **change)
    assert f"myops_test_299_{file_key}.nii.gz" in str(err.value)


def test_bad_case_in_pipeline_raises_data_error(tmp_path, volume_transforms):
    from bundle.data import build_slices

    gd = np.zeros(_SHAPE, np.int16)
    gd[3, 3, 1] = 300
    item = _write_case(tmp_path, {**{s: np.ones(_SHAPE, np.float32) for s in SEQUENCES}, "gd": gd})
    with pytest.raises(DataError, match=r"myops_test_299_gd\.nii\.gz.*300"):
        build_slices([item], volume_transforms, progress=False)


# --- stacking -------------------------------------------------------------------------------------------------


def test_stack_sequences_zero_fills_missing():
    c0 = MetaTensor(torch.full((1, 4, 5, 2), 3.0), meta={"filename_or_obj": "c0.nii.gz"})
    t2 = torch.full((1, 4, 5, 2), 7.0)
    d = StackSequencesd(SEQUENCES)({"C0": c0, "T2": t2, "case": "x"})
    img = d["image"]
    assert tuple(img.shape) == (3, 4, 5, 2) and img.dtype == torch.float32
    assert bool((img[0] == 3).all()) and bool((img[1] == 0).all()) and bool((img[2] == 7).all())
    assert d["present"] == [True, False, True]
    assert not {"C0", "DE", "T2"} & set(d) and d["case"] == "x"
    assert isinstance(img, MetaTensor) and img.meta["filename_or_obj"] == "c0.nii.gz"
    full = StackSequencesd(SEQUENCES)({"DE": t2, "C0": c0, "T2": c0})
    assert full["present"] == [True, True, True]
    assert [float(full["image"][i].mean()) for i in range(3)] == [3.0, 7.0, 3.0]  # canonical order, not dict order


def test_validate_case_refuses_an_all_zero_slice(tmp_path):
    import nibabel as nib

    from bundle.data import DataError
    from bundle.transforms import ValidateCased
    from monai.transforms import LoadImaged

    arr = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32) + 1
    arr[..., 1] = 0
    f = tmp_path / "c_C0.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), f)
    d = LoadImaged(keys="C0", image_only=True)({"C0": str(f)})
    with pytest.raises(DataError, match=r"c_C0.nii.gz.*slice\(s\) \[1\] are all zero"):
        ValidateCased(keys=["C0"])(d)


def test_load_cased_names_missing_and_unreadable_files(tmp_path):
    from bundle.data import DataError
    from bundle.transforms import LoadCased

    good = tmp_path / "ok_C0.nii.gz"
    _save(good, np.ones((8, 8, 2), np.float32), np.eye(4))
    load = LoadCased(keys="C0", image_only=True)
    assert tuple(load({"C0": str(good)})["C0"].shape) == (8, 8, 2)
    cut = tmp_path / "cut_C0.nii.gz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # a truncated download
    with pytest.raises(DataError, match="cut_C0.nii.gz: cannot read it as an image"):
        load({"C0": str(cut)})
    with pytest.raises(DataError, match="gone_C0.nii.gz: file not found"):
        load({"C0": str(tmp_path / "gone_C0.nii.gz")})


# --- geometry: slice axis, canonical orientation, in-plane spacing (issue 16) ----------------------------------


def _flip_affine(aff: np.ndarray, shape, axis: int) -> np.ndarray:
    """The affine of ``np.flip(arr, axis)`` showing the same physical image."""
    f = np.eye(4)
    f[axis, axis], f[axis, 3] = -1, shape[axis] - 1
    return aff @ f


def _transpose_affine(aff: np.ndarray) -> np.ndarray:
    """The affine of ``arr.transpose(1, 0, 2)`` showing the same physical image."""
    return aff[:, [1, 0, 2, 3]]


def test_stack_slice_axis_and_refusals():
    assert stack_slice_axis(phantom_affine((64, 64, 4)), (64, 64, 4), "f") == 2
    assert stack_slice_axis(np.diag([10.0, 0.9, 0.9, 1]), (6, 300, 300), "f") == 0  # slices stored first
    assert stack_slice_axis(np.eye(4), (64, 64, 5), "f") == 2  # no spacing information: a few slices, last axis
    with pytest.raises(DataError, match="isotropic 3D"):
        stack_slice_axis(np.eye(4), (128, 128, 96), "iso.nii.gz")
    with pytest.raises(DataError, match="4D"):
        stack_slice_axis(np.eye(4), (64, 64, 8, 25), "cine.nii.gz")


def test_refuses_4d_cine_and_isotropic_volume_in_pipeline(tmp_path, resampling_transforms):
    rng = np.random.default_rng(0)
    cine = {s: rng.random((64, 64, 3, 20)).astype(np.float32) + 1 for s in ("C0", "T2")}
    from bundle.data import build_slices  # (unwraps MONAI's "applying transform" into the DataError)

    with pytest.raises(DataError, match="4D series .*cine") as err:
        build_slices([_write_case(tmp_path, cine, np.diag([1.5, 1.5, 8, 1]))], resampling_transforms, progress=False)
    assert "myops_test_299_C0.nii.gz" in str(err.value)
    iso = {s: rng.random((80, 80, 80)).astype(np.float32) + 1 for s in ("C0", "T2")}
    with pytest.raises(DataError, match="isotropic 3D volume") as err:
        build_slices([_write_case(tmp_path, iso, np.diag([1.2, 1.2, 1.2, 1]))], resampling_transforms, progress=False)
    assert "myops_test_299_C0.nii.gz" in str(err.value)


def test_training_like_orientation_is_kept_and_spacing_resampled(tmp_path, resampling_transforms, parser):
    shape = (300, 280, 3)
    arrays = {s: np.random.default_rng(i).random(shape).astype(np.float32) + 1 for i, s in enumerate(SEQUENCES)}
    out = resampling_transforms(_write_case(tmp_path, arrays))
    geo = json.loads(out["geometry"])
    s = float(parser()["target_spacing"])
    assert geo["axcodes"] == geo["input_axcodes"]  # the phantom's (MyoPS-like) orientation is already canonical
    assert geo["target_spacing_mm"] == pytest.approx(s)
    aff = np.asarray(out["field_affine"])
    np.testing.assert_allclose(np.linalg.norm(aff[:3, :3], axis=0), [s, s, 12.0], rtol=1e-5)
    assert tuple(out["field"].shape) == (3, round(299 * 0.75 / s) + 1, round(279 * 0.75 / s) + 1, 3)
    assert tuple(out["image"].shape) == (3, FOV, FOV, 3)


@pytest.mark.parametrize("variant", ["flip0", "flip1", "flip_slices", "transpose", "ras_diagonal"])
def test_canonical_geometry_is_storage_invariant(tmp_path, variant):
    """The same physical image stored flipped / transposed gives the identical canonical (resampled) array."""
    from monai.transforms import EnsureChannelFirstd

    shape = (90, 80, 4)
    arr = np.random.default_rng(3).random(shape).astype(np.float32)
    aff = phantom_affine(shape) if variant != "ras_diagonal" else np.diag([0.9, 0.9, 10.0, 1.0])
    if variant in ("flip0", "flip1", "flip_slices", "ras_diagonal"):
        ax = {"flip0": 0, "flip1": 1, "flip_slices": 2, "ras_diagonal": 0}[variant]
        arr2, aff2 = np.ascontiguousarray(np.flip(arr, ax)), _flip_affine(aff, shape, ax)
    else:
        arr2, aff2 = np.ascontiguousarray(arr.transpose(1, 0, 2)), _transpose_affine(aff)
    out = []
    for i, (a, f) in enumerate(((arr, aff), (arr2, aff2))):
        (tmp_path / str(i)).mkdir()
        item = _write_case(tmp_path / str(i), {"C0": a}, f)
        d = LoadCased(["C0"], image_only=True)(item)
        d = EnsureChannelFirstd(["C0"], channel_dim="no_channel")(d)
        out.append(CanonicalGeometryd(["C0"], target_spacing=0.73)(d))
    np.testing.assert_allclose(out[1]["C0"].numpy(), out[0]["C0"].numpy(), atol=1e-5)
    np.testing.assert_allclose(out[1]["C0"].affine.numpy(), out[0]["C0"].affine.numpy(), atol=1e-4)


def test_signed_input_windowed_on_both_sides():
    x = torch.zeros(3, 1000)
    x[0] = torch.linspace(0, 999, 1000)  # magnitude
    x[1] = torch.linspace(-700, 1299, 1000)  # PSIR-like: 35 % negative
    d = NormalizeFOVd("image", field_key="field", signed_fraction=0.01)({"image": x.clone(), "field": x.clone() * 2})
    norm = json.loads(d["norm"])
    assert [n["signed"] for n in norm] == [False, True, False]
    lo, hi = np.percentile(x[1].numpy(), [0.5, 99.5])
    assert norm[1]["lo"] == pytest.approx(lo) and norm[1]["hi"] == pytest.approx(hi)
    assert float(d["image"][1].min()) == 0 and float(d["image"][1].max()) == 1
    assert (d["image"][1] > 0).float().mean() > 0.99  # the negative half is kept, not clipped to 0
    torch.testing.assert_close(d["image"][0], normalize_fov(x)[0])  # magnitude channel: the old protocol
    # the field gets the FOV's window
    torch.testing.assert_close(d["field"][1], ((x[1] * 2).clamp(lo, hi) - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
    old = NormalizeFOVd("image", signed_fraction=None)({"image": x.clone()})
    torch.testing.assert_close(old["image"], normalize_fov(x))


def _reference_flip_rot(x: torch.Tensor, flip0: bool, flip1: bool, k: int) -> torch.Tensor:
    """One sample (C, H, W) through MONAI's array Flip (spatial axis 0, then 1) and Rotate90 (k quarter turns)."""
    from monai.transforms import Flip, Rotate90

    x = Flip(spatial_axis=0)(x) if flip0 else x
    x = Flip(spatial_axis=1)(x) if flip1 else x
    return torch.as_tensor(Rotate90(k=k)(x) if k else x).as_subclass(torch.Tensor)


def test_batch_flip_rot90_applies_the_drawn_ops_to_every_key_per_sample():
    """Each sample of every key gets the flips and quarter turns drawn for that sample (MONAI's Flip/Rotate90 as the
    reference), the same ones across keys of different sizes; outputs are plain tensors; other keys pass unchanged."""
    g = torch.Generator().manual_seed(0)
    batch = {"image": MetaTensor(torch.rand(16, 3, 8, 8, generator=g)), "latent": torch.rand(16, 6, 4, 4, generator=g),
             "case": ["c"] * 16}
    aug = BatchFlipRot90d(["image", "latent", "guide_latent"], prob=0.5, seed=3)
    out = aug(batch)
    assert type(out["image"]) is torch.Tensor and type(out["latent"]) is torch.Tensor
    assert out["case"] is batch["case"] and "guide_latent" not in out
    ops = list(zip(aug._flip0.tolist(), aug._flip1.tolist(), aug._k.tolist()))
    assert len({op for op in ops}) > 3  # the samples got different draws
    for key in ("image", "latent"):
        for i, (f0, f1, k) in enumerate(ops):
            ref = _reference_flip_rot(torch.as_tensor(batch[key][i]).as_subclass(torch.Tensor), f0, f1, k)
            assert torch.equal(out[key][i], ref), (key, i, f0, f1, k)
    again = BatchFlipRot90d(["image", "latent"], prob=0.5, seed=3)(batch)
    assert torch.equal(again["latent"], out["latent"])  # seeded
    assert not torch.equal(BatchFlipRot90d(["latent"], seed=4)(batch)["latent"], out["latent"])
    assert torch.equal(BatchFlipRot90d(["latent"], prob=0.0)(batch)["latent"], batch["latent"])


def test_batch_flip_rot90_has_the_per_slice_transforms_distribution():
    """Over many samples: each flip with probability prob, and a rotation with probability prob by 1, 2 or 3 quarter
    turns, as MONAI's RandFlipd / RandRotate90d (max_k 3) draw them."""
    aug = BatchFlipRot90d("latent", prob=0.5, seed=0)
    aug.randomize(30000)
    assert abs(aug._flip0.float().mean() - 0.5) < 0.02 and abs(aug._flip1.float().mean() - 0.5) < 0.02
    counts = torch.bincount(aug._k, minlength=4).float() / 30000
    torch.testing.assert_close(counts, torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6]), atol=0.02, rtol=0)
    assert abs(float((aug._flip0 & aug._flip1).float().mean()) - 0.25) < 0.02  # independent draws


def test_batch_flip_rot90_refuses_bad_input():
    with pytest.raises(ValueError, match="prob"):
        BatchFlipRot90d("latent", prob=1.5)
    with pytest.raises(ValueError, match="'latent'.*\\(B=2"):
        BatchFlipRot90d(["image", "latent"])({"image": torch.zeros(2, 3, 4, 4), "latent": torch.zeros(3, 4, 4)})
    with pytest.raises(ValueError, match="latent_augment_mode"):
        per_slice([], "device")
    with pytest.raises(ValueError, match="quarter turn"):  # 16 draws at prob 1: some odd turns
        BatchFlipRot90d("x", prob=1.0)({"x": torch.zeros(16, 1, 4, 6)})


def test_batch_flip_rot90_half_turns_of_a_non_square_batch():
    aug = BatchFlipRot90d("x")
    aug.randomize(2)
    aug._flip0, aug._flip1, aug._k = torch.tensor([False, False]), torch.tensor([False, False]), torch.tensor([2, 0])
    x = torch.arange(48.0).view(2, 1, 4, 6)
    out = aug._apply(x)
    assert torch.equal(out[0], x[0].flip(1).flip(2)) and torch.equal(out[1], x[1])

"""Case discovery, splits and slicing (bundle/data.py) on the phantom."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bundle.data import SEQUENCES, DataError, build_slices, discover_cases, per_sequence, volumes_to_slices

VAL_IDS = [203, 206, 210, 211, 214]  # the config's list; the phantom holds 203 (validation) and 201 (test)


def _names(cases):
    return [c["case"] for c in cases]


def test_official_layout_splits(phantom_dir):
    train = discover_cases(phantom_dir, "train", VAL_IDS)
    assert _names(train) == ["myops_training_101", "myops_training_102", "myops_training_103"]
    assert _names(discover_cases(phantom_dir, "validation", VAL_IDS)) == ["myops_test_203"]
    assert _names(discover_cases(phantom_dir, "test", VAL_IDS)) == ["myops_test_201"]
    # the validation list decides: moving 201 into it swaps nothing else
    assert _names(discover_cases(phantom_dir, "validation", [201, 203])) == ["myops_test_201", "myops_test_203"]
    with pytest.raises(DataError, match="test"):
        discover_cases(phantom_dir, "test", [201, 203])
    for case in train:
        assert set(case) == {"case", *SEQUENCES, "gd"}
        for seq in SEQUENCES:
            assert Path(case[seq]).is_file()
            assert Path(case[seq]).name == f"{case['case']}_{seq}.nii.gz"
            assert Path(case[seq]).parent.name == "train25"


def test_train_sorted_by_numeric_id(tmp_path, phantom_dir):
    # ids 99 and 100 sort differently as strings and as numbers
    for src, dst in (("101", "100"), ("102", "99")):
        for seq in SEQUENCES:
            (tmp_path / "train25").mkdir(exist_ok=True)
            shutil.copy(phantom_dir / "train25" / f"myops_training_{src}_{seq}.nii.gz",
                        tmp_path / "train25" / f"myops_training_{dst}_{seq}.nii.gz")
    assert _names(discover_cases(tmp_path, "train", VAL_IDS)) == ["myops_training_99", "myops_training_100"]


def test_only_test20_present(tmp_path, phantom_dir):
    for folder in ("test20", "test20_gd"):
        shutil.copytree(phantom_dir / folder, tmp_path / folder)
    assert _names(discover_cases(tmp_path, "validation", VAL_IDS)) == ["myops_test_203"]
    assert _names(discover_cases(tmp_path, "test", VAL_IDS)) == ["myops_test_201"]
    with pytest.raises(DataError, match="train25"):
        discover_cases(tmp_path, "train", VAL_IDS)


def test_missing_sequence_names_case(tmp_path, phantom_dir):
    shutil.copytree(phantom_dir / "train25", tmp_path / "train25")
    (tmp_path / "train25" / "myops_training_102_DE.nii.gz").unlink()
    with pytest.raises(DataError, match=r"myops_training_102.*DE"):
        discover_cases(tmp_path, "train", VAL_IDS)


def test_unknown_split_and_missing_dir(tmp_path, phantom_dir):
    with pytest.raises(DataError, match="training"):
        discover_cases(phantom_dir, "training", VAL_IDS)
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="nope"):
        discover_cases(missing, "train", VAL_IDS)


def test_labels_attached_when_present(tmp_path, phantom_dir):
    for case in discover_cases(phantom_dir, "validation", VAL_IDS) + discover_cases(phantom_dir, "test", VAL_IDS):
        assert Path(case["gd"]) == phantom_dir / "test20_gd" / f"{case['case']}_gd.nii.gz"
    shutil.copytree(phantom_dir / "test20", tmp_path / "test20")  # images only, no test20_gd
    (case,) = discover_cases(tmp_path, "validation", VAL_IDS)
    assert "gd" not in case and set(case) == {"case", *SEQUENCES}
    with pytest.raises(DataError, match="myops_test_203_gd"):
        discover_cases(tmp_path, "validation", VAL_IDS, require_label=True)


def test_volumes_to_slices_and_per_sequence():
    vols = [
        {"case": "a", "image": torch.rand(3, 8, 6, 4), "mask": torch.rand(1, 8, 6, 4).round()},
        {"case": "b", "image": torch.rand(3, 8, 6, 2)},
    ]
    slices = volumes_to_slices(vols)
    assert [(s["case"], s["slice"]) for s in slices] == [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1)]
    for s in slices:
        vol = vols[0] if s["case"] == "a" else vols[1]
        assert s["image"].shape == (3, 8, 6) and s["image"].dtype == torch.float32
        torch.testing.assert_close(s["image"], vol["image"][..., s["slice"]])
        if s["case"] == "a":
            torch.testing.assert_close(s["mask"], vol["mask"][..., s["slice"]])
        else:
            assert "mask" not in s
    singles = per_sequence(slices)
    assert len(singles) == 3 * len(slices)
    assert [x["sequence"] for x in singles[:6]] == ["C0", "DE", "T2", "C0", "DE", "T2"]
    for i, x in enumerate(singles):
        src = slices[i // 3]
        assert set(x) == {"image", "case", "slice", "sequence"}
        assert x["image"].shape == (1, 8, 6) and (x["case"], x["slice"]) == (src["case"], src["slice"])
        torch.testing.assert_close(x["image"][0], src["image"][SEQUENCES.index(x["sequence"])])


def test_build_slices_with_config_transforms(parser, phantom_dir):
    p = parser(dataset_dir=str(phantom_dir))
    vt, st = p.get_parsed_content("volume_transforms"), p.get_parsed_content("slice_transforms")
    cases = discover_cases(phantom_dir, "train", p.get_parsed_content("validation_ids"))[:2]
    slices = build_slices(cases, vt, st, progress=False)
    assert len(slices) == 2 * 4  # phantom volumes are 288 x 272 x 4
    assert [(s["case"], s["slice"]) for s in slices] == [(c["case"], i) for c in cases for i in range(4)]
    for s in slices:
        assert tuple(s["image"].shape) == (3, 128, 128)
        assert tuple(s["mask"].shape) == (1, 128, 128)
        assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
        assert set(torch.unique(torch.as_tensor(s["mask"])).tolist()) == {0.0, 1.0}  # nearest keeps it binary
        assert all(float(s["image"][c].max()) > 0.5 for c in range(3))


def test_map_fov_slices_shapes_and_round_trip():
    from bundle.data import map_fov_slices

    vol = torch.rand(2, 3, 16, 16, 5)
    seen = []

    def fn(x):
        seen.append(x.shape)
        return x[:, :1] * 2, None

    out, none = map_fov_slices(fn, vol, image_size=None)
    assert seen == [(10, 3, 16, 16)] and none is None
    torch.testing.assert_close(out, vol[:, :1] * 2)  # no resize: slices go back where they came from
    out, _ = map_fov_slices(fn, vol, image_size=8)
    assert seen[-1] == (10, 3, 8, 8) and out.shape == (2, 1, 16, 16, 5)
    const = torch.full((1, 3, 16, 16, 2), 0.5)
    torch.testing.assert_close(map_fov_slices(lambda x: (x[:, :1],), const, 8)[0], const[:, :1])
    with pytest.raises(ValueError, match="volumes"):
        map_fov_slices(fn, torch.rand(3, 16, 16, 5))


def test_resize_helpers_are_the_interpolate_calls():
    from bundle.data import area_resize, bicubic_resize

    x = torch.rand(4, 3, 37, 41)
    assert area_resize(x, (37, 41)) is x and bicubic_resize(x, (37, 41)) is x  # no-op at the same size
    small = area_resize(x, (16, 20))
    assert torch.equal(small, torch.nn.functional.interpolate(x, size=(16, 20), mode="area"))
    assert torch.equal(bicubic_resize(small, (37, 41)),
                       torch.nn.functional.interpolate(small, size=(37, 41), mode="bicubic", align_corners=False))


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()


def test_label_lookup_gz_then_nii(tmp_path):
    from bundle.data import discover_flat_cases

    img, gd = tmp_path / "train25", tmp_path / "train25_myops_gd"
    for i in (101, 102, 103):
        _touch(*(img / f"myops_training_{i}_{s}.nii.gz" for s in SEQUENCES))
    _touch(gd / "myops_training_101_gd.nii.gz", gd / "myops_training_101_gd.nii", gd / "myops_training_102_gd.nii")
    cases = discover_cases(tmp_path, "train", VAL_IDS)
    assert [Path(c["gd"]).name if "gd" in c else None for c in cases] == \
        ["myops_training_101_gd.nii.gz", "myops_training_102_gd.nii", None]
    with pytest.raises(DataError, match=r"case myops_training_103: label file .*myops_training_103_gd\.nii\.gz not"):
        discover_cases(tmp_path, "train", VAL_IDS, require_label=True)
    flat = tmp_path / "flat"
    for i in (4001, 4002, 4003):
        _touch(*(flat / f"pp_{i}_{s}.nii.gz" for s in SEQUENCES))
    _touch(flat / "pp_4001_gd.nii.gz", flat / "pp_4001_gd.nii", flat / "pp_4002_gd.nii")
    cases = discover_flat_cases(flat, [])
    assert [Path(c["gd"]).name if "gd" in c else None for c in cases] == ["pp_4001_gd.nii.gz", "pp_4002_gd.nii", None]
    assert [c["case"] for c in discover_flat_cases(flat, [4003])] == ["pp_4003"]


def test_tuning_fold_splits(phantom_dir):
    """`tune` = the training cases in tuning_ids, `train_tune` = the others; together they are `train`."""
    tune = discover_cases(phantom_dir, "tune", VAL_IDS, tuning_ids=[102])
    rest = discover_cases(phantom_dir, "train_tune", VAL_IDS, tuning_ids=[102])
    assert _names(tune) == ["myops_training_102"]
    assert _names(rest) == ["myops_training_101", "myops_training_103"]
    assert sorted(_names(tune) + _names(rest)) == _names(discover_cases(phantom_dir, "train", VAL_IDS))
    assert all("gd" in c for c in tune)
    with pytest.raises(DataError, match="tuning_ids"):
        discover_cases(phantom_dir, "tune", VAL_IDS)
    with pytest.raises(DataError, match=r"tuning ids \[999\]"):
        discover_cases(phantom_dir, "tune", VAL_IDS, tuning_ids=[999])


def test_extra_train_dir_adds_unlabelled_cases_with_zero_masks(parser, phantom_dir, tmp_path):
    """--extra_train_dir adds a flat folder's cases to the training cases; build_slices gives its unlabelled slices
    an all-zero mask beside the labelled ones, so a batch of both collates (issue 14: both centres together)."""
    from monai.data import DataLoader

    flat = tmp_path / "centre"
    flat.mkdir()
    for seq in SEQUENCES:  # a labelled phantom case, copied without its label, as a second centre's case 4001
        shutil.copy(phantom_dir / "train25" / f"myops_training_101_{seq}.nii.gz", flat / f"site_4001_{seq}.nii.gz")
    p = parser(dataset_dir=str(phantom_dir), train_split="train_tune", tuning_ids=[102, 103])
    assert _names(p.get_parsed_content("train_cases")) == ["myops_training_101"]
    p = parser(dataset_dir=str(phantom_dir), train_split="train_tune", tuning_ids=[102, 103],
               extra_train_dir=str(flat), extra_train_case_ids=[4001])
    cases = p.get_parsed_content("train_cases")
    assert _names(cases) == ["myops_training_101", "site_4001"] and "gd" not in cases[1]
    slices = build_slices(cases, p.get_parsed_content("volume_transforms"), p.get_parsed_content("slice_transforms"),
                          progress=False)
    labelled, extra = slices[:4], slices[4:]
    assert len(extra) == 4 and all(s["case"] == "site_4001" for s in extra)
    assert all(float(s["mask"].sum()) > 0 for s in labelled[1:3])
    assert all(s["mask"].shape == (1, 128, 128) and float(s["mask"].abs().sum()) == 0 for s in extra)
    torch.testing.assert_close(extra[1]["image"], labelled[1]["image"])  # the same scan, now without a label
    batch = next(iter(DataLoader(slices, batch_size=8, shuffle=False)))
    assert batch["mask"].shape == (8, 1, 128, 128)
    with pytest.raises(RuntimeError) as err:  # MONAI wraps what a config expression raises
        parser(dataset_dir=str(phantom_dir), extra_train_dir=str(flat), extra_train_case_ids=[4999]
               ).get_parsed_content("train_cases")
    assert isinstance(err.value.__cause__, DataError) and "4999" in str(err.value.__cause__)

"""Checks on the real MyoPS 2020 data (skipped when ``../shared/data/myops2020`` / ``$MYOPS_DIR`` is absent).

Only headers and label maps are read for every case; three cases go through LoadImaged + ValidateCased.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged

from bundle.data import LABEL_VALUES, SEQUENCES, DataError, check_geometry, discover_cases
from bundle.transforms import ValidateCased, fov_offsets

VAL_IDS = [203, 206, 210, 211, 214]
FOV = 256
KEYS = [*SEQUENCES, "gd"]


@pytest.fixture(scope="module")
def cases(myops_dir):
    return {split: discover_cases(myops_dir, split, VAL_IDS) for split in ("train", "validation")}


@pytest.fixture(scope="module")
def all_cases(cases):
    return cases["train"] + cases["validation"]


def test_config_validation_ids(parser):
    assert parser().get_parsed_content("validation_ids") == VAL_IDS


def test_train_split(cases):
    train = cases["train"]
    assert [c["case"] for c in train] == [f"myops_training_{i}" for i in range(101, 126)]
    assert all("gd" in c for c in train)
    assert sum(nib.load(c["C0"]).shape[2] for c in train) == 102


def test_validation_split(cases):
    assert [c["case"] for c in cases["validation"]] == [f"myops_test_{i}" for i in VAL_IDS]
    assert all("gd" in c for c in cases["validation"])


def test_test_split_is_empty(myops_dir):
    # test20/ holds only the five validation cases
    with pytest.raises(DataError, match="test20"):
        discover_cases(myops_dir, "test", VAL_IDS)


def test_header_geometry_every_case(all_cases):
    assert len(all_cases) == 30
    for case in all_cases:
        imgs = {k: nib.load(case[k]) for k in KEYS}
        check_geometry({k: v.shape for k, v in imgs.items()}, {k: v.affine for k, v in imgs.items()}, case)
        assert all(min(v.shape[:2]) >= FOV for v in imgs.values()), case["case"]  # crop, never pad


@pytest.mark.parametrize("name", ["myops_training_101", "myops_training_124", "myops_test_203"])
def test_validate_loaded_volumes(all_cases, name):
    (case,) = [c for c in all_cases if c["case"] == name]
    d = ValidateCased(KEYS)(LoadImaged(KEYS, image_only=True)(case))
    shape = nib.load(case["C0"]).shape
    assert all(tuple(d[k].shape) == shape for k in KEYS)
    assert set(torch.unique(d["gd"]).int().tolist()) == set(LABEL_VALUES)
    assert all(float(d[s].max()) > 0 for s in SEQUENCES)


def test_labels_inside_fov(all_cases):
    for case in all_cases:
        gd = np.asarray(nib.load(case["gd"]).dataobj)
        assert set(np.unique(gd).tolist()) <= set(LABEL_VALUES), case["gd"]
        ox, oy = fov_offsets(gd.shape, FOV)
        outside = np.ones(gd.shape[:2], bool)
        outside[ox : ox + FOV, oy : oy + FOV] = False
        assert (gd > 0).any(), case["gd"]
        assert not (gd[outside] > 0).any(), f"{case['gd']}: labelled voxels outside the centred {FOV}x{FOV} crop"

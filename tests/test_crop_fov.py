"""scripts/crop_fov.py: the cropped copy gives the bundle's pipeline the very same slices and labels, and the tool
refuses a non-empty destination."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import torch

from bundle.data import discover_cases

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "crop_fov.py"
spec = importlib.util.spec_from_file_location("crop_fov", SCRIPT)
crop_fov = importlib.util.module_from_spec(spec)
spec.loader.exec_module(crop_fov)


def test_cropped_copy_gives_identical_slices(parser, phantom_dir, tmp_path):
    dst = tmp_path / "cropped"
    assert crop_fov.main([str(phantom_dir), str(dst), "--fov", "256"]) == 0
    src_files = sorted(p.relative_to(phantom_dir) for p in phantom_dir.rglob("*.nii.gz"))
    assert sorted(p.relative_to(dst) for p in dst.rglob("*.nii.gz")) == src_files
    some = nib.load(str(dst / src_files[0]))
    assert some.shape[:2] == (256, 256)  # phantom volumes are 288 x 272
    assert some.get_data_dtype() == nib.load(str(phantom_dir / src_files[0])).get_data_dtype()
    # the native-grid path (the shipped weights' training path): the copy's crop is then a no-op; the default path
    # resamples first, so the cropped copy's interpolation grid (and edge) differ slightly
    p = parser(dataset_dir=str(phantom_dir), target_spacing="native")
    vt = p.get_parsed_content("volume_transforms")
    ids = p.get_parsed_content("validation_ids")
    for split in ("train", "validation"):
        for a, b in zip(discover_cases(phantom_dir, split, ids), discover_cases(dst, split, ids), strict=True):
            va, vb = vt(dict(a)), vt(dict(b))
            for key in ("image", "mask", "gd"):
                if key in va:
                    torch.testing.assert_close(torch.as_tensor(vb[key]), torch.as_tensor(va[key]), rtol=0, atol=0)


def test_refuses_non_empty_destination(phantom_dir, tmp_path, capsys):
    (tmp_path / "x").write_text("keep me")
    assert crop_fov.main([str(phantom_dir), str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "x").read_text() == "keep me"

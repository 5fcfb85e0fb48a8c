"""Safe output writing: NIfTI on the reference grid, no overwriting of inputs, atomic writes, output-folder
checks and the PNG preview."""

from __future__ import annotations

import hashlib
import os

import nibabel as nib
import numpy as np
import pytest

from bundle.data import DataError
from bundle.io import check_output_dir, save_nifti_like, save_png
from bundle.phantom import phantom_affine


def _reference(path, shape=(20, 18, 3), qform_code=1, sform_code=2):
    aff = phantom_affine(shape)
    img = nib.Nifti1Image(np.arange(np.prod(shape), dtype=np.int16).reshape(shape), aff)
    img.set_qform(aff, code=qform_code)
    img.set_sform(aff, code=sform_code)
    img.header["scl_slope"], img.header["scl_inter"] = 2.0, 5.0  # must not be copied onto the float output
    nib.save(img, str(path))
    return path


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


@pytest.mark.parametrize("sform_code", [0, 2])
def test_save_nifti_like_keeps_grid(tmp_path, sform_code):
    ref = _reference(tmp_path / "ref_C0.nii.gz", sform_code=sform_code)
    vol = np.random.default_rng(0).random((20, 18, 3)).astype(np.float64)
    out = save_nifti_like(vol, ref, tmp_path / "out" / "case_DE_synth.nii.gz")
    assert out == tmp_path / "out" / "case_DE_synth.nii.gz" and out.is_file()
    r, o = nib.load(str(ref)), nib.load(str(out))
    assert o.shape == r.shape
    assert o.get_data_dtype() == np.float32
    np.testing.assert_allclose(o.affine, r.affine, atol=1e-5)
    q_ref, qc_ref = r.get_qform(coded=True)
    q_out, qc_out = o.get_qform(coded=True)
    assert int(qc_out) == int(qc_ref) == 1
    np.testing.assert_allclose(q_out, q_ref, atol=1e-5)
    s_out, sc_out = o.get_sform(coded=True)
    assert int(sc_out) == sform_code
    if sform_code:
        np.testing.assert_allclose(s_out, r.get_sform(), atol=1e-5)
    np.testing.assert_allclose(o.get_fdata(), vol.astype(np.float32), atol=1e-6)  # no scaling applied
    np.testing.assert_allclose(o.header.get_zooms(), r.header.get_zooms(), atol=1e-5)


def test_save_nifti_like_refuses_input(tmp_path):
    ref = _reference(tmp_path / "ref_C0.nii.gz")
    other = _reference(tmp_path / "ref_T2.nii.gz")
    before = {p: (_digest(p), os.stat(p).st_mtime_ns) for p in (ref, other)}
    vol = np.zeros((20, 18, 3), np.float32)
    with pytest.raises(DataError, match="overwrite"):
        save_nifti_like(vol, ref, ref)
    with pytest.raises(DataError, match="overwrite"):
        save_nifti_like(vol, ref, other, protected=[other])
    # the same file through another spelling of its path
    with pytest.raises(DataError, match="overwrite"):
        save_nifti_like(vol, ref, tmp_path / "." / "ref_T2.nii.gz", protected=[str(other)])
    assert {p: (_digest(p), os.stat(p).st_mtime_ns) for p in (ref, other)} == before
    assert _leftovers(tmp_path) == []


def test_save_nifti_like_atomic(tmp_path, monkeypatch):
    ref = _reference(tmp_path / "ref_C0.nii.gz")
    out = tmp_path / "o" / "x_DE_synth.nii.gz"
    save_nifti_like(np.ones((20, 18, 3)), ref, out)
    save_nifti_like(np.full((20, 18, 3), 0.5), ref, out)  # replacing an earlier output is fine
    assert np.allclose(nib.load(str(out)).get_fdata(), 0.5)
    assert _leftovers(out.parent) == []
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)

    # a failing write leaves neither a partial file nor a temp file, and the old output intact
    def boom(img, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_nifti_like(np.zeros((20, 18, 3)), ref, out)
    with pytest.raises(OSError):
        save_nifti_like(np.zeros((20, 18, 3)), ref, out.parent / "new_DE_synth.nii.gz")
    monkeypatch.undo()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    assert np.allclose(nib.load(str(out)).get_fdata(), 0.5)


def test_check_output_dir_creates(tmp_path):
    p = check_output_dir(tmp_path / "a" / "b")
    assert p.is_dir() and list(p.iterdir()) == []


def test_check_output_dir_on_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        check_output_dir(f)
    assert f.read_text() == "x"


def test_check_output_dir_under_file(tmp_path):
    """A folder that cannot be created (its parent is a regular file) is a DataError naming it, even as root."""
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="sub"):
        check_output_dir(f / "sub")


def test_check_output_dir_unwritable(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        if os.access(d, os.W_OK):  # root ignores permissions
            pytest.skip("running with privileges that ignore folder permissions")
        with pytest.raises(DataError, match="not writable"):
            check_output_dir(d)
    finally:
        d.chmod(0o700)


def test_save_png(tmp_path):
    from PIL import Image

    tiles = [np.zeros((40, 30)), np.linspace(0, 1, 1200).reshape(40, 30), np.full((40, 30), 2.0)]
    out = save_png(tiles, ["a", "b", "c"], tmp_path / "p" / "case_DE_synth.png")
    assert out.is_file() and _leftovers(out.parent) == []
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (3 * 40, 30 + 14)  # width = tiles' X, height = Y + title band
        arr = np.asarray(im)
    assert arr[14:, :40].max() == 0  # first tile black
    ramp = arr[14:, 40:80].astype(int)  # second tile: X across, Y up (row 0 of the tile = the last Y)
    assert ramp[-1, 0] == 0 and ramp[0, -1] == 255
    assert (np.diff(ramp, axis=1) >= 0).all() and (np.diff(ramp, axis=0) <= 0).all()
    assert arr[14:, 80:].min() == 255  # values > 1 clipped to white


def test_uncertainty_follows_the_batch_item(tmp_path):
    """Batch of 2: each case gets its own slice of the inferer's uncertainty_volume, not item 0's."""
    import types

    import nibabel as nib
    import numpy as np
    import torch

    from bundle.io import SaveSynthesisd

    shape = (8, 8, 2)
    paths = {}
    for case in ("a", "b"):
        p = tmp_path / f"{case}_C0.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), p)
        paths[case] = p
    inferer = types.SimpleNamespace(uncertainty_volume=torch.stack([torch.full((1, 8, 8, 2), 0.1),
                                                                    torch.full((1, 8, 8, 2), 0.7)]))
    save = SaveSynthesisd(tmp_path / "out", "DE", ["C0", "T2"], inferer=inferer, preview=False)
    for case in ("a", "b"):
        save({"case": case, "C0_path": paths[case], "pred": torch.zeros(1, 8, 8, 2)})
    got = [nib.load(tmp_path / "out" / f"{c}_DE_uncertainty.nii.gz").get_fdata() for c in ("a", "b")]
    assert got[0].max() == pytest.approx(0.1) and got[1].max() == pytest.approx(0.7)

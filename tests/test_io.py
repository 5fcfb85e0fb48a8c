"""Safe output writing: NIfTI on the reference grid, no overwriting of inputs, atomic writes, output-folder
checks and the PNG preview."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
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
    """Batch of 2: each case gets its own slice of the sampler's std (put into the engine output, decollated per
    item), not item 0's."""
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
    std = torch.stack([torch.full((1, 8, 8, 2), 0.1), torch.full((1, 8, 8, 2), 0.7)])  # the batch's (B, 1, X, Y, S)
    inferer = types.SimpleNamespace(synth_output="mean", num_samples=2)
    save = SaveSynthesisd(tmp_path / "out", "DE", ["C0", "T2"], inferer=inferer, preview=False)
    for i, case in enumerate(("a", "b")):
        save({"case": case, "C0_path": paths[case], "pred": torch.zeros(1, 8, 8, 2), "std": std[i]})
    got = [nib.load(tmp_path / "out" / f"{c}_DE_uncertainty.nii.gz").get_fdata() for c in ("a", "b")]
    assert got[0].max() == pytest.approx(0.1) and got[1].max() == pytest.approx(0.7)


# --- issue 16: whole field, geometry round trip, orientation, signed inputs, sidecar --------------------------------


def _linear_model(bias: float = 0.05):
    """A deterministic stand-in for the synthesis (same input interface as the regressors): DE = 0.6 C0 + 0.4 T2 +
    bias; T2 = 0.5 C0 + 0.5 DE + bias."""
    import torch

    from bundle.regression import LinearFit

    m = LinearFit()
    with torch.no_grad():
        m.weight[1, 0], m.weight[1, 2], m.weight[2, 0], m.weight[2, 1] = 0.6, 0.4, 0.5, 0.5
        m.bias[:] = bias
    return m.eval()


def _synthesize(parser, item: dict, out_dir, task: str = "lge", **overrides):
    """The inference path of configs/inference.yaml on one case with the linear stand-in model: volume_transforms
    -> inferer (FOV, resized to the profile size and back) -> FillFieldd (whole field) -> SaveSynthesisd (mapped
    back, written)."""
    import torch

    from bundle.fill import FillFieldd
    from bundle.io import SaveSynthesisd
    from bundle.regression import TranslationVolumeInferer

    p = parser(**overrides)
    vt = p.get_parsed_content("volume_transforms")
    tasks = p["tasks"]
    target, conditions = tasks[task]["target"], tasks[task]["conditions"]
    d = vt(dict(item, **{f"{s}_path": item[s] for s in ("C0", "DE", "T2") if s in item}))
    model = _linear_model()
    inferer = TranslationVolumeInferer(task, tasks, image_size=64)
    pred = inferer(torch.as_tensor(d["image"])[None], model)[0]
    fill = FillFieldd(target, conditions, inferer=inferer, fill_network=model, image_size=64)
    save = SaveSynthesisd(out_dir, target, conditions, inferer=inferer,
                          provenance={"task": task, "weights": {"diffusion": str(item["C0"])}})
    save(fill(dict(d, pred=pred)))
    return save, d


def _phantom_case(tmp_path, name="myops_test_299", shape=(300, 290, 3), spacing=None, flip=None, transpose=False,
                  signed_de=False):
    """A phantom case written as NIfTI; ``spacing``: resampled in-plane to that pixel size (MONAI Spacing); ``flip``:
    axis stored flipped; ``transpose``: in-plane axes swapped; ``signed_de``: a PSIR-like signed LGE."""
    import nibabel as nib
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    from bundle.phantom import make_phantom_volumes, phantom_affine

    vols, aff = make_phantom_volumes(shape, seed=5), phantom_affine(shape)
    item = {"case": name}
    for k in ("C0", "DE", "T2"):
        arr, a = vols[k].astype(np.float32), aff.copy()
        if k == "DE" and signed_de:
            arr = arr - 0.35 * arr.max()  # 1/3 or more of the voxels negative, like PSIR
        if spacing is not None:
            mt = Spacing(pixdim=(spacing, spacing, 0), mode="bilinear")(MetaTensor(torch.as_tensor(arr)[None],
                                                                                 affine=torch.as_tensor(a)))
            arr, a = mt[0].numpy(), mt.affine.numpy().astype(np.float64)
        if flip is not None:
            f = np.eye(4)
            f[flip, flip], f[flip, 3] = -1, arr.shape[flip] - 1
            arr, a = np.ascontiguousarray(np.flip(arr, flip)), a @ f
        if transpose:
            arr, a = np.ascontiguousarray(arr.transpose(1, 0, 2)), a[:, [1, 0, 2, 3]]
        img = nib.Nifti1Image(arr, None)
        img.set_qform(a, code=1)
        img.set_sform(a, code=1)
        path = tmp_path / f"{name}_{k}.nii.gz"
        nib.save(img, path)
        item[k] = str(path)
    return item


def _psnr(a, b) -> float:
    import numpy as np

    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


@pytest.mark.parametrize("spacing", [0.9, 1.4])
def test_resampled_case_gives_the_same_synthesis_within_1db(parser, tmp_path, spacing):
    """A MyoPS-like case resampled to 0.9 / 1.4 mm: its synthesis, mapped onto the native case's grid, has a PSNR
    against the native case's reference within 1 dB of the native synthesis' PSNR, over the common field."""
    import nibabel as nib
    import numpy as np

    from bundle.io import to_input_grid

    (tmp_path / "n").mkdir(), (tmp_path / "r").mkdir()
    native = _phantom_case(tmp_path / "n")
    res = _phantom_case(tmp_path / "r", spacing=spacing)
    _, dn = _synthesize(parser, native, tmp_path / "out_n")
    _synthesize(parser, res, tmp_path / "out_r")
    syn_n = nib.load(tmp_path / "out_n" / "myops_test_299_DE_synth.nii.gz").get_fdata()
    syn_r_img = nib.load(tmp_path / "out_r" / "myops_test_299_DE_synth.nii.gz")
    syn_r = to_input_grid(syn_r_img.get_fdata(), syn_r_img.affine, native["C0"])  # onto the native grid
    # the reference: the native case's normalised DE on its own grid; the common field: where the resampled grid is
    ref = to_input_grid(np.asarray(dn["field"][1]), np.asarray(dn["field_affine"]), native["C0"])
    ones = to_input_grid(np.ones(syn_r_img.shape, np.float32), syn_r_img.affine, native["C0"], mode="nearest")
    common = ones > 0.5
    assert common.mean() > 0.9
    p_n, p_r = _psnr(syn_n[common], ref[common]), _psnr(syn_r[common], ref[common])
    assert abs(p_n - p_r) <= 1.0, (p_n, p_r)
    assert _psnr(syn_r[common], syn_n[common]) > 25  # and the two syntheses agree


@pytest.mark.parametrize("variant", [dict(flip=0), dict(flip=1), dict(flip=2), dict(transpose=True),
                                     dict(flip=0, transpose=True)],
                         ids=["flip-x", "flip-y", "flip-slices", "transposed", "flipped+transposed"])
def test_flipped_orientation_gives_the_identical_synthesis_mapped_back(parser, tmp_path, variant):
    import nibabel as nib
    import numpy as np

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = _phantom_case(tmp_path / "a")
    b = _phantom_case(tmp_path / "b", **variant)
    _synthesize(parser, a, tmp_path / "out_a")
    _synthesize(parser, b, tmp_path / "out_b")
    ia = nib.load(tmp_path / "out_a" / "myops_test_299_DE_synth.nii.gz")
    ib = nib.load(tmp_path / "out_b" / "myops_test_299_DE_synth.nii.gz")
    ref_b = nib.load(b["C0"])
    assert ib.shape == ref_b.shape and np.allclose(ib.affine, ref_b.affine)  # the input's grid and affine
    vb = ib.get_fdata()
    if variant.get("transpose"):
        vb = vb.transpose(1, 0, 2)
    if "flip" in variant:
        vb = np.flip(vb, variant["flip"])
    np.testing.assert_allclose(vb, ia.get_fdata(), atol=1e-4)


def test_psir_like_signed_condition(parser, tmp_path):
    import json

    import nibabel as nib
    import numpy as np

    item = _phantom_case(tmp_path, signed_de=True)
    assert (nib.load(item["DE"]).get_fdata() < 0).mean() > 0.3
    _, d = _synthesize(parser, item, tmp_path / "out", task="t2")  # DE is a condition
    out = nib.load(tmp_path / "out" / "myops_test_299_T2_synth.nii.gz").get_fdata()
    assert np.isfinite(out).all() and out.std() > 0.01
    norm = json.loads((tmp_path / "out" / "myops_test_299_T2_synth.json").read_text())["normalisation"]
    de = [n for n in norm if n["sequence"] == "DE"][0]
    assert de["signed"] and de["lo"] < 0 and de["percentiles"] == [0.5, 99.5]
    assert float(np.asarray(d["image"][1]).min()) == 0.0 and (np.asarray(d["image"][1]) > 0).mean() > 0.9


def test_every_output_voxel_is_synthesized_and_sidecar_written(parser, tmp_path):
    """No black frame: with a stand-in model whose output is >= 0.05 everywhere, every voxel of the input field is
    > 0 (the old paste left 0 outside the 256 x 256 crop); the preview shows the whole field; header descrip and
    sidecar JSON carry units, window, weights md5."""
    import json

    import nibabel as nib
    import numpy as np
    from PIL import Image

    from bundle.weights import file_md5

    item = _phantom_case(tmp_path, shape=(340, 330, 2))
    save, d = _synthesize(parser, item, tmp_path / "out")
    img = nib.load(tmp_path / "out" / "myops_test_299_DE_synth.nii.gz")
    ref = nib.load(item["C0"])
    assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)
    vol = img.get_fdata()
    # (bicubic resizing may undershoot the 0.05 at a few sharp edges: clipped to 0 there)
    assert (vol > 0).mean() > 0.999, (vol <= 0).sum()
    frame = np.concatenate([vol[:40].ravel(), vol[-40:].ravel(), vol[:, :37].ravel(), vol[:, -37:].ravel()])
    assert (frame > 0).mean() > 0.99 and np.median(frame) > 0.04  # the old paste left this frame (outside the 256 x 256 crop) at 0
    assert b"[0,1]" in bytes(img.header["descrip"]) and b"DE" in bytes(img.header["descrip"])
    side = json.loads((tmp_path / "out" / "myops_test_299_DE_synth.json").read_text())
    # names and md5s only: no absolute path (they often carry patient names or ids)
    assert side["weights"]["diffusion"] == {"file": Path(item["C0"]).name, "md5": file_md5(item["C0"])}
    assert side["inputs"]["C0"] == {"file": Path(item["C0"]).name, "md5": file_md5(item["C0"])}
    assert str(tmp_path) not in json.dumps(side)
    assert side["whole_field"]["method"] == "regression" and side["geometry"]["fov_mm"] == pytest.approx(186.64, 0.01)
    assert side["outputs"] == ["myops_test_299_DE_synth.nii.gz"]
    with Image.open(tmp_path / "out" / "myops_test_299_DE_synth.png") as im:
        field = d["field"].shape[1:3]
        assert im.size == (field[0] * 5, field[1] + 14)  # 5 tiles of the whole (resampled) field
        tile = np.asarray(im)[14:, 2 * field[0] : 3 * field[0]]
        frame = np.concatenate([tile[:20].ravel(), tile[-20:].ravel(), tile[:, :20].ravel(), tile[:, -20:].ravel()])
        assert (frame == 0).mean() < 0.01 and frame.mean() > 10  # no black frame (a few bicubic undershoots)


# --- issue 31.3: two outputs (the mean and one sample), the sidecar says which is which, all or nothing ------------


def _sampler_outputs(tmp_path, synth_output: str, num_samples: int, cases=("a", "b"), preview=False):
    """SaveSynthesisd after a stand-in sampler's batch of ``cases`` (8 x 8 x 2 volumes; no ``field``): its output
    (``pred``) is 0.5 (synth_output mean) or 0.2 + 0.1·item (sample); with N > 1 each item's engine output also holds
    ``mean`` 0.5, ``sample`` 0.2 + 0.1·item and ``std`` 0.3 (bundle.sampler.SynthesisOutputs). Returns (output
    folder, the transform)."""
    import types

    import torch

    from bundle.io import SaveSynthesisd

    shape = (8, 8, 2)
    paths = {}
    for case in cases:
        p = tmp_path / f"{case}_C0.nii.gz"
        if not p.exists():
            nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), p)
        paths[case] = p
    b = len(cases)
    mean = torch.full((b, 1, *shape), 0.5)
    sample = torch.stack([torch.full((1, *shape), 0.2 + 0.1 * i) for i in range(b)])
    many = num_samples > 1
    inferer = types.SimpleNamespace(synth_output=synth_output, num_samples=num_samples)
    extras = dict(mean=mean, sample=sample, std=torch.full((b, 1, *shape), 0.3)) if many else {}
    pred = sample if synth_output == "sample" or not many else mean
    save = SaveSynthesisd(tmp_path / "out", "DE", ["C0", "T2"], inferer=inferer, preview=preview,
                          provenance={"task": "lge"})
    for i, case in enumerate(cases):
        save({"case": case, "C0_path": paths[case], "pred": pred[i], "image": torch.rand(3, *shape),
              **{k: v[i] for k, v in extras.items()}})
    return tmp_path / "out", save


@pytest.mark.parametrize("choice", ["mean", "sample"])
def test_two_outputs_and_a_sidecar_that_names_them(tmp_path, choice):
    """N 2: _synth holds the chosen output, the other is written beside it (_sample or _mean), each batch item gets
    its own slice of it; the sidecar's files/roles say which file is which, with synth_output and num_samples."""
    import json

    out, save = _sampler_outputs(tmp_path, choice, 2, preview=True)
    other = "sample" if choice == "mean" else "mean"
    for i, case in enumerate(("a", "b")):
        synth = nib.load(out / f"{case}_DE_synth.nii.gz").get_fdata()
        extra = nib.load(out / f"{case}_DE_{other}.nii.gz").get_fdata()
        want_mean, want_sample = 0.5, 0.2 + 0.1 * i
        assert synth.max() == pytest.approx(want_mean if choice == "mean" else want_sample)
        assert extra.max() == pytest.approx(want_sample if choice == "mean" else want_mean)
        assert not (out / f"{case}_DE_{choice}.nii.gz").exists()
        assert bytes(nib.load(out / f"{case}_DE_{other}.nii.gz").header["descrip"]).startswith(
            f"CMRDiff lge DE {other}".encode())
        side = json.loads((out / f"{case}_DE_synth.json").read_text())
        assert side["synth_output"] == choice and side["num_samples"] == 2
        assert side["files"] == {f"{case}_DE_synth.nii.gz": choice, f"{case}_DE_{other}.nii.gz": other,
                                 f"{case}_DE_uncertainty.nii.gz": "std", f"{case}_DE_synth.png": "preview"}
        assert set(side["roles"]) == {"mean", "sample", "std", "preview"}
        assert side["outputs"] == [f"{case}_DE_synth.nii.gz", f"{case}_DE_{other}.nii.gz",
                                   f"{case}_DE_uncertainty.nii.gz"]
    assert len(save.written) == 2 * 5 and not _leftovers(out)


@pytest.mark.parametrize("choice", ["mean", "sample"])
def test_one_sample_writes_no_second_output(tmp_path, choice):
    import json

    out, _ = _sampler_outputs(tmp_path, choice, 1, cases=("a",))
    assert sorted(p.name for p in out.iterdir()) == ["a_DE_synth.json", "a_DE_synth.nii.gz"]
    side = json.loads((out / "a_DE_synth.json").read_text())
    assert side["files"] == {"a_DE_synth.nii.gz": "sample"} and side["num_samples"] == 1


def test_not_a_sampler_is_a_prediction(tmp_path):
    """An inferer without synth_output / num_samples (an image-space baseline): one output, role prediction."""
    import json
    import types

    import torch

    from bundle.io import SaveSynthesisd

    ref = tmp_path / "a_C0.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.float32), np.eye(4)), ref)
    save = SaveSynthesisd(tmp_path / "out", "DE", ["C0", "T2"], inferer=types.SimpleNamespace(), preview=False)
    save({"case": "a", "C0_path": ref, "pred": torch.zeros(1, 8, 8, 2)})
    side = json.loads((tmp_path / "out" / "a_DE_synth.json").read_text())
    assert side["files"] == {"a_DE_synth.nii.gz": "prediction"} and side["synth_output"] is None


def test_a_failing_write_leaves_no_output_of_the_case(tmp_path, monkeypatch):
    """All or nothing: when the second NIfTI fails to write, neither the synthesis nor anything else of the case
    is replaced or left behind (no temp files); an earlier complete set stays as it was."""
    out, _ = _sampler_outputs(tmp_path, "mean", 2, cases=("a",))
    before = {p.name: _digest(p) for p in out.iterdir()}
    (tmp_path / "fresh").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.float32), np.eye(4)), tmp_path / "fresh" / "a_C0.nii.gz")
    calls = []
    real_save = nib.save

    def flaky(img, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_save(img, path)

    monkeypatch.setattr(nib, "save", flaky)
    with pytest.raises(OSError, match="No space"):
        _sampler_outputs(tmp_path, "sample", 2, cases=("a",))
    assert {p.name: _digest(p) for p in out.iterdir()} == before and not _leftovers(out)
    calls.clear()
    with pytest.raises(OSError, match="No space"):
        _sampler_outputs(tmp_path / "fresh", "mean", 2, cases=("a",))
    assert list((tmp_path / "fresh" / "out").iterdir()) == []


def test_stale_outputs_of_another_setting_are_removed(tmp_path):
    """A second run into the same folder with other settings leaves no file of the first that the new sidecar does
    not name (a _sample beside a _synth it was not drawn with would mislead)."""
    import json

    out, _ = _sampler_outputs(tmp_path, "mean", 2, cases=("a",))
    assert (out / "a_DE_sample.nii.gz").is_file()
    _sampler_outputs(tmp_path, "sample", 2, cases=("a",))
    assert not (out / "a_DE_sample.nii.gz").exists() and (out / "a_DE_mean.nii.gz").is_file()
    _sampler_outputs(tmp_path, "mean", 1, cases=("a",))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_DE_synth.json", "a_DE_synth.nii.gz"]
    assert list(json.loads((out / "a_DE_synth.json").read_text())["files"]) == ["a_DE_synth.nii.gz"]


def test_fill_field_is_an_inference_step_before_saving(tmp_path):
    """FillFieldd (bundle/fill.py): every FOV output of an item (pred, and the sampler's mean / sample beside it) is
    blended into the same whole-field fill (the regressor on the whole field; a reconstruction: the input), and the
    method is recorded; SaveSynthesisd only maps and writes, and refuses a field without its whole-field synthesis."""
    import torch

    from bundle.data import DataError
    from bundle.fill import FillFieldd
    from bundle.io import SaveSynthesisd
    from bundle.regression import regression_fill

    field = torch.rand(3, 16, 16, 2)
    model = _linear_model()
    d = {"field": field, "pred": torch.full((1, 8, 8, 2), 0.5), "sample": torch.full((1, 8, 8, 2), 0.2)}
    out = FillFieldd("DE", ["C0", "T2"], fill_network=model, feather=2, image_size=8)(d)
    fill = regression_fill(field, 1, model, 8, 8).numpy()
    assert out["field_fill"] == {"method": "regression", "feather_voxels": 2} and "mean_field" not in out
    for key, v in (("pred", 0.5), ("sample", 0.2)):
        whole = out[f"{key}_field"]
        assert whole.shape == (16, 16, 2)
        np.testing.assert_allclose(whole[6:10, 6:10], v, atol=1e-6)  # the FOV (4:12) inside the 2-voxel ramp
        np.testing.assert_allclose(whole[:4], fill[:4], atol=1e-6)  # outside the FOV: the fill
        np.testing.assert_allclose(whole[4, 8], 0.5 * v + 0.5 * fill[4, 8], atol=1e-6)  # the ramp: half at the edge
    recon = FillFieldd("DE", ["DE"], feather=0)(dict(d, pred=torch.full((1, 8, 8, 2), 0.3)))
    assert recon["field_fill"]["method"] == "input"
    np.testing.assert_allclose(recon["pred_field"][:4], field[1, :4].numpy())
    np.testing.assert_allclose(recon["pred_field"][4:12, 4:12], 0.3)
    assert FillFieldd("DE", ["C0", "T2"])({"pred": d["pred"]}) == {"pred": d["pred"]}  # no field: unchanged
    ref = tmp_path / "a_C0.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 2), np.float32), np.eye(4)), ref)
    with pytest.raises(DataError, match="FillFieldd"):
        SaveSynthesisd(tmp_path / "out", "DE", ["C0", "T2"], preview=False)(
            {"case": "a", "C0_path": ref, "pred": d["pred"], "field": field, "field_affine": torch.eye(4)})


def test_case_file_stem_keeps_outputs_in_their_folder():
    from bundle.data import DataError
    from bundle.io import case_file_stem

    for ok in ("p1", "myops_test_203", "case 7.v2"):
        assert case_file_stem(ok) == ok
    for bad in ("../x", "a/b", "a\\b", "..", ".", "", "x\0y"):
        with pytest.raises(DataError, match="case_name"):
            case_file_stem(bad)

import json

import nibabel as nib
import numpy as np
import pytest

from bundle.phantom import SEQUENCES, make_phantom_dataset, make_phantom_volumes, write_phantom_case

SHAPE = (288, 272, 4)
LABELS = {0, 200, 500, 600, 1220, 2221}


@pytest.fixture(scope="module")
def vols():
    return make_phantom_volumes(SHAPE, seed=0)


def test_shape_dtype(vols):
    assert set(vols) == {*SEQUENCES, "gd"}
    for key, arr in vols.items():
        assert arr.shape == SHAPE
        assert arr.dtype in (np.int16, np.uint16)
    assert all(vols[s].min() >= 0 and 300 < vols[s].max() < 5000 for s in SEQUENCES)


def test_determinism(vols):
    again = make_phantom_volumes(SHAPE, seed=0)
    other = make_phantom_volumes(SHAPE, seed=1)
    for key in vols:
        np.testing.assert_array_equal(vols[key], again[key])
        assert not np.array_equal(vols[key], other[key])


def test_labels_and_geometry(vols):
    gd = vols["gd"]
    assert set(np.unique(gd).tolist()) <= LABELS
    for s in range(SHAPE[2]):
        assert {200, 500, 600} <= set(np.unique(gd[..., s]).tolist())
    lesion_slices = sum(bool((gd[..., s] == 1220).any() and (gd[..., s] == 2221).any()) for s in range(SHAPE[2]))
    assert lesion_slices >= SHAPE[2] // 2
    ox, oy = (SHAPE[0] - 256) // 2, (SHAPE[1] - 256) // 2
    outside = np.ones(SHAPE[:2], bool)
    outside[ox:ox + 256, oy:oy + 256] = False
    assert not (gd[outside] > 0).any()
    assert vols["C0"][:4, :4].mean() < 0.05 * vols["C0"].max()  # air corner ~0


def test_contrasts(vols):
    gd = vols["gd"]
    mean = {s: {l: vols[s][gd == l].astype(float).mean() for l in (200, 500, 1220, 2221)} for s in SEQUENCES}
    assert mean["C0"][500] > 1.5 * mean["C0"][200]
    assert mean["DE"][2221] > 2 * mean["DE"][200]
    assert mean["T2"][1220] > 1.3 * mean["T2"][200]
    assert mean["T2"][500] < mean["T2"][200]  # black blood


def test_write_case_layout(tmp_path):
    paths = write_phantom_case(tmp_path, "myops_training_101", shape=(96, 80, 2), seed=3)
    assert paths["C0"] == tmp_path / "train25" / "myops_training_101_C0.nii.gz"
    assert paths["gd"] == tmp_path / "train25_myops_gd" / "myops_training_101_gd.nii.gz"
    imgs = {k: nib.load(p) for k, p in paths.items()}
    ref = imgs["gd"].affine
    assert not np.allclose(ref, np.eye(4))
    np.testing.assert_allclose(imgs["C0"].header.get_zooms(), (0.75, 0.75, 12.0))
    for img in imgs.values():
        assert img.shape == (96, 80, 2)
        np.testing.assert_array_equal(img.affine, ref)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 0
        assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(imgs["gd"].dataobj), make_phantom_volumes((96, 80, 2), 3)["gd"])
    test_paths = write_phantom_case(tmp_path, "myops_test_203", shape=(96, 80, 2))
    assert test_paths["T2"].parent.name == "test20" and test_paths["gd"].parent.name == "test20_gd"
    with pytest.raises(ValueError):
        write_phantom_case(tmp_path, "patient7")


def test_dataset_idempotent(tmp_path):
    kw = dict(train_ids=(101, 102), validation_ids=(203,), test_ids=(201,), shape=(64, 72, 2), seed=5)
    out = make_phantom_dataset(tmp_path, **kw)
    assert out == tmp_path
    files = sorted(p for p in tmp_path.rglob("*.nii.gz"))
    assert len(files) == 16
    assert (tmp_path / "train25" / "myops_training_102_DE.nii.gz").is_file()
    assert (tmp_path / "test20_gd" / "myops_test_203_gd.nii.gz").is_file()
    assert json.loads((tmp_path / ".phantom.json").read_text())["seed"] == 5
    a = np.asarray(nib.load(tmp_path / "train25" / "myops_training_101_C0.nii.gz").dataobj)
    b = np.asarray(nib.load(tmp_path / "train25" / "myops_training_102_C0.nii.gz").dataobj)
    assert not np.array_equal(a, b)  # per-case seeds differ
    mtimes = {p: p.stat().st_mtime_ns for p in files + [tmp_path / ".phantom.json"]}
    make_phantom_dataset(tmp_path, **kw)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    make_phantom_dataset(tmp_path, **{**kw, "seed": 6})  # different arguments -> regenerated
    assert json.loads((tmp_path / ".phantom.json").read_text())["seed"] == 6


@pytest.mark.parametrize("shape", [(63, 100, 2), (100, 100, 0), (100, 100, 9), (100, 100), "abc"])
def test_bad_arguments(tmp_path, shape):
    with pytest.raises(ValueError):
        make_phantom_dataset(tmp_path, shape=shape)
    assert not (tmp_path / ".phantom.json").exists()


def test_bad_ids(tmp_path):
    with pytest.raises(ValueError):
        make_phantom_dataset(tmp_path, train_ids=(101,), validation_ids=(101,), test_ids=(), shape=(64, 64, 1))


def test_myops_like_calibration(vols):
    """Geometry and contrasts in the MyoPS 2020 ranges (measured on its 30 labelled cases, bundle/phantom.py)."""
    gd, px = vols["gd"], 0.75
    for s in range(SHAPE[2]):
        lv, myo = (gd[..., s] == 500).sum(), np.isin(gd[..., s], (200, 1220, 2221)).sum()
        r_lv, r_epi = np.sqrt(lv / np.pi) * px, np.sqrt((lv + myo) / np.pi) * px
        assert 12 <= r_lv <= 30 and 8 <= r_epi - r_lv <= 16  # mm (MyoPS: 12-29 mm, 9-15 mm)
    c = slice((SHAPE[0] - 256) // 2, (SHAPE[0] + 256) // 2), slice((SHAPE[1] - 256) // 2, (SHAPE[1] + 256) // 2)
    g = gd[c]
    rel = {s: {l: vols[s][c][g == l].mean() / np.percentile(vols[s][c], 99.5) for l in (200, 500)} for s in SEQUENCES}
    assert 0.5 < rel["C0"][500] < 0.9 and 0.18 < rel["C0"][200] < 0.45
    assert 0.3 < rel["DE"][500] < 0.7 and 0.1 < rel["DE"][200] < 0.35
    assert 0.05 < rel["T2"][500] < 0.25 and 0.15 < rel["T2"][200] < 0.5


def test_default_data_set_is_an_explicit_logged_step(tmp_path, caplog, parser):
    """Resolving `dataset_dir` writes nothing; the `provide_data` step writes the phantom and says where; a given
    --dataset_dir (or explicit input files: None) is left alone."""
    import logging

    from bundle.phantom import provide_default

    p = parser(output_dir=str(tmp_path / "out"))
    default = tmp_path / "out" / "phantom"
    assert p.get_parsed_content("dataset_dir") == str(default)
    assert not default.exists()  # resolving the value did no work
    with caplog.at_level(logging.INFO, logger="bundle.phantom"):
        assert p.get_parsed_content("provide_data") == default
    assert (default / ".phantom.json").is_file()
    assert f"written at {default}" in caplog.text and "no --dataset_dir" in caplog.text
    mine = tmp_path / "mine"
    assert provide_default(mine, default) is None and not mine.exists()
    assert provide_default(None, default) is None


@pytest.mark.parametrize("workflow", ["train_autoencoder", "train_diffusion", "inference", "inference_autoencoder",
                                      "baselines/unet_l1", "baselines/copy", "baselines/evaluate_image",
                                      "baselines/fit_linear", "multi_gpu_train_diffusion"])
def test_every_workflow_provides_its_data_and_loads_weights_as_steps(workflow):
    """Loading and the default data set are `initialize` steps of each workflow, not side effects of a value."""
    import yaml

    from tests.conftest import REPO_ROOT

    cfg = yaml.safe_load((REPO_ROOT / "configs" / f"{workflow}.yaml").read_text())
    init = cfg["initialize"] if isinstance(cfg["initialize"], list) else [cfg["initialize"]]
    # the training workflows start with configs/common.yaml's training#initialize
    shared = yaml.safe_load((REPO_ROOT / "configs" / "common.yaml").read_text())["training"]["initialize"]
    steps = [str(s) for e in init for s in (shared if e == "@training#initialize" else [e])]
    assert "@provide_data" in steps
    uses_ae = workflow in ("train_diffusion", "inference", "inference_autoencoder", "multi_gpu_train_diffusion")
    assert ("@load_autoencoder" in steps) == uses_ae
    text = (REPO_ROOT / "configs" / f"{workflow}.yaml").read_text()
    assert "print('saved'" not in text and "make_phantom_dataset" not in text

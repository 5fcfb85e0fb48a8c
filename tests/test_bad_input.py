"""Bad input through the real command line (``python -m bundle run``, issue #9): for every kind of bad input the
run ends with exit code 2 and one last stderr line ``error: ...`` that names the offending file (its basename) or
config field, writes no ``*synth*`` output and leaves every pre-existing file (inputs, a sentinel in the output
folder) byte-for-byte as it was.

Inference uses the shipped ``cpu`` weights in ``models/`` with ``--num_inference_steps 2``; the single-case form
(``--input_files``) unless a data-set layout or a label is involved (then ``--dataset_dir`` on a small copy of
the phantom, with ``configs/evaluate.yaml`` for labels)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "keep_me.txt"


def _digests(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in folders if f.exists() for p in sorted(f.rglob("*")) if p.is_file()}


def _save_like(src: Path, dst: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> Path:
    """``src``'s image (or ``data``) with ``src``'s header (or ``affine``) written to ``dst``."""
    img = nib.load(str(src))
    arr = np.asarray(img.dataobj) if data is None else data
    out = nib.Nifti1Image(arr, img.affine if affine is None else affine, img.header.copy())
    out.set_data_dtype(arr.dtype)
    nib.save(out, str(dst))
    return dst


def _image(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _run(args: list, evaluate: bool = False) -> subprocess.CompletedProcess:
    files = ["configs/common.yaml", "configs/inference.yaml"] + (["configs/evaluate.yaml"] if evaluate else [])
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "bundle", "run", "--config_file", str(files), "--num_inference_steps", "2",
           *map(str, args)]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cpu_networks():
    """The ``cpu``-profile (shipped weights) and ``tiny``-profile diffusion networks from ``configs/common.yaml``."""
    import torch
    from monai.bundle import ConfigParser

    def build(profile: str):
        p = ConfigParser()
        p.read_config(str(REPO_ROOT / "configs" / "common.yaml"))
        p["bundle_root"], p["profile"] = str(REPO_ROOT), profile
        return {k: p.get_parsed_content(k) for k in ("network_def", "diffusion_arch")}

    nets = {"cpu": build("cpu"), "tiny": build("tiny")}
    shipped = torch.load(REPO_ROOT / "models" / "diffusion_cpu_any.pt", map_location="cpu", weights_only=True)
    nets["cpu"]["network_def"].load_state_dict(shipped["state_dict"])
    nets["cpu"]["scale_factor"] = shipped["extra"]["scale_factor"]
    return nets


def _models_dir(tmp: Path, nets, case: str) -> Path:
    """A models folder holding the shipped autoencoder and one diffusion file that is wrong for ``case``."""
    from bundle.weights import save_weights

    models = tmp / "models"
    models.mkdir()
    shutil.copy2(REPO_ROOT / "models" / "autoencoder_cpu.pt", models / "autoencoder_cpu.pt")
    cpu, tiny = nets["cpu"], nets["tiny"]
    if case == "wrong_arch_weights":  # a tiny-profile network under the cpu name, its arch not recorded
        save_weights(models / "diffusion_cpu_any.pt", tiny["network_def"], {}, scale_factor=cpu["scale_factor"])
    elif case == "wrong_task_weights":  # the right architecture, but a t2 model found for task lge
        save_weights(models / "diffusion_cpu_lge.pt", cpu["network_def"], dict(cpu["diffusion_arch"], task="t2"),
                     scale_factor=cpu["scale_factor"])
    return models


SINGLE_CASE = [  # (case, token the error line must contain)
    ("missing_condition_file", "c0.nii.gz"),
    ("shape_mismatch", "t2.nii.gz"),
    ("affine_mismatch", "t2.nii.gz"),
    ("volume_2d", "c0.nii.gz"),
    ("volume_4d", "c0.nii.gz"),
    ("nan_voxels", "c0.nii.gz"),
    ("inf_voxels", "t2.nii.gz"),
    ("all_zero_slice", "c0.nii.gz"),
    ("corrupt_nifti_garbage", "c0.nii.gz"),
    ("corrupt_nifti_truncated", "c0.nii.gz"),
    ("unknown_task", "task"),
    ("wrong_arch_weights", "diffusion_cpu_any.pt"),
    ("wrong_task_weights", "diffusion_cpu_lge.pt"),
    ("output_dir_not_writable", "results_folder"),
    ("output_dir_is_a_file", "c0.nii.gz"),
    ("output_equals_input", "c1_DE_synth.nii.gz"),
    # the second output (the sample beside the default mean) would overwrite an input: refused, and the synthesis
    # is not written either (a case's files are written all or nothing)
    ("sample_output_equals_input", "c1_DE_sample.nii.gz"),
    ("synth_output_unknown", "synth_output must be one of"),
    ("guidance_scale_out_of_range", "guidance_scale_1"),
    ("strength_out_of_range", "strength"),
    # malformed knob values: each checked where it is read, one line naming it (issue 32)
    ("seed_not_a_number", "seed must be an integer"),
    ("seed_negative", "seed must be an integer"),
    ("target_spacing_not_a_number", "target_spacing must be"),
    ("num_inference_steps_not_a_number", "num_inference_steps"),
    ("num_samples_not_a_number", "num_samples"),
    ("fill_feather_not_a_number", "fill_feather"),
]


@pytest.mark.parametrize("case,token", SINGLE_CASE, ids=[c for c, _ in SINGLE_CASE])
def test_single_case_bad_input(case, token, phantom_dir, cpu_networks, tmp_path):
    src = {s: phantom_dir / "test20" / f"myops_test_201_{s}.nii.gz" for s in ("C0", "T2")}
    inp = tmp_path / "inputs"
    inp.mkdir()
    c0, t2 = inp / "c0.nii.gz", inp / "t2.nii.gz"
    shutil.copy2(src["C0"], c0)
    shutil.copy2(src["T2"], t2)
    out = tmp_path / "results_folder"
    out.mkdir()
    (out / SENTINEL).write_text("pre-existing result\n")
    case_name, extra = "c1", []

    vol = _image(src["C0"])
    if case == "missing_condition_file":
        c0.unlink()
    elif case == "shape_mismatch":
        _save_like(src["T2"], t2, _image(src["T2"])[:-8])
    elif case == "affine_mismatch":
        aff = nib.load(str(src["T2"])).affine.copy()
        aff[:3, 3] += 5.0  # shifted by 5 mm
        _save_like(src["T2"], t2, affine=aff)
    elif case == "volume_2d":
        _save_like(src["C0"], c0, vol[..., 0])
    elif case == "volume_4d":
        _save_like(src["C0"], c0, np.stack([vol, vol], -1))
    elif case == "nan_voxels":
        v = vol.astype(np.float32)
        v[100, 100, 1] = np.nan
        _save_like(src["C0"], c0, v)
    elif case == "inf_voxels":
        v = _image(src["T2"]).astype(np.float32)
        v[120, 90, 0] = np.inf
        _save_like(src["T2"], t2, v)
    elif case == "all_zero_slice":
        v = vol.copy()
        v[..., 2] = 0
        _save_like(src["C0"], c0, v)
    elif case == "corrupt_nifti_garbage":
        c0.write_bytes(b"not a nifti file")
    elif case == "corrupt_nifti_truncated":  # a download cut short: valid gzip header, stream ends mid-data
        c0.write_bytes(src["C0"].read_bytes()[: src["C0"].stat().st_size // 2])
    elif case == "unknown_task":
        extra = ["--task", "xyz"]
    elif case in ("wrong_arch_weights", "wrong_task_weights"):
        extra = ["--models_dir", _models_dir(tmp_path, cpu_networks, case)]
    elif case == "output_dir_not_writable":
        if os.geteuid() == 0:
            pytest.skip("running as root: permission bits are not enforced")
        out.chmod(0o500)
    elif case == "output_dir_is_a_file":
        out = c0
    elif case in ("output_equals_input", "sample_output_equals_input"):  # an output's name is the C0 input's name
        name = "c1_DE_synth.nii.gz" if case == "output_equals_input" else "c1_DE_sample.nii.gz"
        shutil.move(c0, out / name)
        c0 = out / name
    elif case == "synth_output_unknown":
        extra = ["--synth_output", "median"]
    elif case == "guidance_scale_out_of_range":
        extra = ["--guidance_scale_1", "-1"]
    elif case == "strength_out_of_range":
        extra = ["--strength", "1.5"]
    elif case in ("seed_not_a_number", "target_spacing_not_a_number", "num_inference_steps_not_a_number",
                  "num_samples_not_a_number", "fill_feather_not_a_number"):
        extra = [f"--{case.split('_not_')[0]}", "abc"]
    elif case == "seed_negative":
        extra = ["--seed", "-3"]
    else:
        raise AssertionError(case)

    before = _digests(inp, out, tmp_path / "models")
    try:
        proc = _run(["--output_dir", out, "--case_name", case_name, "--task", "lge",
                     "--input_files", str({"C0": str(c0), "T2": str(t2)}), *extra])
    finally:
        if case == "output_dir_not_writable":
            out.chmod(0o700)
    _check_failure(proc, token)
    assert _digests(inp, out, tmp_path / "models") == before  # nothing written, changed or lost
    assert not list(inp.glob("*synth*"))
    if out.is_dir():
        assert sorted(p.name for p in out.iterdir()) == sorted([SENTINEL] + [c0.name] * (c0.parent == out))


DATASET_CASES = [
    ("missing_condition_file_in_dataset", "myops_test_201_T2.nii.gz"),
    ("unknown_label_values", "myops_test_203_gd.nii.gz"),
]


@pytest.mark.parametrize("case,token", DATASET_CASES, ids=[c for c, _ in DATASET_CASES])
def test_dataset_bad_input(case, token, phantom_dir, tmp_path):
    data = tmp_path / "data"
    (data / "test20").mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / SENTINEL).write_text("pre-existing result\n")
    if case == "missing_condition_file_in_dataset":  # test case 201 without its T2 file
        for s in ("C0", "DE"):
            shutil.copy2(phantom_dir / "test20" / f"myops_test_201_{s}.nii.gz", data / "test20")
        args, evaluate = ["--split", "test"], False
    else:  # validation case 203 with a label value MyoPS does not have
        (data / "test20_gd").mkdir()
        for s in ("C0", "DE", "T2"):
            shutil.copy2(phantom_dir / "test20" / f"myops_test_203_{s}.nii.gz", data / "test20")
        gd_src = phantom_dir / "test20_gd" / "myops_test_203_gd.nii.gz"
        gd = _image(gd_src).copy()
        gd[10, 10, 0] = 7
        _save_like(gd_src, data / "test20_gd" / "myops_test_203_gd.nii.gz", gd)
        args, evaluate = ["--split", "validation"], True
    before = _digests(data, out)
    proc = _run(["--dataset_dir", data, "--output_dir", out, "--task", "lge", *args], evaluate=evaluate)
    _check_failure(proc, token)
    assert _digests(data, out) == before
    assert sorted(p.name for p in out.iterdir()) == [SENTINEL]  # no synthesis, metrics.csv or summary.json


def _check_failure(proc: subprocess.CompletedProcess, token: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, f"exit code {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert lines and lines[-1].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert token in lines[-1], lines[-1]
    # nothing else: no engine error log, no traceback on stdout either (issue: ~155 lines of it were logged twice)
    for text in (proc.stdout, proc.stderr):
        assert "Traceback" not in text and "terminating due to exception" not in text, text[-3000:]
    assert sum("error" in line.lower() for line in proc.stdout.splitlines()) == 0, proc.stdout[-3000:]


@pytest.mark.parametrize("config,knob,value", [
    ("configs/train_autoencoder.yaml", "max_epochs", "abc"), ("configs/train_diffusion.yaml", "lr", "-1"),
    ("configs/baselines/unet_l1.yaml", "batch_size", "2.5"), ("configs/train_autoencoder.yaml", "val_interval", "0")])
def test_training_knobs_are_checked_first(config, knob, value, tmp_path):
    """A malformed training knob stops the run at its first step: exit 2, one line naming the knob, nothing written
    (no phantom data set, no checkpoint folder)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    files = ["configs/common.yaml"] + (["configs/baselines/image.yaml"] if "baselines" in config else []) + [config]
    proc = subprocess.run([sys.executable, "-m", "bundle", "run", "--config_file", str(files), "--profile", "tiny",
                           "--output_dir", str(tmp_path / "out"), f"--{knob}", value],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    _check_failure(proc, f"{knob} must be")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.pt"))


def test_classification_follows_only_explicit_causes():
    """A bug raised while a user error was being handled stays a bug (the implicit context is not followed); a user
    error wrapped with ``raise ... from`` (as MONAI's config parser does) is found at the bottom of the chain."""
    from bundle.__main__ import is_user_error, root_cause
    from bundle.errors import ConfigError

    try:
        try:
            raise FileNotFoundError(2, "missing", "a.nii.gz")
        except FileNotFoundError:
            {}["key"]  # a bug in the handler
    except KeyError as e:
        assert not is_user_error(root_cause(e))
    try:
        try:
            raise ConfigError("seed must be an integer")
        except ConfigError as inner:
            raise RuntimeError("Failed to evaluate") from inner
    except RuntimeError as e:
        assert isinstance(root_cause(e), ConfigError) and is_user_error(root_cause(e))
    try:
        try:
            raise ValueError("a library bug")
        except ValueError:
            raise ConfigError("x") from None
    except ConfigError as e:
        assert is_user_error(root_cause(e))
    assert not is_user_error(FileNotFoundError("no file named"))  # an OS error that names no file


def test_a_bug_keeps_its_traceback(tmp_path):
    """A genuine bug (here a ZeroDivisionError in a config expression) is not reported as bad input: full
    traceback, exit code 1."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bundle", "run", "--config_file", "['configs/common.yaml']",
                           "--output_dir", str(tmp_path), "--run", "['$1/0']"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr

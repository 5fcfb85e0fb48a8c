"""End-to-end runs of the bundle's workflows (``python -m monai.bundle run``) with the ``tiny`` profile on the
phantom data set: training both stages, inference, evaluation and the error paths. Everything is written under
pytest's temporary folders."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import free_port

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
FOV = 256


def run_bundle(configs, *args, check=True, timeout=300) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` with ``configs/common.yaml`` + ``configs/<c>.yaml`` for ``c`` in
    ``configs`` and the ``--key value`` pairs in ``args``, from the repo root."""
    files = ["configs/common.yaml"] + [f"configs/{c}.yaml" for c in configs]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny networks: thread start-up and contention dominate
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files), "--profile", "tiny",
           *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _digests(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture(scope="module")
def autoencoder_dir(phantom_dir, tmp_path_factory) -> Path:
    """(a)'s run: the tiny autoencoder trained for one epoch; the folder holds ``autoencoder_tiny.pt``."""
    out = tmp_path_factory.mktemp("ae_run")
    models = out / "models"
    run_bundle(["train_autoencoder"], "--max_epochs", 1, "--val_interval", 1, "--models_dir", models,
               "--output_dir", out, "--dataset_dir", phantom_dir)
    return models


@pytest.fixture(scope="module")
def guide_file(phantom_dir, tmp_path_factory) -> Path:
    """The tiny regressor behind the default `guide: regression` start (configs/train_guide.yaml: the unet_l1
    network and recipe with the heatmap loss, one epoch)."""
    out = tmp_path_factory.mktemp("guide")
    run_bundle(["baselines/image", "baselines/unet_l1", "train_guide"], "--max_epochs", 1, "--val_interval", 1,
               "--batch_size", 4, "--dataset_dir", phantom_dir, "--output_dir", out, "--baselines_dir", out)
    weights = out / "models" / "guide_tiny_any.pt"
    assert torch.load(weights, map_location="cpu", weights_only=True)["arch"]["method"] == "guide"
    return weights


@pytest.fixture(scope="module")
def diffusion_dir(autoencoder_dir, guide_file, phantom_dir, tmp_path_factory):
    """``get(task)`` -> a models folder holding the shared autoencoder, the guide regressor and
    ``diffusion_tiny_<task>.pt`` only (trained once per task and module)."""
    done: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in done:
            out = tmp_path_factory.mktemp(f"dm_{task}")
            models = out / "models"
            models.mkdir()
            shutil.copy2(autoencoder_dir / "autoencoder_tiny.pt", models / "autoencoder_tiny.pt")
            shutil.copy2(guide_file, models / "guide_tiny_any.pt")
            # --ema_decay 0: after one epoch the EMA would still be (mostly) the initial network, whose zero-initialised
            # output layer predicts 0 everywhere; these tests need a network that the training moved
            run_bundle(["train_diffusion"], "--max_epochs", 1, "--val_interval", 1, "--models_dir", models,
                       "--output_dir", out, "--dataset_dir", phantom_dir, "--task", task, "--batch_size", 4,
                       "--ema_decay", 0)
            done[task] = models
        return done[task]

    return get


def _case_files(phantom_dir: Path, case: str) -> dict[str, Path]:
    return {s: phantom_dir / "test20" / f"{case}_{s}.nii.gz" for s in ("C0", "DE", "T2")}


def _check_synthesis(out: Path, reference: Path) -> np.ndarray:
    """The synthesized volume is on the reference's grid, float32 in [0, 1], synthesized over the whole field (not
    only the centred FOV: issue 16), with its sidecar JSON."""
    img, ref = nib.load(str(out)), nib.load(str(reference))
    assert img.shape == ref.shape
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
    assert img.get_data_dtype() == np.float32
    data = np.asarray(img.dataobj)
    assert data.dtype == np.float32
    assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
    nx, ny = data.shape[:2]
    ox, oy = nx // 2 - FOV // 2, ny // 2 - FOV // 2
    assert ox > 0 and oy > 0  # the phantom's grid is larger than the FOV on both axes
    inside = np.zeros(data.shape, bool)
    inside[ox : ox + FOV, oy : oy + FOV] = True
    assert data[~inside].max() > 0 and data[inside].max() > 0  # no constant-0 frame outside the FOV
    side = json.loads(Path(str(out).replace(".nii.gz", ".json")).read_text())
    from bundle.weights import file_md5

    assert side["file"] == out.name and side["weights"]
    root = Path(__file__).resolve().parents[1]
    assert all(w["md5"] == file_md5(root / "models" / w["file"]) for w in side["weights"].values()
               if w["md5"] is not None and (root / "models" / w["file"]).is_file())
    assert all("path" not in w for w in [*side["weights"].values(), *side["inputs"].values()])
    return data


# (a) ---------------------------------------------------------------------------------------------------------
def test_train_autoencoder(autoencoder_dir):
    path = autoencoder_dir / "autoencoder_tiny.pt"
    assert path.is_file()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sf = ckpt["extra"]["scale_factor"]
    assert isinstance(sf, float) and math.isfinite(sf) and sf > 0
    assert ckpt["arch"]["profile"] == "tiny" and list(ckpt["arch"]["channels"]) == [8, 8, 8]
    assert ckpt["state_dict"]


# (b) ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["lge", "t2", "bssfp", "any"])
def test_train_diffusion(diffusion_dir, autoencoder_dir, task):
    models = diffusion_dir(task)
    path = models / f"diffusion_tiny_{task}.pt"
    assert path.is_file()
    assert sorted(p.name for p in models.iterdir()) == sorted(["autoencoder_tiny.pt", "guide_tiny_any.pt", path.name])
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["arch"]["task"] == task and ckpt["arch"]["profile"] == "tiny"
    ae = torch.load(autoencoder_dir / "autoencoder_tiny.pt", map_location="cpu", weights_only=True)
    assert ckpt["extra"]["scale_factor"] == pytest.approx(ae["extra"]["scale_factor"])


# (c) ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inference_run(diffusion_dir, phantom_dir, tmp_path_factory):
    """lge inference on the phantom's test split (case 201) with --seed 7; (output folder, input digests
    before, input digests after)."""
    models = diffusion_dir("lge")
    before = _digests(phantom_dir)
    out = tmp_path_factory.mktemp("inference") / "out"
    proc = run_bundle(["inference"], "--models_dir", models, "--dataset_dir", phantom_dir, "--task", "lge",
                      "--num_inference_steps", 3, "--split", "test", "--seed", 7, "--output_dir", out)
    # synthesis (default: the mean of 16 samples), one sample, uncertainty, sidecar, preview
    assert "wrote 5 files" in proc.stdout
    return out, before, _digests(phantom_dir)


def test_inference_test_split(inference_run, phantom_dir):
    out, before, after = inference_run
    case = "myops_test_201"
    assert sorted(p.name for p in _files(out)) == [f"{case}_DE_sample.nii.gz", f"{case}_DE_synth.json",
                                                   f"{case}_DE_synth.nii.gz", f"{case}_DE_synth.png",
                                                   f"{case}_DE_uncertainty.nii.gz"]
    _check_synthesis(out / f"{case}_DE_synth.nii.gz", _case_files(phantom_dir, case)["C0"])
    side = json.loads((out / f"{case}_DE_synth.json").read_text())
    assert side["synth_output"] == "mean" and side["files"][f"{case}_DE_sample.nii.gz"] == "sample"
    unc = np.asarray(nib.load(str(out / f"{case}_DE_uncertainty.nii.gz")).dataobj)
    assert (unc >= 0).all() and unc.max() > 0  # the samples differ somewhere
    from PIL import Image

    with Image.open(out / f"{case}_DE_synth.png") as im:
        im.load()
        assert im.format == "PNG" and im.size[0] > 0
    assert after == before  # inputs untouched (content and modification time)
    assert before  # (and there were inputs to compare)


# (d) ---------------------------------------------------------------------------------------------------------
def test_evaluate_validation_split(diffusion_dir, phantom_dir, tmp_path):
    import csv

    out = tmp_path / "eval"
    run_bundle(["inference", "evaluate"], "--models_dir", diffusion_dir("lge"), "--dataset_dir", phantom_dir,
               "--task", "lge", "--num_inference_steps", 2, "--output_dir", out)
    case = "myops_test_203"
    n_slices = nib.load(str(_case_files(phantom_dir, case)["DE"])).shape[-1]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == n_slices
    assert [(r["task"], r["case"], int(r["slice"])) for r in rows] == [("lge", case, s) for s in range(n_slices)]
    for r in rows:
        assert math.isfinite(float(r["psnr"])) and -1 <= float(r["ssim"]) <= 1
        assert math.isfinite(float(r["myo_psnr"]))  # the phantom has myocardium on every slice
    s = json.loads((out / "summary.json").read_text())
    assert s["task"] == "lge" and s["target"] == "DE" and s["slices"] == n_slices and s["cases"] == 1
    assert s["steps"] == 2 and s["weights"].endswith("diffusion_tiny_lge.pt")
    for k in ("psnr", "ssim", "myo_psnr", "myo_ssim"):
        assert s["over_slices"][k]["n"] == n_slices and s["over_cases"][k]["n"] == 1
        mean = np.mean([float(r[k]) for r in rows])
        assert s["over_slices"][k]["mean"] == pytest.approx(mean, abs=1e-3)
        assert s["over_cases"][k]["mean"] == pytest.approx(mean, abs=1e-3)
    assert (out / f"{case}_DE_synth.nii.gz").is_file()
    # the clinical read-out runs end to end on the phantom (it has a scar): lesion slices counted, realism and the
    # uncertainty calibration (default 16 samples) finite
    c = s["clinical"]
    assert c["readout"] == "lge" and c["slices_with_lesion"] > 0
    for k in ("hf_ratio", "grad_ratio", "unc_spearman", "dice_fwhm_real"):
        assert c["over_slices"][k]["n"] > 0 and math.isfinite(c["over_slices"][k]["mean"]), k
    assert {"hf_ratio", "cr_rel_error", "dice_nsd_synth"} <= set(rows[0])


# (e) ---------------------------------------------------------------------------------------------------------
def test_missing_weights(diffusion_dir, phantom_dir, tmp_path):
    """The lge models folder has no t2 (nor any) diffusion weights: a clear error, nothing written."""
    models = diffusion_dir("lge")
    out = tmp_path / "out"
    proc = run_bundle(["inference"], "--models_dir", models, "--dataset_dir", phantom_dir, "--task", "t2",
                      "--num_inference_steps", 2, "--split", "test", "--output_dir", out, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert str(models / "diffusion_tiny_t2.pt") in text
    assert str(models / "diffusion_tiny_any.pt") in text
    assert _files(out) == []


# (f) ---------------------------------------------------------------------------------------------------------
def test_input_files_single_case(diffusion_dir, phantom_dir, tmp_path):
    src = _case_files(phantom_dir, "myops_test_201")
    inp = tmp_path / "inputs"
    inp.mkdir()
    files = {"C0": inp / "scan one bssfp.nii.gz", "T2": inp / "t2w.nii.gz"}
    for s, dst in files.items():
        shutil.copy2(src[s], dst)
    before = _digests(inp)
    out = tmp_path / "out"
    run_bundle(["inference"], "--models_dir", diffusion_dir("lge"), "--task", "lge", "--num_inference_steps", 2,
               "--input_files", str({k: str(v) for k, v in files.items()}), "--case_name", "patient1",
               "--output_dir", out)
    assert sorted(p.name for p in _files(out)) == ["patient1_DE_sample.nii.gz", "patient1_DE_synth.json",
                                                   "patient1_DE_synth.nii.gz", "patient1_DE_synth.png",
                                                   "patient1_DE_uncertainty.nii.gz"]
    _check_synthesis(out / "patient1_DE_synth.nii.gz", files["C0"])
    assert _digests(inp) == before


# (g) ---------------------------------------------------------------------------------------------------------
def test_inference_reproducible(inference_run, diffusion_dir, phantom_dir, tmp_path):
    first = np.asarray(nib.load(str(inference_run[0] / "myops_test_201_DE_synth.nii.gz")).dataobj)
    data = {}
    for seed in (7, 8):
        out = tmp_path / f"seed{seed}"
        run_bundle(["inference"], "--models_dir", diffusion_dir("lge"), "--dataset_dir", phantom_dir,
                   "--task", "lge", "--num_inference_steps", 3, "--split", "test", "--seed", seed,
                   "--output_dir", out)
        data[seed] = np.asarray(nib.load(str(out / "myops_test_201_DE_synth.nii.gz")).dataobj)
    np.testing.assert_array_equal(data[7], first)
    assert not np.array_equal(data[8], first)  # the seed is actually used


@pytest.mark.parametrize("augment_mode", ["dataset", "batch"])
def test_multi_process_training_torchrun_gloo(augment_mode, phantom_dir, autoencoder_dir, tmp_path):
    """configs/multi_gpu_train_diffusion.yaml on CPU: 2 processes, gloo backend, DistributedSampler, DDP; with the
    latent flips drawn per slice (default) or per batch (each rank seeding its own)."""
    out = tmp_path / "ddp"
    files = ["configs/common.yaml", "configs/train_diffusion.yaml", "configs/multi_gpu_train_diffusion.yaml"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "monai.bundle", "run", "--config_file", str(files), "--profile", "tiny", "--task", "any",
           "--max_epochs", "1", "--val_interval", "1", "--batch_size", "2", "--dataset_dir", str(phantom_dir),
           "--output_dir", str(out), "--models_dir", str(out / "models"),
           "--autoencoder_path", str(autoencoder_dir / "autoencoder_tiny.pt"), "--latent_augment_mode", augment_mode]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    weights = out / "models" / "diffusion_tiny_any.pt"
    assert weights.is_file()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state["state_dict"])  # DDP wrapper not saved
    assert state["arch"]["task"] == "any"


@pytest.mark.parametrize("case", ["corrupt_file", "bad_strength", "unknown_task"])
def test_python_m_bundle_gives_one_line_errors(case, phantom_dir, tmp_path):
    """``python -m bundle run``: bad input -> exit code 2, a last line ``error: ...`` naming the file or field,
    and no output file."""
    src = phantom_dir / "test20" / "myops_test_201_T2.nii.gz"
    t2 = tmp_path / "t2.nii.gz"
    shutil.copy(src, t2)
    c0 = tmp_path / "c0.nii.gz"
    args = {"corrupt_file": ["--task", "lge"], "bad_strength": ["--task", "lge", "--strength", "1.5"],
            "unknown_task": ["--task", "xyz"]}[case]
    if case == "corrupt_file":
        c0.write_bytes(b"not a nifti file")
    else:
        shutil.copy(src, c0)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "bundle", "run", "--config_file", "['configs/common.yaml','configs/inference.yaml']",
           "--num_inference_steps", "2", "--output_dir", str(out), "--case_name", "c1",  # shipped cpu weights
           "--input_files", str({"C0": str(c0), "T2": str(t2)}), *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert last.startswith("error: ") and {"corrupt_file": "c0.nii.gz", "bad_strength": "strength",
                                             "unknown_task": "task"}[case] in last, last
    assert not list(out.glob("*synth*"))


# baselines (configs/baselines/) -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["unet_l1", "pix2pix"])
def test_image_baseline_trains_and_evaluates(method, phantom_dir, tmp_path):
    """An image-space baseline trains through its config and is scored by the same evaluation workflow."""
    baselines = tmp_path / "baselines"
    configs = ["baselines/image", "baselines/unet_l1"] + (["baselines/pix2pix"] if method == "pix2pix" else [])
    run_bundle(configs, "--max_epochs", 1, "--val_interval", 1, "--batch_size", 4, "--dataset_dir", phantom_dir,
               "--output_dir", tmp_path, "--baselines_dir", baselines)
    weights = baselines / f"{method}_tiny_any.pt"
    assert torch.load(weights, map_location="cpu", weights_only=True)["arch"]["method"] == method
    out = tmp_path / "eval"
    run_bundle(["inference", "evaluate", "baselines/image", "baselines/evaluate_image"], "--method", method,
               "--task", "t2", "--dataset_dir", phantom_dir, "--baselines_dir", baselines, "--output_dir", out)
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == method and s["weights"] == str(weights) and math.isfinite(s["over_slices"]["psnr"]["mean"])
    _check_synthesis(out / "myops_test_203_T2_synth.nii.gz", _case_files(phantom_dir, "myops_test_203")["C0"])


def test_ldm_plain_trains_and_samples_single_scale_from_noise(autoencoder_dir, phantom_dir, tmp_path):
    baselines = tmp_path / "baselines"
    configs = ["baselines/latent", "baselines/ldm_plain"]
    run_bundle(["train_diffusion", *configs], "--max_epochs", 1, "--val_interval", 1, "--batch_size", 4,
               "--task", "any", "--dataset_dir", phantom_dir, "--output_dir", tmp_path, "--baselines_dir", baselines,
               "--models_dir", autoencoder_dir)
    state = torch.load(baselines / "ldm_plain_tiny_any.pt", map_location="cpu", weights_only=True)
    assert state["arch"]["encoder"] == "NoneType" and not any("encoder" in k for k in state["state_dict"])
    out = tmp_path / "eval"
    run_bundle(["inference", "evaluate", *configs], "--task", "lge", "--num_inference_steps", 2,
               "--guidance_scale_1", 1.5, "--dataset_dir", phantom_dir, "--baselines_dir", baselines,
               "--models_dir", autoencoder_dir, "--output_dir", out)
    s = json.loads((out / "summary.json").read_text())
    assert (s["strength"], s["guidance_scale_1"], s["guidance_scale_2"]) == (1.0, 1.5, 1.5)
    assert s["weights"].endswith("ldm_plain_tiny_any.pt")


def test_diffusion_ema_is_validated_checkpointed_and_exported(autoencoder_dir, phantom_dir, tmp_path):
    """ema_decay > 0: the exported (last) weights are the EMA, not the raw network; the resumable checkpoint carries
    both. ema_decay 0: the export is the raw network. Same seed, so only the EMA knob differs."""
    def train(decay: float, name: str) -> tuple[dict, dict]:
        out, models = tmp_path / name, tmp_path / name / "models"
        models.mkdir(parents=True)
        shutil.copy2(autoencoder_dir / "autoencoder_tiny.pt", models / "autoencoder_tiny.pt")
        run_bundle(["train_diffusion"], "--max_epochs", 2, "--val_interval", 2, "--models_dir", models,
                   "--output_dir", out, "--dataset_dir", phantom_dir, "--task", "any", "--batch_size", 4,
                   "--ema_decay", decay, "--ema_warmup_iters", 1)
        exported = torch.load(models / "diffusion_tiny_any.pt", map_location="cpu", weights_only=True)["state_dict"]
        ckpt = torch.load(next((out / "diffusion_tiny_any").glob("last_checkpoint_epoch=*.pt")), map_location="cpu",
                          weights_only=False)
        return exported, ckpt

    ema, ckpt = train(0.5, "ema")
    assert set(ckpt) >= {"network", "ema_network", "optimizer", "trainer", "rng"}
    raw = ckpt["network"]
    assert all(torch.equal(ema[k], ckpt["ema_network"][k]) for k in ema)
    assert any(not torch.allclose(ema[k].float(), raw[k].float()) for k in ema)  # the average is not the last step
    plain, ckpt0 = train(0.0, "raw")
    assert all(torch.equal(plain[k], ckpt0["network"][k]) for k in plain)
    assert all(torch.equal(raw[k], ckpt0["network"][k]) for k in raw)  # EMA does not change the training itself


def test_linear_baseline_fits_and_evaluates(phantom_dir, tmp_path):
    baselines = tmp_path / "baselines"
    run_bundle(["baselines/image", "baselines/linear", "baselines/fit_linear"], "--dataset_dir", phantom_dir,
               "--output_dir", tmp_path, "--baselines_dir", baselines)
    state = torch.load(baselines / "linear_tiny_any.pt", map_location="cpu", weights_only=True)
    assert state["arch"]["method"] == "linear" and state["state_dict"]["weight"].abs().sum() > 0
    out = tmp_path / "eval"
    run_bundle(["inference", "evaluate", "baselines/image", "baselines/evaluate_image", "baselines/linear"],
               "--task", "lge", "--dataset_dir", phantom_dir, "--baselines_dir", baselines, "--output_dir", out)
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "linear" and s["over_slices"]["psnr"]["mean"] > 10


def test_regression_guide_changes_the_synthesis(diffusion_dir, phantom_dir, tmp_path):
    """`--guide regression` (the default) starts from a trained regressor's prediction (guide_weights): the
    synthesis differs from the paper's bSSFP start; missing guide weights are a clear error naming the file."""
    baselines = tmp_path / "baselines"
    run_bundle(["baselines/image", "baselines/unet_l1"], "--max_epochs", 1, "--val_interval", 1, "--batch_size", 4,
               "--dataset_dir", phantom_dir, "--output_dir", tmp_path, "--baselines_dir", baselines)
    models = diffusion_dir("any")
    common = ["--task", "lge", "--num_inference_steps", 4, "--strength", 0.5, "--dataset_dir", phantom_dir,
              "--models_dir", models, "--split", "validation"]
    out_r, out_b = tmp_path / "reg", tmp_path / "bssfp"
    run_bundle(["inference"], *common, "--guide", "regression", "--guide_weights", baselines / "unet_l1_tiny_any.pt",
               "--output_dir", out_r)
    run_bundle(["inference"], *common, "--guide", "default", "--residual", "false", "--output_dir", out_b)
    a = nib.load(out_r / "myops_test_203_DE_synth.nii.gz").get_fdata()
    b = nib.load(out_b / "myops_test_203_DE_synth.nii.gz").get_fdata()
    assert np.abs(a - b).max() > 1e-3
    bad = run_bundle(["inference"], *common, "--guide", "regression", "--guide_weights", tmp_path / "nope.pt",
                     "--output_dir", tmp_path / "bad", check=False)
    assert bad.returncode != 0 and "nope.pt" in bad.stderr


def test_run_shorter_than_val_interval_validates_once_and_exports(phantom_dir, tmp_path):
    """A 1-epoch autoencoder run with val_interval 5 (a normal first try) validates at its end and exports, instead
    of failing with 'no best checkpoint'."""
    proc = run_bundle(["train_autoencoder"], "--max_epochs", 1, "--val_interval", 5, "--output_dir", tmp_path,
                      "--dataset_dir", phantom_dir)
    assert (tmp_path / "autoencoder_tiny" / "best_autoencoder.pt").is_file()
    assert (tmp_path / "models" / "autoencoder_tiny.pt").is_file()  # under output_dir: models/ is untouched
    assert "Traceback" not in proc.stderr


# issue 16: other scanners' geometry and signed inputs through the real workflow -----------------------------------
def _write_variant(src: dict, dst: Path, flip: int | None = None, signed: str | None = None) -> dict:
    """Copies of a case's files, stored flipped along ``flip`` (same physical image) and/or with sequence ``signed``
    shifted to PSIR-like signed values."""
    dst.mkdir(parents=True, exist_ok=True)
    out = {}
    for s, path in src.items():
        img = nib.load(str(path))
        arr, aff = img.get_fdata().astype(np.float32), img.affine.copy()
        if s == signed:
            arr = arr - 0.35 * arr.max()
        if flip is not None:
            f = np.eye(4)
            f[flip, flip], f[flip, 3] = -1, arr.shape[flip] - 1
            arr, aff = np.ascontiguousarray(np.flip(arr, flip)), aff @ f
        new = nib.Nifti1Image(arr, aff)
        new.set_qform(aff, code=1)
        new.set_sform(aff, code=1)
        nib.save(new, dst / f"p_{s}.nii.gz")
        out[s] = dst / f"p_{s}.nii.gz"
    return out


@pytest.mark.parametrize("flip", [0, 2])
def test_flipped_input_gives_the_identical_synthesis(diffusion_dir, phantom_dir, tmp_path, flip):
    src = {s: p for s, p in _case_files(phantom_dir, "myops_test_201").items() if s != "DE"}
    res = {}
    for name, f in (("plain", None), ("flipped", flip)):
        files = _write_variant(src, tmp_path / f"in_{name}", flip=f)
        run_bundle(["inference"], "--models_dir", diffusion_dir("lge"), "--task", "lge", "--num_inference_steps", 2,
                   "--input_files", str({k: str(v) for k, v in files.items()}), "--case_name", "p",
                   "--output_dir", tmp_path / name)
        res[name] = _check_synthesis(tmp_path / name / "p_DE_synth.nii.gz", files["C0"])
    np.testing.assert_allclose(np.flip(res["flipped"], flip), res["plain"], atol=1e-4)


def test_psir_like_signed_condition_runs(diffusion_dir, phantom_dir, tmp_path):
    files = _write_variant(_case_files(phantom_dir, "myops_test_201"), tmp_path / "in", signed="DE")
    files.pop("T2")
    run_bundle(["inference"], "--task", "t2", "--num_inference_steps", 2,
               "--models_dir", diffusion_dir("t2"), "--input_files", str({k: str(v) for k, v in files.items()}),
               "--case_name", "p", "--output_dir", tmp_path / "out")
    data = _check_synthesis(tmp_path / "out" / "p_T2_synth.nii.gz", files["C0"])
    assert np.isfinite(data).all() and data.std() > 0
    side = json.loads((tmp_path / "out" / "p_T2_synth.json").read_text())
    assert [n["signed"] for n in side["normalisation"]] == [False, True, False]


def test_rectified_flow_trains_and_samples(autoencoder_dir, guide_file, phantom_dir, tmp_path):
    """`--prediction_type flow` trains with MONAI's RFlowScheduler and the sampler runs the flow chain with the same
    knob; the flow model under the default (DDPM/DDIM) configuration is refused with a clear error naming the field."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(autoencoder_dir / "autoencoder_tiny.pt", models / "autoencoder_tiny.pt")
    shutil.copy2(guide_file, models / "guide_tiny_any.pt")
    run_bundle(["train_diffusion"], "--max_epochs", 1, "--val_interval", 1, "--models_dir", models, "--dataset_dir",
               phantom_dir, "--task", "any", "--batch_size", 4, "--ema_decay", 0, "--output_dir", tmp_path,
               "--prediction_type", "flow")
    w = torch.load(models / "diffusion_tiny_any.pt", map_location="cpu", weights_only=True)
    assert w["arch"]["prediction_type"] == "flow"
    infer = ["--task", "lge", "--num_inference_steps", 4, "--dataset_dir", phantom_dir, "--models_dir", models,
             "--split", "validation"]
    run_bundle(["inference"], *infer, "--prediction_type", "flow", "--output_dir", tmp_path / "synth")
    _check_synthesis(tmp_path / "synth" / "myops_test_203_DE_synth.nii.gz",
                     _case_files(phantom_dir, "myops_test_203")["DE"])
    bad = run_bundle(["inference"], *infer, "--output_dir", tmp_path / "bad", check=False)
    assert bad.returncode != 0 and "prediction_type" in bad.stderr and "Traceback" not in bad.stderr[-400:]
    assert not list((tmp_path / "bad").glob("*.nii.gz"))

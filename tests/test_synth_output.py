"""Issue 31.3, through the real command line (``python -m bundle run``, configs/common.yaml + configs/inference.yaml,
the shipped ``cpu`` weights, a 2-slice phantom case, 5 steps -> 1 DDIM step at strength 0.2): ``synth_output`` picks
what ``<case>_<SEQ>_synth.nii.gz`` holds (the mean of the N samples by default, or one sample) and the other is
written beside it (``_sample`` / ``_mean``) when N > 1; the sidecar says which file is which; N 1 writes neither;
an unknown value is a one-line error with exit code 2 and writes nothing. The unit-level checks (which sample is kept,
batch items, all-or-nothing writes) are in tests/test_sampler.py and tests/test_io.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
CASE = "c1"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from bundle.phantom import write_phantom_case

    files = write_phantom_case(tmp_path_factory.mktemp("phantom"), "myops_test_201", shape=(288, 272, 2))
    return {"C0": files["C0"], "T2": files["T2"]}


def synthesize(inputs: dict[str, Path], out: Path, *args) -> subprocess.CompletedProcess:
    """lge synthesis of the phantom case with the shipped cpu weights, seed 0, into ``out``."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "bundle", "run", "--config_file", "['configs/common.yaml','configs/inference.yaml']",
           "--task", "lge", "--num_inference_steps", "5", "--output_dir", str(out), "--case_name", CASE,
           "--input_files", str({k: str(v) for k, v in inputs.items()}), *map(str, args)]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory) -> dict[str, Path]:
    """Output folders of: N 2 with the default synth_output (mean), N 2 with synth_output sample, N 1."""
    out = {}
    for name, args in {"mean": ["--num_samples", 2], "sample": ["--num_samples", 2, "--synth_output", "sample"],
                       "single": ["--num_samples", 1]}.items():
        folder = tmp_path_factory.mktemp(name) / "out"
        proc = synthesize(inputs, folder, *args)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        out[name] = folder
    return out


def _load(folder: Path, what: str) -> np.ndarray:
    return np.asarray(nib.load(str(folder / f"{CASE}_DE_{what}.nii.gz")).dataobj)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_mean_by_default_with_the_sample_beside_it(runs, inputs):
    folder = runs["mean"]
    assert _names(folder) == [f"{CASE}_DE_sample.nii.gz", f"{CASE}_DE_synth.json", f"{CASE}_DE_synth.nii.gz",
                              f"{CASE}_DE_synth.png", f"{CASE}_DE_uncertainty.nii.gz"]
    synth, sample = _load(folder, "synth"), _load(folder, "sample")
    ref = nib.load(str(inputs["C0"]))
    for f in ("synth", "sample"):
        img = nib.load(str(folder / f"{CASE}_DE_{f}.nii.gz"))
        assert img.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=1e-4)
        assert img.get_data_dtype() == np.float32
    assert np.isfinite(sample).all() and sample.min() >= 0 and sample.max() <= 1
    assert np.abs(synth - sample).max() > 1e-2  # the mean of two samples is not the first of them
    side = json.loads((folder / f"{CASE}_DE_synth.json").read_text())
    assert side["synth_output"] == "mean" and side["num_samples"] == 2 and side["knobs"]["synth_output"] == "mean"
    assert side["files"] == {f"{CASE}_DE_synth.nii.gz": "mean", f"{CASE}_DE_sample.nii.gz": "sample",
                             f"{CASE}_DE_uncertainty.nii.gz": "std", f"{CASE}_DE_synth.png": "preview"}
    assert "PSNR-optimal" in side["roles"]["mean"] and "not in the patient" in side["roles"]["sample"]


def test_synth_output_sample_swaps_the_two_files(runs):
    """Same seed: the sample run's _synth is the mean run's _sample and its _mean the mean run's _synth."""
    a, b = runs["mean"], runs["sample"]
    assert _names(b) == [f"{CASE}_DE_mean.nii.gz", f"{CASE}_DE_synth.json", f"{CASE}_DE_synth.nii.gz",
                         f"{CASE}_DE_synth.png", f"{CASE}_DE_uncertainty.nii.gz"]
    np.testing.assert_allclose(_load(b, "synth"), _load(a, "sample"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_load(b, "mean"), _load(a, "synth"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_load(b, "uncertainty"), _load(a, "uncertainty"), rtol=0, atol=1e-6)
    side = json.loads((b / f"{CASE}_DE_synth.json").read_text())
    assert side["synth_output"] == "sample" and side["num_samples"] == 2
    assert side["files"][f"{CASE}_DE_synth.nii.gz"] == "sample" and side["files"][f"{CASE}_DE_mean.nii.gz"] == "mean"


def test_one_sample_writes_neither_extra_file(runs):
    folder = runs["single"]
    assert _names(folder) == [f"{CASE}_DE_synth.json", f"{CASE}_DE_synth.nii.gz", f"{CASE}_DE_synth.png"]
    side = json.loads((folder / f"{CASE}_DE_synth.json").read_text())
    assert side["num_samples"] == 1 and side["files"] == {f"{CASE}_DE_synth.nii.gz": "sample",
                                                          f"{CASE}_DE_synth.png": "preview"}


def test_unknown_synth_output_is_a_one_line_error(inputs, tmp_path):
    out = tmp_path / "out"
    proc = synthesize(inputs, out, "--num_samples", 2, "--synth_output", "median")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert last.startswith("error: synth_output must be one of ['mean', 'sample']") and "median" in last, last
    assert not list(out.glob("*.nii.gz")) and not list(out.glob("*.json"))

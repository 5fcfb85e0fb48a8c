"""`make demo` (python -m bundle.demo): the README's first command, on the embedded phantom with the shipped weights."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_demo_writes_the_phantom_preview_and_a_synthesis(tmp_path):
    if not (REPO_ROOT / "models" / "diffusion_cpu_any.pt").is_file():
        pytest.skip("shipped weights absent")
    env = dict(os.environ, MYOPS_DIR=str(tmp_path / "no_myops"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bundle.demo", "--output_dir", str(tmp_path / "demo"), "--tasks", "lge",
                           "--steps", "2"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list((tmp_path / "demo").glob("*_preview.png"))
    assert list((tmp_path / "demo" / "synthesis_phantom").glob("*_DE_synth.nii.gz"))
    assert "PSNR vs the real" in proc.stdout

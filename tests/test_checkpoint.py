"""Resumable training: RNG state round trip, newest-checkpoint lookup, and a seeded run killed with SIGKILL
and resumed with ``--resume true`` reaching the same weights as an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd

from bundle.checkpoint import RNGState, latest_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_rng_state_round_trip_through_weights_only_load(tmp_path):
    flip = RandFlipd(keys="x", prob=0.5)
    rng = RNGState(Compose([flip]).transforms)
    torch.manual_seed(1), np.random.seed(2), random.seed(3), flip.set_random_state(4)
    torch.save(rng.state_dict(), tmp_path / "s.pt")
    first = (torch.rand(3), np.random.rand(3), random.random(), flip.R.rand(3))
    rng.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))  # plain tensors/numbers only
    second = (torch.rand(3), np.random.rand(3), random.random(), flip.R.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and np.array_equal(first[3], second[3])


def test_latest_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        latest_checkpoint(tmp_path)
    for e in (2, 10, 9):
        (tmp_path / f"last_checkpoint_epoch={e}.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).endswith("last_checkpoint_epoch=10.pt")


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(phantom_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    models = tmp_path / "models"
    run = [sys.executable, "-m", "monai.bundle", "run", "--profile", "tiny", "--dataset_dir", str(phantom_dir),
           "--models_dir", str(models), "--export_dir", str(models), "--val_interval", "1"]
    subprocess.run(run + ["--config_file", "['configs/common.yaml','configs/train_autoencoder.yaml']",
                          "--max_epochs", "1", "--output_dir", str(tmp_path / "ae")],
                   cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    dm = run + ["--config_file", "['configs/common.yaml','configs/train_diffusion.yaml']", "--task", "any",
                "--batch_size", "4", "--max_epochs", "4"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(dm + ["--output_dir", str(killed)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "diffusion_tiny_any" / "last_checkpoint_epoch=1.pt"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (killed / "diffusion_tiny_any" / "last_checkpoint_epoch=4.pt").exists()
    subprocess.run(dm + ["--output_dir", str(killed), "--resume", "true"], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True)
    subprocess.run(dm + ["--output_dir", str(tmp_path / "whole")], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True)
    a = torch.load(killed / "diffusion_tiny_any" / "last_checkpoint_epoch=4.pt", weights_only=True)
    b = torch.load(tmp_path / "whole" / "diffusion_tiny_any" / "last_checkpoint_epoch=4.pt", weights_only=True)
    assert a["trainer"]["iteration"] == b["trainer"]["iteration"]
    for k in b["network"]:
        assert torch.equal(a["network"][k], b["network"][k]), k


def test_resume_without_checkpoint_is_a_clear_error(phantom_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
                           "['configs/common.yaml','configs/train_autoencoder.yaml']", "--profile", "tiny",
                           "--dataset_dir", str(phantom_dir), "--output_dir", str(tmp_path), "--resume", "true"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "no last_checkpoint_epoch=N.pt" in proc.stderr

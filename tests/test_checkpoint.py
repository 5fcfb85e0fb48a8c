"""Resumable training: RNG state round trip, newest-checkpoint lookup, the best-metric record, and seeded runs of
both stages killed mid-run and resumed with ``--resume true`` reaching the same weights and best checkpoint as
uninterrupted ones."""

from __future__ import annotations

import os
import random
import subprocess
import sys
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


# appended to the workflow's train#setup: the process dies (no handler, no export) at the end of epoch 3, after the
# epoch-2 last checkpoint and before epoch 3's (the checkpoint handler is attached after train#setup), as a kill would
KILL_AT_EPOCH_3 = ('+train#setup: ["$@train#trainer.add_event_handler(ignite.engine.Events.EPOCH_COMPLETED(once=3), '
                   'lambda e: os._exit(9))"]\n')


def _tensors_equal(a, b, where: str) -> None:
    assert a.keys() == b.keys(), where
    for k in a:
        if isinstance(a[k], dict):
            _tensors_equal(a[k], b[k], f"{where}.{k}")
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), f"{where}.{k}"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["autoencoder", "diffusion", "diffusion_batch_augment"])
def test_killed_training_resumes_to_the_same_weights_and_best_checkpoint(stage, phantom_dir, tmp_path):
    """A seeded 4-epoch run killed after epoch 3 and resumed with --resume true ends with the same last checkpoint
    (networks, optimizers, EMA, stateful losses), the same best checkpoint and the same best-metric record as an
    uninterrupted run. The autoencoder runs with its adversarial term on and a warm-up of 3 epochs that spans the
    kill, so a warm-up counter that restarted after the resume would change the weights. ``diffusion_batch_augment``
    draws the latent flips in the prepare batch (`latent_augment_mode batch`), whose random state must resume too."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    models = tmp_path / "models"
    base = [sys.executable, "-m", "monai.bundle", "run", "--profile", "tiny", "--dataset_dir", str(phantom_dir),
            "--models_dir", str(models), "--export_dir", str(models), "--val_interval", "1", "--max_epochs", "4"]
    ae = ["configs/common.yaml", "configs/train_autoencoder.yaml"]
    ae_args = ["--adv_weight", "0.1", "--adv_warmup_epochs", "3"]
    if stage == "autoencoder":
        files, args, sub, best = ae, ae_args, "autoencoder_tiny", "best_autoencoder.pt"
    else:
        subprocess.run(base + ["--config_file", str(ae), "--max_epochs", "1", "--output_dir", str(tmp_path / "ae")],
                       cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        files, args = ["configs/common.yaml", "configs/train_diffusion.yaml"], ["--task", "any", "--batch_size", "4"]
        if stage == "diffusion_batch_augment":
            args += ["--latent_augment_mode", "batch"]
        sub, best = "diffusion_tiny_any", "best_network.pt"
    kill = tmp_path / "kill.yaml"
    kill.write_text(KILL_AT_EPOCH_3)

    def train(out: Path, extra_files=(), extra=()):
        return subprocess.run(base + ["--config_file", str(files + list(extra_files)), "--output_dir", str(out)]
                              + args + list(extra), cwd=REPO_ROOT, env=env, capture_output=True, text=True)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert train(whole).returncode == 0
    proc = train(killed, [str(kill)])
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert sorted(p.name for p in (killed / sub).glob("last_*.pt")) == ["last_checkpoint_epoch=2.pt"]
    proc = train(killed, extra=["--resume", "true"])
    assert proc.returncode == 0, proc.stderr[-2000:]

    a = torch.load(killed / sub / "last_checkpoint_epoch=4.pt", weights_only=True)
    b = torch.load(whole / sub / "last_checkpoint_epoch=4.pt", weights_only=True)
    assert a["trainer"]["iteration"] == b["trainer"]["iteration"]
    assert a["best"] == b["best"]  # which epoch is best, its score and file
    for key in b:
        if key not in ("trainer", "best"):
            _tensors_equal(a[key], b[key], key)
    _tensors_equal(torch.load(killed / sub / best, weights_only=True),
                   torch.load(whole / sub / best, weights_only=True), best)


def test_best_checkpoint_survives_a_resume_followed_by_worse_epochs(tmp_path):
    """BestMetricState restores the key-metric record: after a resume, an epoch scoring worse than the best before
    the interruption does not replace best_network.pt (without the record, the first validation after a resume
    always wins)."""
    from ignite.engine import Engine, Events
    from monai.handlers import CheckpointSaver

    from bundle.checkpoint import BestMetricState

    net = torch.nn.Linear(1, 1)

    def run(scores, state=None):
        evaluator = Engine(lambda e, b: None)
        evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1, -1

        @evaluator.on(Events.EPOCH_COMPLETED)
        def score(e):  # registered before the saver's handler: the epoch's metric and weights, then the saver
            e.state.metrics = {"val": scores[e.state.epoch - 1]}
            e.state.key_metric_name = "val"
            with torch.no_grad():
                net.weight.fill_(scores[e.state.epoch - 1])

        saver = CheckpointSaver(str(tmp_path), {"network": net}, save_key_metric=True,
                                key_metric_filename="best_network.pt")
        saver.attach(evaluator)
        best = BestMetricState(saver, evaluator)
        if state is not None:
            best.load_state_dict(torch.load(state, weights_only=True))
        evaluator.run(range(1), max_epochs=len(scores))
        return best

    def best_weight() -> float:  # one saved object: ignite writes its state_dict itself
        return torch.load(tmp_path / "best_network.pt", weights_only=True)["weight"].item()

    first = run([1.0, 3.0])
    torch.save(first.state_dict(), tmp_path / "state.pt")
    assert best_weight() == 3.0 and first.state_dict()["_saved"] == [(3.0, "network_key_metric=3.0000.pt")]
    resumed = run([2.0, 2.5], state=tmp_path / "state.pt")  # both worse than 3.0: best_network.pt keeps 3.0
    assert best_weight() == 3.0 and resumed.state_dict()["_saved"] == [(3.0, "network_key_metric=3.0000.pt")]
    run([2.0], state=None)  # the failure mode without the record: the worse epoch replaces the best
    assert best_weight() == 2.0


def test_resume_without_checkpoint_is_a_clear_error(phantom_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
                           "['configs/common.yaml','configs/train_autoencoder.yaml']", "--profile", "tiny",
                           "--dataset_dir", str(phantom_dir), "--output_dir", str(tmp_path), "--resume", "true"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "no last_checkpoint_epoch=N.pt" in proc.stderr

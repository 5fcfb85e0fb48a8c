"""bundle/weights.py: the shipped-weights file format, its checks and the diffusion weights lookup."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from bundle.errors import ConfigError
from bundle.weights import (WeightsError, diffusion_weights_path, export_best, load_diffusion, load_weights,
                            save_weights)

ARCH = {"channels": [8, 16], "profile": "tiny", "encoder": "PatchConditionEncoder"}


def _net(seed: int = 0, n_in: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 5), nn.ReLU(), nn.Linear(5, 2))


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_round_trip_atomic_and_mode(tmp_path):
    folder = tmp_path / "models" / "sub"  # created on demand
    src = _net(0)
    path = save_weights(folder / "w.pt", src, ARCH, scale_factor=1.25, note="x")
    assert path == folder / "w.pt"
    assert sorted(os.listdir(folder)) == ["w.pt"]  # no temp file left behind
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    dst = _net(1)
    assert not torch.equal(dst[0].weight, src[0].weight)
    extra = load_weights(path, dst, {"channels": (8, 16), "profile": "tiny"})  # list vs tuple is the same arch
    _assert_same(src, dst)
    assert extra == {"scale_factor": 1.25, "note": "x", "arch": ARCH}
    # overwriting an existing file is atomic too
    save_weights(path, _net(2), ARCH)
    assert sorted(os.listdir(folder)) == ["w.pt"]
    load_weights(path, dst)
    _assert_same(_net(2), dst)


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    path = save_weights(tmp_path / "w.pt", _net(0), ARCH)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_weights(path, _net(1), ARCH)
    assert sorted(os.listdir(tmp_path)) == ["w.pt"]  # the temp file is removed ...
    assert path.read_bytes() == before  # ... and the previous weights are intact


def test_save_unwraps_module(tmp_path):
    class Wrapper(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.module = m

    src = _net(3)
    path = save_weights(tmp_path / "w.pt", Wrapper(src), ARCH)
    assert set(torch.load(path, weights_only=True)["state_dict"]) == set(src.state_dict())
    dst = Wrapper(_net(4))
    load_weights(path, dst)
    _assert_same(src, dst.module)


def test_arch_mismatch_names_key(tmp_path):
    path = save_weights(tmp_path / "w.pt", _net(), dict(ARCH, task="lge"))
    with pytest.raises(WeightsError, match=r"task='lge'.*task='t2'") as e:
        load_weights(path, _net(), {"task": "t2"})
    assert str(path) in str(e.value)
    with pytest.raises(WeightsError, match="channels"):
        load_weights(path, _net(), {"channels": [8, 32]})
    with pytest.raises(WeightsError, match="profile"):
        load_weights(path, _net(), {"profile": "cpu"})


def test_wrong_architecture_is_weights_error(tmp_path):
    path = save_weights(tmp_path / "w.pt", _net(n_in=4), ARCH)
    with pytest.raises(WeightsError) as e:
        load_weights(path, _net(n_in=3))  # same keys, other shapes
    assert not isinstance(e.value, RuntimeError)
    assert str(path) in str(e.value) and "does not fit" in str(e.value)
    with pytest.raises(WeightsError, match="does not fit"):
        load_weights(path, nn.Linear(4, 5))  # other keys


def test_missing_file(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(WeightsError, match="not found") as e:
        load_weights(path, _net())
    assert str(path) in str(e.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsError, match="cannot read") as e:
        load_weights(path, _net())
    assert str(path) in str(e.value)
    # a readable torch file that is not a weights file
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(WeightsError, match="state_dict") as e:
        load_weights(other, _net())
    assert str(other) in str(e.value)


# ------------------------------------------------------------------------------------- diffusion weights
def test_diffusion_weights_path(tmp_path):
    any_file = tmp_path / "diffusion_cpu_any.pt"
    lge_file = tmp_path / "diffusion_cpu_lge.pt"
    with pytest.raises(WeightsError) as e:
        diffusion_weights_path(tmp_path, "cpu", "lge")
    assert str(lge_file) in str(e.value) and str(any_file) in str(e.value)
    any_file.write_bytes(b"")
    assert diffusion_weights_path(tmp_path, "cpu", "lge") == any_file  # falls back to the all-task model
    lge_file.write_bytes(b"")
    assert diffusion_weights_path(tmp_path, "cpu", "lge") == lge_file  # prefers the per-task model
    assert diffusion_weights_path(str(tmp_path), "cpu", "t2") == any_file
    with pytest.raises(WeightsError, match="diffusion_full_any.pt"):
        diffusion_weights_path(tmp_path, "full", "lge")  # another profile


def test_load_diffusion_task_and_scale_checks(tmp_path):
    src = _net(5)
    lge = save_weights(tmp_path / "lge.pt", src, dict(ARCH, task="lge"), scale_factor=1.1)
    dst = _net(6)
    extra = load_diffusion(lge, dst, ARCH, "lge", 1.1)
    _assert_same(src, dst)
    assert extra["scale_factor"] == 1.1 and extra["arch"]["task"] == "lge"
    with pytest.raises(WeightsError, match="task 'lge'.*task 't2'"):
        load_diffusion(lge, _net(), ARCH, "t2", 1.1)
    with pytest.raises(WeightsError, match="scale factor") as e:
        load_diffusion(lge, _net(), ARCH, "lge", 1.2)
    assert str(lge) in str(e.value)
    load_diffusion(lge, _net(), ARCH, "lge", 1.1 * (1 + 1e-6))  # float round-off is not a mismatch


@pytest.mark.parametrize("task", ["lge", "t2", "bssfp"])
def test_load_diffusion_any_model_serves_every_task(tmp_path, task):
    src = _net(7)
    path = save_weights(tmp_path / "any.pt", src, dict(ARCH, task="any"), scale_factor=0.9)
    dst = _net(8)
    assert load_diffusion(path, dst, ARCH, task, 0.9)["arch"]["task"] == "any"
    _assert_same(src, dst)


def test_export_best_without_a_validation_is_a_clear_error(tmp_path):
    """A run stopped (time limit) before its first validation has no best checkpoint: say so, export nothing."""
    net = nn.Linear(2, 2)
    with pytest.raises(WeightsError, match="before its first validation"):
        export_best(net, tmp_path / "best_network.pt", tmp_path / "out.pt", {"k": 1})
    assert not (tmp_path / "out.pt").exists()
    torch.save(net.state_dict(), tmp_path / "best_network.pt")
    assert export_best(net, tmp_path / "best_network.pt", tmp_path / "out.pt", {"k": 1}).is_file()


def test_shipped_weights_are_never_replaced_silently(tmp_path, monkeypatch):
    """A file listed in large_files.yml is refused without overwrite_shipped; with it the old file is kept as .bak."""
    import bundle.weights as W

    shipped = tmp_path / "models" / "diffusion_cpu_any.pt"
    shipped.parent.mkdir()
    shipped.write_bytes(b"shipped")
    monkeypatch.setattr(W, "shipped_files", lambda root=None: {shipped.resolve()})
    net = torch.nn.Linear(2, 2)
    with pytest.raises(W.WeightsError, match="refusing to replace the shipped weights"):
        W.save_weights(shipped, net, {"k": 1})
    with pytest.raises(W.WeightsError, match="refusing"):  # "--overwrite_shipped false" arrives as a string
        W.save_weights(shipped, net, {"k": 1}, overwrite_shipped="false")
    with pytest.raises(ConfigError, match="overwrite_shipped"):
        W.guard_shipped(shipped, "maybe")
    assert shipped.read_bytes() == b"shipped"
    W.guard_shipped(shipped, True, backup=False)  # the early check with the knob set: nothing moves
    assert shipped.read_bytes() == b"shipped"
    W.save_weights(shipped, net, {"k": 1}, overwrite_shipped=True)
    assert (tmp_path / "models" / "diffusion_cpu_any.pt.bak").read_bytes() == b"shipped"
    assert torch.load(shipped, weights_only=True)["arch"] == {"k": 1}
    other = tmp_path / "models" / "mine.pt"  # not shipped: written freely
    W.save_weights(other, net, {})
    assert other.is_file()


def test_training_outputs_cannot_shadow_the_shipped_models(tmp_path, monkeypatch):
    """In the bundle's models/ only large_files.yml's files are looked up: a per-task file a training run left there
    is ignored (elsewhere, e.g. --models_dir, the per-task file still comes first), and a training export of a new
    file into models/ is refused without --overwrite_shipped."""
    import bundle.weights as W

    root = tmp_path / "repo"
    (root / "models").mkdir(parents=True)
    (root / "large_files.yml").write_text('large_files:\n  - {path: "models/diffusion_cpu_any.pt"}\n')
    any_, lge = root / "models" / "diffusion_cpu_any.pt", root / "models" / "diffusion_cpu_lge.pt"
    any_.write_bytes(b"shipped")
    lge.write_bytes(b"left by a training run")
    monkeypatch.setattr(W, "REPO_ROOT", root)
    assert W.diffusion_weights_path(root / "models", "cpu", "lge") == any_
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "diffusion_cpu_any.pt").write_bytes(b"a")
    (mine / "diffusion_cpu_lge.pt").write_bytes(b"b")
    assert W.diffusion_weights_path(mine, "cpu", "lge") == mine / "diffusion_cpu_lge.pt"
    with pytest.raises(W.WeightsError, match="refusing to write .* into the shipped models folder"):
        W.guard_shipped(root / "models" / "diffusion_cpu_t2.pt", False, backup=False)
    W.guard_shipped(root / "models" / "diffusion_cpu_t2.pt", True, backup=False)  # asked for: allowed
    W.guard_shipped(mine / "diffusion_cpu_t2.pt", False, backup=False)  # elsewhere: free


def test_large_files_lists_the_shipped_models():
    import bundle.weights as W

    names = {p.name for p in W.shipped_files()}
    assert {"autoencoder_cpu.pt", "diffusion_cpu_any.pt"} <= names

"""scripts/slice_cache.py: the cached slices are the ones the training workflow builds, bit for bit, and read back
through the `--train#slices` override the device script uses; bad overrides are clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.slice_cache import CONFIGS, main  # noqa: E402


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) if torch.is_tensor(x[k]) else x[k] == y[k] for k in x)
        for x, y in zip(a, b))


def test_cache_equals_the_workflows_slices_and_reads_back(phantom_dir, tmp_path):
    out = tmp_path / "slices.pt"
    sets = [f"dataset_dir={phantom_dir}", "profile=tiny", f"output_dir={tmp_path}", "tuning_ids=[101]",
            "train_split=train_tune", "val_split=tune"]
    assert main([str(out), "--set", *sets]) == 0
    cache = torch.load(out)
    p = ConfigParser()
    p.read_config([str(ROOT / f) for f in CONFIGS])
    for kv in sets:
        k, v = kv.split("=", 1)
        p[k] = v if not v.startswith("[") else [int(v[1:-1])]
    assert _same(cache["train"], p.get_parsed_content("train#slices"))
    assert _same(cache["validate"], p.get_parsed_content("validate#slices"))
    assert {s["case"] for s in cache["validate"]} == {"myops_training_101"}  # the tuning fold only
    assert "myops_training_101" not in {s["case"] for s in cache["train"]}
    # the override form of scripts/device_train_long.sh
    q = ConfigParser()
    q.read_config([str(ROOT / f) for f in CONFIGS])
    q["train#slices"] = f"$torch.load('{out}')['train']"
    assert _same(q.get_parsed_content("train#slices"), cache["train"])
    assert not (tmp_path / "slices.pt.tmp").exists()


def test_bad_override_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "x.pt"), "--set", "profile"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()

"""Shared fixtures: a small phantom data set, the real MyoPS 2020 folder (skipped when absent) and a parser
factory for ``configs/common.yaml``."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `import bundle` without PYTHONPATH=.
    sys.path.insert(0, str(REPO_ROOT))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: tests run in parallel (pytest-xdist) must not share a fixed one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMMON_YAML = REPO_ROOT / "configs" / "common.yaml"


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Phantom in the official layout: training 101-103, test 203 (validation) and 201 (test)."""
    from bundle.phantom import make_phantom_dataset

    return make_phantom_dataset(
        tmp_path_factory.mktemp("phantom"), train_ids=(101, 102, 103), validation_ids=(203,), test_ids=(201,)
    )


@pytest.fixture(scope="session")
def myops_dir() -> Path:
    """The real MyoPS 2020 data (``$MYOPS_DIR`` or ``<repo>/../shared/data/myops2020``); skips when absent."""
    path = Path(os.environ.get("MYOPS_DIR") or REPO_ROOT.parent / "shared" / "data" / "myops2020")
    if not path.is_dir():
        pytest.skip(f"MyoPS 2020 data not present at {path}")
    return path


@pytest.fixture(scope="session")
def parser(tmp_path_factory):
    """Factory: ``parser(**overrides)`` -> a ``ConfigParser`` over ``configs/common.yaml`` whose ``output_dir``
    is a fresh temporary folder (``bundle_root`` = the repo root); ``overrides`` set further keys."""
    from monai.bundle import ConfigParser

    def make(**overrides) -> ConfigParser:
        p = ConfigParser()
        p.read_config(str(COMMON_YAML))
        p["bundle_root"] = str(REPO_ROOT)
        p["output_dir"] = str(tmp_path_factory.mktemp("output"))
        for key, value in overrides.items():
            p[key] = value
        return p

    return make


# One intra-op thread for the whole suite: on a 2-core machine shared with other work, torch's default
# thread pool oversubscribes and tiny forward passes slow down by 100x; one thread is fast everywhere.
import torch as _torch  # noqa: E402

_torch.set_num_threads(1)


def md_row(line: str) -> tuple[str, list[float]]:
    """A Markdown table row -> (its first cell, every number in the other cells, in order): tests compare a table's
    data, not its formatting."""
    import re

    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells[0], [float(x) for c in cells[1:] for x in re.findall(r"[-+]?\d+(?:\.\d+)?", c)]

"""Resumable training: the random-number state that a checkpoint must carry besides the networks, optimizers,
schedulers and trainer, and the lookup of the newest ``last`` checkpoint to resume from.

With ``--resume true`` a training workflow loads ``<ckpt_dir>/last_checkpoint_epoch=N.pt`` (written atomically
by ignite every ``val_interval`` epochs) through MONAI's ``CheckpointLoader`` and continues from epoch N; a
seeded run resumed this way ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Randomizable


class RNGState:
    """``state_dict``/``load_state_dict`` of the global torch, numpy and python generators and of the
    random transforms in ``transforms`` (each MONAI ``Randomizable`` keeps its own ``RandomState``)."""

    def __init__(self, transforms: Sequence | None = None) -> None:
        self.transforms = [t for t in _flatten(transforms or []) if isinstance(t, Randomizable)]

    def state_dict(self) -> dict:
        """Tensors and plain numbers only, so that ``torch.load(weights_only=True)`` reads it back."""
        version, internal, gauss = random.getstate()
        return {"torch": torch.get_rng_state(), "numpy": _np_state(np.random.get_state()),
                "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
                "transforms": [_np_state(t.R.get_state()) for t in self.transforms]}

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))
        np.random.set_state(_np_tuple(state["numpy"]))
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
        for t, s in zip(self.transforms, state["transforms"]):
            t.R.set_state(_np_tuple(s))


def _np_state(s: tuple) -> dict:
    return {"keys": torch.from_numpy(np.asarray(s[1], dtype=np.int64)), "pos": int(s[2]), "has_gauss": int(s[3]),
            "cached": float(s[4])}


def _np_tuple(d: dict) -> tuple:
    return ("MT19937", d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def _flatten(transforms):
    for t in transforms:
        inner = getattr(t, "transforms", None)
        if inner is not None and not isinstance(t, Randomizable):
            yield from _flatten(inner)
        else:
            yield t


def latest_checkpoint(ckpt_dir: str | Path, prefix: str = "last") -> str:
    """The newest ``<prefix>_checkpoint_epoch=N.pt`` in ``ckpt_dir``; a clear error when there is none."""
    found = []
    for p in Path(ckpt_dir).glob(f"{prefix}_checkpoint_epoch=*.pt"):
        m = re.search(r"epoch=(\d+)\.pt$", p.name)
        if m:
            found.append((int(m.group(1)), p))
    if not found:
        raise FileNotFoundError(f"--resume: no {prefix}_checkpoint_epoch=N.pt in {ckpt_dir} to resume from")
    return str(max(found)[1])

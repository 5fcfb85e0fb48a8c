"""Resumable training: the random-number state that a checkpoint must carry besides the networks, optimizers,
schedulers and trainer, and the lookup of the newest ``last`` checkpoint to resume from.

With ``--resume true`` a training workflow loads ``<ckpt_dir>/last_checkpoint_epoch=N.pt`` (written atomically
by ignite every ``val_interval`` epochs) through MONAI's ``CheckpointLoader`` and continues from epoch N; a
seeded run resumed this way ends with the same weights and the same best checkpoint as an uninterrupted one.
The last checkpoint holds (configs/common.yaml ``training#last_checkpoint``): the workflow's networks, optimizers,
schedulers and stateful losses, the trainer's counters, :class:`RNGState` and :class:`BestMetricState`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.handlers import CheckpointSaver
from monai.transforms import Randomizable


class RNGState:
    """``state_dict``/``load_state_dict`` of the global torch, numpy and python generators and of the
    random transforms in ``transforms``: each MONAI ``Randomizable`` keeps its own ``RandomState``, and a dictionary
    transform draws from the one of the array transform it wraps (``RandRotated.rand_rotate``), so those count too."""

    def __init__(self, transforms: Sequence | None = None) -> None:
        self.transforms = list(_randomizables(_flatten(transforms or [])))

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


class BestMetricState:
    """``state_dict``/``load_state_dict`` of what decides the best checkpoint: the key-metric tracking list of the
    validation ``CheckpointSaver`` (which ``best_*.pt`` exists and its score, so a worse epoch after a resume does
    not replace it) and the evaluator's ``best_metric``/``best_metric_epoch``."""

    def __init__(self, saver: CheckpointSaver, evaluator) -> None:
        if saver._key_metric_checkpoint is None:  # MONAI keeps the key-metric ignite Checkpoint private
            raise ValueError("BestMetricState needs a CheckpointSaver with save_key_metric=True")
        self.saver, self.evaluator = saver, evaluator

    def state_dict(self) -> dict:
        saved = self.saver._key_metric_checkpoint.state_dict()["_saved"]
        return {"_saved": [(float(p), str(f)) for p, f in saved],
                "best_metric": float(self.evaluator.state.best_metric),
                "best_metric_epoch": int(self.evaluator.state.best_metric_epoch)}

    def load_state_dict(self, state: dict) -> None:
        self.saver.load_state_dict({"_saved": [(float(p), str(f)) for p, f in state["_saved"]]})
        self.evaluator.state.best_metric = float(state["best_metric"])
        self.evaluator.state.best_metric_epoch = int(state["best_metric_epoch"])


class EMAWarmupState:
    """``state_dict``/``load_state_dict`` of the momentum warm-up position of ignite's ``EMAHandler`` (its scheduler
    counts its own calls from 0 in every run, so a resumed run would warm up again); ``ema`` None: nothing."""

    def __init__(self, ema=None) -> None:
        self.ema = ema

    def _scheduler(self):
        return getattr(self.ema, "momentum_scheduler", None)  # created when the handler is attached

    def state_dict(self) -> dict:
        s = self._scheduler()
        return {} if s is None else {"event_index": int(s.event_index)}

    def load_state_dict(self, state: dict) -> None:
        if self._scheduler() is not None and "event_index" in state:
            self._scheduler().event_index = int(state["event_index"])


def _np_state(s: tuple) -> dict:
    return {"keys": torch.from_numpy(np.asarray(s[1], dtype=np.int64)), "pos": int(s[2]), "has_gauss": int(s[3]),
            "cached": float(s[4])}


def _np_tuple(d: dict) -> tuple:
    return ("MT19937", d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def _randomizables(transforms, seen: set | None = None):
    """Every ``Randomizable`` among ``transforms`` and, recursively, among their attributes (in definition order)."""
    seen = set() if seen is None else seen
    for t in transforms:
        if isinstance(t, Randomizable) and id(t) not in seen:
            seen.add(id(t))
            yield t
            yield from _randomizables([v for v in vars(t).values() if isinstance(v, Randomizable)], seen)


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

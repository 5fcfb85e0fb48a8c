"""Downstream utility: a fixed MyoPS segmenter (nested regions, one sigmoid each) and the Dice it reaches when one
input sequence is real, synthesized, or missing (issue 34; configs/train_segmenter.yaml, configs/evaluate_utility.yaml).

Regions (MyoPS labels): LV blood pool 500, RV 600, myocardium 200 ∪ 1220 ∪ 2221, edema 1220 ∪ 2221, scar 2221.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from torch import nn

from bundle.data import SEQUENCES

REGIONS: dict[str, tuple[int, ...]] = {"lv": (500,), "rv": (600,), "myo": (200, 1220, 2221), "edema": (1220, 2221),
                                       "scar": (2221,)}
logger = logging.getLogger(__name__)


def regions_from_label(label: torch.Tensor) -> torch.Tensor:
    """A MyoPS label map (1, ...) -> the nested region masks (5, ...) in ``REGIONS`` order, float 0/1."""
    lab = torch.as_tensor(label)[0]
    return torch.stack([torch.isin(lab, torch.tensor(v, dtype=lab.dtype)) for v in REGIONS.values()]).float()


class RegionMasksd(MapTransform):
    """``regions`` (5, X, Y[, S]) from the label ``gd`` (1, X, Y[, S]); no-op without a label."""

    def __init__(self, keys: KeysCollection = "gd", regions_key: str = "regions") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.regions_key = regions_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            d[self.regions_key] = regions_from_label(d[k])
        return d


class SelectInputsd(MapTransform):
    """``image`` (3, ...) in ``SEQUENCES`` order -> the channels of ``inputs`` (e.g. ["C0", "T2"]: the two-sequence
    segmenter of the lge task), in that order."""

    def __init__(self, inputs: Sequence[str], keys: KeysCollection = "image") -> None:
        super().__init__(keys)
        bad = [s for s in inputs if s not in SEQUENCES]
        if bad or not inputs:
            raise ValueError(f"segmenter inputs must be sequences of {SEQUENCES}, got {list(inputs)!r}")
        self.index = [SEQUENCES.index(s) for s in inputs]

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = d[k][self.index]
        return d


def dice_per_region(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Binary predictions and truths (N, R, ...) -> Dice (N, R); NaN where both are empty (no such region)."""
    p, t = pred.flatten(2).float(), truth.flatten(2).float()
    inter, total = (p * t).sum(-1), p.sum(-1) + t.sum(-1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1e-8), torch.full_like(total, float("nan")))


@torch.no_grad()
def segment(network: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Slices (N, C, H, W) -> binary region masks (N, 5, H, W) (sigmoid > 0.5)."""
    network.eval()
    dev = next(network.parameters()).device
    out = [torch.sigmoid(network(images[i : i + batch_size].to(dev))).cpu() > 0.5 for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def case_dice(network: nn.Module, slices: Sequence[dict], channels: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Per case: the Dice of each region over the case's stacked slices (3D Dice of the short-axis stack), from
    slices with ``image`` (C, H, W) and ``regions`` (5, H, W); ``channels`` picks the input channels. -> {case: (5,)}."""
    by_case: dict[str, list[dict]] = {}
    for s in slices:
        by_case.setdefault(s["case"], []).append(s)
    out = {}
    for case, items in by_case.items():
        x = torch.stack([torch.as_tensor(s["image"]).float() for s in items])
        if channels is not None:
            x = x[:, list(channels)]
        truth = torch.stack([torch.as_tensor(s["regions"]).float() for s in items])
        pred = segment(network, x)
        # one volume per case: (1, R, N·H·W) so that a region is scored over the whole stack
        out[case] = dice_per_region(pred.transpose(0, 1)[None], truth.transpose(0, 1)[None] > 0.5)[0].numpy()
    return out


def paired_interval(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a − b`` over cases (NaN-paired cases dropped) and its 95 % bootstrap interval over cases."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    if not len(d):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
    return float(d.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def write_json(path: str | Path, obj) -> Path:
    from bundle.atomic import atomic_write

    return atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def evaluate_utility(tasks: Mapping[str, Mapping], cases: Sequence[dict], volume_transform, slice_transform,
                     segmenter: nn.Module, two_sequence: Mapping[str, nn.Module], methods: Mapping[str, str | Path],
                     output_json: str | Path, task_names: Sequence[str] = ("lge", "t2", "bssfp")) -> dict:
    """Per task, the fixed segmenter's per-case Dice of each region (``REGIONS``) when the target sequence is the
    real one, each method's synthesis (``methods``: name -> folder holding ``<task>/<case>_<SEQ>_synth.nii.gz``, as
    written by the evaluation workflow; a method without files for a task is skipped with a note), zeros (the
    sequence missing), and the task's two-sequence segmenter on the real conditions (``two_sequence``: task ->
    network). ``cases``: labelled case dicts (``C0``, ``DE``, ``T2``, ``gd`` paths). Writes and returns
    ``{task: {condition: {"cases": [...], "dice": {region: [per case]}}}}``."""
    from bundle.data import build_slices

    out: dict = {}
    real = build_slices(cases, volume_transform, slice_transform, progress=False)  # the same for every task
    real_dice = case_dice(segmenter, real)
    for task in task_names:
        target = tasks[task]["target"]
        t = SEQUENCES.index(target)
        conds = [SEQUENCES.index(c) for c in tasks[task]["conditions"]]
        rows: dict[str, dict[str, np.ndarray]] = {"real": real_dice}
        for name, root in methods.items():
            files = {c["case"]: Path(root) / task / f"{c['case']}_{target}_synth.nii.gz" for c in cases}
            if not all(f.is_file() for f in files.values()):
                logger.info(f"utility {task}: no {name} synthesis in {Path(root) / task}: row skipped")
                continue
            synth = build_slices([dict(c, **{target: str(files[c["case"]])}) for c in cases], volume_transform,
                                 slice_transform, progress=False)
            rows[name] = case_dice(segmenter, synth)
        zeros = [dict(s, image=torch.as_tensor(s["image"]).clone().index_fill_(0, torch.tensor([t]), 0.0)) for s in real]
        rows["zeros"] = case_dice(segmenter, zeros)
        if task in two_sequence:
            rows["two_sequence"] = case_dice(two_sequence[task], real, channels=conds)
        names = sorted(rows["real"])
        out[task] = {k: {"cases": names, "dice": {r: [float(v[c][i]) for c in names] for i, r in enumerate(REGIONS)}}
                     for k, v in rows.items()}
        logger.info(f"utility {task}: " + "; ".join(
            f"{k} myo {np.nanmean(v['dice']['myo']):.3f}" for k, v in out[task].items()))
    write_json(output_json, out)
    return out


def utility_table(summary: Mapping, labels: Mapping[str, str] | None = None) -> str:
    """Markdown: per task and input, the mean Dice over cases of each region, and for myocardium and the task's
    lesion (edema for t2, scar for lge) the paired difference to the real sequence with its 95 % interval."""
    labels = dict(labels or {})
    lesion = {"lge": "scar", "t2": "edema", "bssfp": "myo"}
    lines = []
    for task, rows in summary.items():
        les = lesion.get(task, "myo")
        head = [*REGIONS, "Δ myo vs real [95 % CI]"] + ([f"Δ {les} vs real [95 % CI]"] if les != "myo" else [])
        lines += [f"**{task}**", "", "| target sequence | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
        real = rows["real"]["dice"]
        for k, v in rows.items():
            cells = [f"{np.nanmean(v['dice'][r]):.3f}" for r in REGIONS]
            for r in ("myo", les) if les != "myo" else ("myo",):
                if k == "real":
                    cells.append("–")
                    continue
                m, lo, hi = paired_interval(np.array(v["dice"][r]), np.array(real[r]))
                cells.append(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            lines.append(f"| {labels.get(k, k)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).replace("nan", "–")


def load_segmenter(path: str | Path, inputs: Sequence[str], features: Sequence[int], profile: str,
                   device: torch.device | str = "cpu") -> nn.Module:
    """A shipped segmenter of ``inputs`` (sequence names; its ``arch`` is checked): the ``segmenter_def`` network of
    configs/train_segmenter.yaml (MONAI ``BasicUNet``, one output per region) with ``len(inputs)`` channels, loaded,
    in eval mode."""
    from monai.networks.nets import BasicUNet

    from bundle.weights import load_weights

    net = BasicUNet(spatial_dims=2, in_channels=len(inputs), out_channels=len(REGIONS), features=tuple(features))
    load_weights(path, net, {"inputs": list(inputs), "profile": profile})
    return net.to(device).eval()


def run_utility(tasks: Mapping[str, Mapping], cases: Sequence[dict], volume_transform, slice_transform,
                segmenter: nn.Module, segmenter_file, profile: str, features: Sequence[int],
                methods: Mapping[str, str | Path], output_json: str | Path, device: torch.device | str = "cpu") -> dict:
    """The utility workflow's run step: load the fixed segmenter (``segmenter_file(SEQUENCES)``) into ``segmenter``
    and each task's two-sequence segmenter (``segmenter_file(conditions)``; a task without one gets no such row),
    run :func:`evaluate_utility`, and write its table beside ``output_json`` (``utility.md``)."""
    from bundle.weights import load_weights

    load_weights(segmenter_file(list(SEQUENCES)), segmenter, {"inputs": list(SEQUENCES), "profile": profile})
    logger.info(f"utility: segmenter {segmenter_file(list(SEQUENCES))}")
    two = {}
    for task, spec in tasks.items():
        path = Path(segmenter_file(list(spec["conditions"])))
        if not path.is_file():
            logger.info(f"utility {task}: no two-sequence segmenter {path}: row skipped")
            continue
        two[task] = load_segmenter(path, spec["conditions"], features, profile, device)
    summary = evaluate_utility(tasks, cases, volume_transform, slice_transform, segmenter.to(device), two, methods,
                               output_json)
    table = utility_table(summary)
    Path(output_json).with_name("utility.md").write_text(table + "\n")
    print(table)
    return summary

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


# --- segmenting cases (configs/segment.yaml): a label map on the input's grid ---------------------------------------

LABELS: dict[int, str] = {500: "LV blood pool", 600: "RV blood pool", 200: "myocardium (neither edema nor scar)",
                          1220: "edema (in the myocardium)", 2221: "scar (in the myocardium)"}


def label_map(regions: np.ndarray) -> np.ndarray:
    """Nested region masks (5, ...) bool in ``REGIONS`` order -> a MyoPS label map (...) int16: LV 500, RV 600,
    myocardium 200, edema 1220 and scar 2221 where they lie in the myocardium (scar over edema, the MyoPS nesting)."""
    r = dict(zip(REGIONS, np.asarray(regions, dtype=bool)))
    lab = np.zeros(r["lv"].shape, np.int16)
    lab[r["lv"]] = 500
    lab[r["rv"]] = 600
    lab[r["myo"]] = 200
    lab[r["myo"] & r["edema"]] = 1220
    lab[r["myo"] & r["scar"]] = 2221
    return lab


@torch.no_grad()
def region_probabilities(network: nn.Module, image: torch.Tensor, image_size: int | None) -> torch.Tensor:
    """Field-of-view volume (C, fov, fov, S) -> sigmoid probabilities (5, fov, fov, S): each slice area-resized to
    ``image_size`` (as in training), segmented, and resized back (bicubic, clipped to [0, 1])."""
    from bundle.data import map_fov_slices

    network.eval()
    dev = next(network.parameters()).device
    prob = map_fov_slices(lambda x: (torch.sigmoid(network(x.to(dev))).cpu(),), torch.as_tensor(image)[None].float(),
                          image_size)[0]
    return prob[0].clamp(0, 1)


def _synthesized_by_cmrdiff(path: str | Path) -> bool:
    """Whether a NIfTI's header description says CMRDiff wrote it (a ``_synth`` / ``_sample`` / ``_mean`` output;
    the header only: nibabel reads no voxels here)."""
    import nibabel as nib

    return bytes(nib.load(str(path)).header["descrip"]).decode("ascii", "replace").startswith("CMRDiff")


def parse_inputs(inputs: str | Sequence[str]) -> list[str] | None:
    """The ``segment_inputs`` knob: ``auto`` -> None (every sequence a case has), else its two or three distinct
    sequences of ``SEQUENCES`` in canonical order (a ``ConfigError`` naming the field otherwise)."""
    from bundle.errors import ConfigError

    if isinstance(inputs, str) and inputs.strip().lower() == "auto":
        return None
    seqs = list(inputs) if isinstance(inputs, (list, tuple)) else None
    if seqs is None or not 2 <= len(seqs) <= 3 or any(s not in SEQUENCES for s in seqs) or len(set(seqs)) < len(seqs):
        raise ConfigError(f"segment_inputs must be `auto` or a list of two or three distinct sequences of "
                          f"{list(SEQUENCES)}, e.g. \"['C0','DE']\", got {inputs!r}")
    return [s for s in SEQUENCES if s in seqs]


def segment_cases(cases: Sequence[dict], preprocessing, segmenter_file, profile: str, features: Sequence[int],
                  image_size: int | None, output_dir: str | Path, inputs: str | Sequence[str] = "auto",
                  device: torch.device | str = "cpu", record_paths: bool = False) -> list[Path]:
    """Segment every case with the shipped segmenter of the sequences it has and write ``<case>_seg.nii.gz`` (a MyoPS
    label map, int16, ``LABELS``) on the grid of its first input, with a sidecar ``<case>_seg.json``.

    ``inputs`` ``auto``: every sequence the case has (at least two: the three-sequence segmenter, or the pair's);
    a list (e.g. ``["C0", "DE"]``): exactly those, each of which the case must have. ``segmenter_file(inputs)`` gives
    the weights file (``segmenter_<profile>_<inputs>.pt``). The case goes through ``preprocessing`` (the inference
    pipeline: reoriented, resampled, its field of view normalised); the probabilities are mapped back onto the input's
    grid (0 outside the field of view) and thresholded at 0.5. A case's two files are written all or nothing."""
    import json
    from itertools import permutations

    from bundle.atomic import atomic_write_all
    from bundle.data import DataError
    from bundle.errors import flag
    from bundle.io import case_file_stem, check_output_dir, file_entry, nifti_writer, to_input_grid
    from bundle.transforms import paste_fov
    from bundle.weights import WeightsError

    out_dir = check_output_dir(output_dir)
    fixed, record_paths = parse_inputs(inputs), flag(record_paths, "sidecar_paths")
    nets: dict[tuple[str, ...], nn.Module] = {}
    written: list[Path] = []
    for case in cases:
        name = case_file_stem(case.get("case", "case"))
        d = preprocessing(dict(case))
        present = [s for s, p in zip(SEQUENCES, d["present"]) if p]
        use = fixed or present
        if fixed and any(s not in present for s in fixed):
            raise DataError(f"case {name}: segment_inputs {fixed} but the case has only {present}")
        if len(use) < 2:
            raise DataError(f"case {name}: segmentation needs at least two of {SEQUENCES}; the case has {present}")
        # a segmenter's channel order is that of its file name (the shipped T2 + LGE one is segmenter_<p>_T2_DE.pt)
        found = [list(o) for o in permutations(use) if Path(segmenter_file(list(o))).is_file()]
        if not found:
            raise WeightsError(f"no segmenter for the inputs {use}: {segmenter_file(use)} not found (train one with "
                               f"configs/train_segmenter.yaml --segmenter_inputs \"{use}\", scripts/train_segmenters.sh)")
        use = found[0]
        path = Path(segmenter_file(use))
        if tuple(use) not in nets:
            nets[tuple(use)] = load_segmenter(path, use, features, profile, device)
        prob = region_probabilities(nets[tuple(use)], torch.as_tensor(d["image"])[[SEQUENCES.index(s) for s in use]],
                                    image_size).numpy()  # (5, fov, fov, S)
        # the FOV probabilities pasted into the whole resampled field (0 outside), then onto the input's grid
        ref, shape = str(d[f"{use[0]}_path"]), tuple(torch.as_tensor(d["field"]).shape[1:])
        faff = np.asarray(torch.as_tensor(d["field_affine"]).double().cpu().numpy())
        lab = label_map(np.stack([to_input_grid(paste_fov(p, shape), faff, ref) for p in prob]) > 0.5)
        out, js = out_dir / f"{name}_seg.nii.gz", out_dir / f"{name}_seg.json"
        given = [str(d[f"{s}_path"]) for s in SEQUENCES if f"{s}_path" in d]
        sidecar = {
            "file": out.name, "case": name, "labels": {str(k): v for k, v in LABELS.items()},
            "inputs": {s: dict(file_entry(d[f"{s}_path"], record_paths),
                               synthesized=_synthesized_by_cmrdiff(d[f"{s}_path"])) for s in use},
            "segmenter": dict(file_entry(path, record_paths), inputs=use, profile=profile),
            "voxels": {str(k): int((lab == k).sum()) for k in LABELS},
            "note": "a MONAI BasicUNet at the profile's size, one sigmoid per nested region thresholded at 0.5; its "
                    "Dice on the validation cases, with real or synthesized inputs: docs/results.md (Downstream utility)",
        }
        written += atomic_write_all([
            (out, nifti_writer(lab, ref, out, given, descrip=f"MyoPS labels, bundle segmenter {'+'.join(use)}",
                               dtype=np.int16)),
            (js, lambda tmp, s=sidecar: Path(tmp).write_text(json.dumps(s, indent=2))),
        ])
        logger.info(f"segment {name}: inputs {use} -> {out} ({', '.join(f'{k}: {v}' for k, v in sidecar['voxels'].items())})")
    return written

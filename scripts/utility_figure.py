"""The downstream-utility figure (issue 34): per task, one validation slice (the one with the largest lesion; scar for
lge and bssfp, edema ∪ scar for t2) zoomed on the myocardium, the target sequence as the segmenter saw it — real, each
method's synthesis, zeros (missing) — with the fixed segmenter's myocardium (green) and lesion (red: scar for lge,
edema for t2 and bssfp) outlined, and the two-sequence segmenter's outlines on the real target. One PNG per task:
``<out>/utility_<task>.png``.

    PYTHONPATH=. .venv/bin/python scripts/utility_figure.py --results_dir output/results \\
        --methods cmrdiff cmrdiff_1sample guide copy --out docs/figures
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bundle.data import SEQUENCES, build_slices, discover_cases  # noqa: E402
from bundle.segmentation import REGIONS, load_segmenter, segment  # noqa: E402
from scripts.clinical_figures import box, figure  # noqa: E402

LESION = {"lge": "scar", "t2": "edema", "bssfp": "edema"}


def tile(image: np.ndarray, myo: np.ndarray, lesion: np.ndarray, zoom: int) -> np.ndarray:
    """RGB uint8 tile of an (X, Y) image in [0, 1], ×``zoom``, myocardium outline green, lesion outline red (X across,
    Y up, as the clinical figures)."""
    from scipy.ndimage import binary_erosion

    g = (np.clip(image, 0, 1) * 255).astype(np.uint8).repeat(zoom, 0).repeat(zoom, 1)
    rgb = np.stack([g, g, g], -1)
    for mask, colour in ((myo, (60, 220, 60)), (lesion, (255, 40, 40))):
        m = mask.astype(bool).repeat(zoom, 0).repeat(zoom, 1)
        rgb[m & ~binary_erosion(m, iterations=max(1, zoom // 2), border_value=0)] = colour
    return np.ascontiguousarray(rgb.transpose(1, 0, 2)[::-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results_dir", type=Path, default=ROOT / "output" / "results")
    ap.add_argument("--dataset_dir", type=Path, default=Path(os.environ.get("MYOPS_DIR", ROOT.parent / "shared/data/myops2020")))
    ap.add_argument("--split", default="validation")
    ap.add_argument("--methods", nargs="*", default=["cmrdiff", "cmrdiff_1sample", "guide", "copy"])
    ap.add_argument("--segmenter_dir", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--zoom", type=int, default=4)
    ap.add_argument("--margin", type=int, default=6)
    args = ap.parse_args()
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config([str(ROOT / "configs" / f) for f in ("common.yaml", "train_segmenter.yaml", "evaluate_utility.yaml")])
    p.update({"output_dir": tempfile.gettempdir(), "dataset_dir": str(args.dataset_dir), "bundle_root": str(ROOT)})
    vt, st = p.get_parsed_content("segmenter_volume_transforms"), p.get_parsed_content("utility_slice_transforms")
    tasks, feats, profile = p.get_parsed_content("tasks"), p.get_parsed_content("segmenter_features"), p["profile"]

    def net(inputs: list[str]) -> torch.nn.Module:
        return load_segmenter(args.segmenter_dir / f"segmenter_{profile}_{'_'.join(inputs)}.pt", inputs, feats, profile)

    full = net(list(SEQUENCES))
    cases = discover_cases(args.dataset_dir, args.split, p["validation_ids"], require_label=True, tuning_ids=p["tuning_ids"])
    real = build_slices(cases, vt, st, progress=False)
    names = list(REGIONS)
    for task, les in LESION.items():
        t, target = SEQUENCES.index(tasks[task]["target"]), tasks[task]["target"]
        k = max(range(len(real)), key=lambda i: float(real[i]["regions"][names.index(les)].sum()))
        case, s = real[k]["case"], real[k]["slice"]
        x0, x1, y0, y1 = box(np.asarray(real[k]["regions"][names.index("myo")]) > 0.5, args.margin)
        rows = [("real", real[k]["image"])]
        for m in args.methods:
            f = args.results_dir / m / task / f"{case}_{target}_synth.nii.gz"
            if f.is_file():
                c = next(c for c in cases if c["case"] == case)
                sl = [d for d in build_slices([dict(c, **{target: str(f)})], vt, st, progress=False) if d["slice"] == s]
                rows.append((m, sl[0]["image"]))
        zero = torch.as_tensor(real[k]["image"]).clone()
        zero[t] = 0
        rows.append(("zeros (missing)", zero))
        tiles, titles = [], []
        for name, image in rows:
            pred = segment(full, torch.as_tensor(image)[None].float())[0].numpy()
            crop = (slice(x0, x1), slice(y0, y1))
            tiles.append(tile(np.asarray(image[t])[crop], pred[names.index("myo")][crop], pred[names.index(les)][crop],
                              args.zoom))
            titles.append(name)
        conds = list(tasks[task]["conditions"])
        two = segment(net(conds), torch.as_tensor(real[k]["image"])[[SEQUENCES.index(c) for c in conds]][None].float())[0].numpy()
        crop = (slice(x0, x1), slice(y0, y1))
        tiles.append(tile(np.asarray(real[k]["image"][t])[crop], two[names.index("myo")][crop], two[names.index(les)][crop],
                          args.zoom))
        titles.append(f"{'+'.join(conds)} segmenter")
        header = (f"{task}: {case} slice {s}; {target} as the segmenter saw it; outlines: its myocardium (green), "
                  f"{les} (red)")
        print(figure(tiles, titles, header, args.out / f"utility_{task}.png", columns=len(tiles)))


if __name__ == "__main__":
    main()

"""Lesion close-ups (docs/clinical_metrics.md): per task, the validation slice with the largest lesion (scar for lge
and bssfp, edema ∪ scar for t2, from the labels), zoomed on the myocardium, real target sequence beside every
method's synthesis, the lesion label outlined in red. One PNG per task: ``<out>/clinical_<task>.png``.

    PYTHONPATH=. .venv/bin/python scripts/clinical_figures.py --results_dir output/results \\
        --dataset_dir ../shared/data/myops2020 --split validation --out docs/figures

The realism figures (issue 31: real | guide | mean | two samples | pix2pix, full field and zoomed):

    PYTHONPATH=. .venv/bin/python scripts/clinical_figures.py --prefix realism_zoom \
        --methods guide cmrdiff cmrdiff:sample cmrdiff_1sample pix2pix_1view
    ... the same with --prefix realism_full --full

A method ``<folder>:<suffix>`` shows ``<case>_<SEQ>_<suffix>.nii.gz`` of that folder (e.g. ``cmrdiff:sample``, the
sample written beside the mean). The syntheses are read from ``<results_dir>/<method>/<task>/<case>_<SEQ>_synth.nii.gz`` (written by the evaluation
on the case's native grid, 0 outside the field of view) and cropped back to the ``fov`` x ``fov`` field of view
(``ResizeWithPadOrCrop``, as configs/common.yaml's ``volume_transforms``), so that they line up with the real image,
which goes through the evaluation's own preprocessing (normalised [0, 1] units; shown on [0, 1]). Methods whose
file is missing are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bundle.atomic import atomic_write  # noqa: E402
from bundle.clinical import LESION_LABELS  # noqa: E402
from bundle.data import MYOCARDIUM_LABELS, SEQUENCES, discover_cases  # noqa: E402

#: the label that picks the slice and is outlined, per task
FIGURE_LESION = {"lge": LESION_LABELS["lge"], "t2": LESION_LABELS["t2"], "bssfp": LESION_LABELS["lge"]}
FIRST = ("cmrdiff",)  # shown first; the other methods in name order
TITLE_H = 14


def load_cases(dataset_dir: Path, split: str) -> tuple[list[dict], dict]:
    """The split's cases through configs/common.yaml's ``volume_transforms``: [{"case", "image" (3, fov, fov, S),
    "gd" (fov, fov, S) int, "native" (X, Y, S)}], and the parsed config."""
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config(str(ROOT / "configs/common.yaml"))
    # the native grid: the written syntheses are on the input's grid, cropped here with the same native crop
    p.update({"output_dir": tempfile.gettempdir(), "dataset_dir": str(dataset_dir), "target_spacing": "native"})
    vt = p.get_parsed_content("volume_transforms")
    out = []
    for case in discover_cases(dataset_dir, split, p["validation_ids"], require_label=True, tuning_ids=p["tuning_ids"]):
        v = vt(case)
        out.append({"case": case["case"], "image": np.asarray(v["image"], dtype=np.float32),
                    "gd": np.rint(np.asarray(v["gd"])[0]).astype(np.int64),
                    "native": tuple(nib.load(case["gd"]).shape)})  # the grid of every file of the case
    return out, p


def pick_slice(cases: list[dict], labels) -> tuple[int, int, int]:
    """(case index, slice, lesion voxels) of the slice with the most voxels in ``labels`` (ties: the first);
    without any lesion, the slice with the most myocardium (lesion voxels 0)."""
    best = max(((int(np.isin(c["gd"][..., s], labels).sum()), int(np.isin(c["gd"][..., s], MYOCARDIUM_LABELS).sum()),
                 -i, -s) for i, c in enumerate(cases) for s in range(c["gd"].shape[-1])))
    return -best[2], -best[3], best[0]


def crop_fov(volume: np.ndarray, fov: int) -> np.ndarray:
    """Native (X, Y, S) -> (fov, fov, S), the centred crop / zero padding of ``volume_transforms``."""
    from monai.transforms import ResizeWithPadOrCrop

    return np.asarray(ResizeWithPadOrCrop(spatial_size=(fov, fov, -1))(volume[None]))[0]


def methods_of(results_dir: Path, only: list[str] | None) -> list[str]:
    """The method folders to show: ``only`` (in its order), or every folder of ``results_dir``; cmrdiff first, then
    by name."""
    if only:
        return list(only)  # as given
    names = []
    if results_dir.is_dir():
        names = [d.name for d in results_dir.iterdir() if d.is_dir()]
    return sorted(names, key=lambda m: (m not in FIRST, FIRST.index(m) if m in FIRST else 0, m))


def box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """Bounding box (x0, x1, y0, y1) of ``mask`` (X, Y) grown by ``margin`` (inside the slice; whole slice if empty)."""
    if not mask.any():
        return 0, mask.shape[0], 0, mask.shape[1]
    xs, ys = np.nonzero(mask)
    return (max(0, xs.min() - margin), min(mask.shape[0], xs.max() + 1 + margin),
            max(0, ys.min() - margin), min(mask.shape[1], ys.max() + 1 + margin))


def tile(image: np.ndarray, lesion: np.ndarray, zoom: int) -> np.ndarray:
    """RGB uint8 tile (height, width, 3) of an (X, Y) image in [0, 1], upscaled ×``zoom`` (nearest), the lesion
    outline in red, shown like bundle/io.py's previews (X across, Y up)."""
    from scipy.ndimage import binary_erosion

    g = (np.clip(image, 0, 1) * 255).astype(np.uint8).repeat(zoom, 0).repeat(zoom, 1)
    m = lesion.repeat(zoom, 0).repeat(zoom, 1)
    edge = m & ~binary_erosion(m, iterations=max(1, zoom // 2), border_value=0)
    rgb = np.stack([g, g, g], -1)
    rgb[edge] = (255, 40, 40)
    return np.ascontiguousarray(rgb.transpose(1, 0, 2)[::-1])


def figure(tiles: list[np.ndarray], titles: list[str], header: str, path: Path, columns: int) -> Path:
    from PIL import Image, ImageDraw

    h, w = tiles[0].shape[:2]
    cols = min(columns, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    canvas = Image.new("RGB", (max(cols * w, 6 * len(header) + 6), TITLE_H + rows * (h + TITLE_H)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((3, 1), header, fill=(255, 255, 255))
    for i, (t, name) in enumerate(zip(tiles, titles)):
        x, y = (i % cols) * w, TITLE_H + (i // cols) * (h + TITLE_H)
        draw.text((x + 3, y + 1), name, fill=(255, 255, 255))
        canvas.paste(Image.fromarray(t), (x, y + TITLE_H))
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results_dir", type=Path, default=ROOT / "output" / "results")
    ap.add_argument("--dataset_dir", type=Path, default=Path(os.environ.get("MYOPS_DIR", ROOT.parent / "shared/data/myops2020")))
    ap.add_argument("--split", default="validation")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--tasks", nargs="*", default=list(FIGURE_LESION), choices=list(FIGURE_LESION))
    ap.add_argument("--methods", nargs="*", help="method folders of results_dir to show (default: all, cmrdiff first)")
    ap.add_argument("--margin", type=int, default=8, help="pixels around the myocardium's bounding box")
    ap.add_argument("--zoom", type=int, default=4, help="nearest-neighbour upscaling of the close-up")
    ap.add_argument("--columns", type=int, default=6, help="tiles per row")
    ap.add_argument("--prefix", default="clinical", help="figure file name: <out>/<prefix>_<task>.png")
    ap.add_argument("--full", action="store_true", help="the whole field of view at zoom 1 instead of the close-up")
    args = ap.parse_args()

    cases, p = load_cases(args.dataset_dir, args.split)
    if not cases:
        raise SystemExit(f"error: no {args.split} cases with labels in {args.dataset_dir}")
    fov, methods = int(p["fov"]), methods_of(args.results_dir, args.methods)
    for task in args.tasks:
        target = p["tasks"][task]["target"]
        labels = FIGURE_LESION[task]
        i, s, n = pick_slice(cases, labels)
        c = cases[i]
        lab = c["gd"][..., s]
        lesion = np.isin(lab, labels)
        x0, x1, y0, y1 = (0, lab.shape[0], 0, lab.shape[1]) if args.full else \
            box(np.isin(lab, MYOCARDIUM_LABELS), args.margin)
        zoom = 1 if args.full else args.zoom
        t = SEQUENCES.index(target)
        tiles, titles = [tile(c["image"][t, x0:x1, y0:y1, s], lesion[x0:x1, y0:y1], zoom)], [f"real {target}"]
        for m in methods:
            folder, _, suffix = m.partition(":")
            f = args.results_dir / folder / task / f"{c['case']}_{target}_{suffix or 'synth'}.nii.gz"
            if not f.is_file():
                continue
            vol = np.asarray(nib.load(str(f)).dataobj, dtype=np.float32)
            if vol.shape != c["native"]:
                print(f"  {m}/{task}: {f.name} has shape {vol.shape}, not the case's {c['native']} - skipped")
                continue
            tiles.append(tile(crop_fov(vol, fov)[x0:x1, y0:y1, s], lesion[x0:x1, y0:y1], zoom))
            titles.append(m.replace(":", " "))
        what = "+".join(str(v) for v in labels)
        header = (f"{task} ({target}): {c['case']} slice {s}, lesion {what} = {n} px, red outline"
                  if n else f"{task} ({target}): {c['case']} slice {s}, no lesion {what} in the split")
        out = figure(tiles, titles, header, args.out / f"{args.prefix}_{task}.png", args.columns)
        print(f"{task}: {c['case']} slice {s} ({n} lesion px), {len(tiles) - 1} methods -> {out}")


if __name__ == "__main__":
    main()

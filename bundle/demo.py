"""``make demo``: the main job on the embedded default.

1. generates the synthetic phantom data set (MyoPS layout) and writes a PNG preview of one case
   (the three sequences and the myocardium mask, after the bundle's own preprocessing);
2. synthesizes each task's target sequence for the phantom's test case with the shipped weights, through
   ``configs/inference.yaml`` (the same workflow a user runs);
3. does the same for the first validation case of MyoPS 2020 when ``$MYOPS_DIR`` or ``../shared/data/myops2020``
   exists; prints where everything went.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def preview(output_dir: Path) -> Path:
    from monai.bundle import ConfigParser

    from bundle.data import SEQUENCES, build_slices, discover_cases
    from bundle.io import save_png

    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs/common.yaml"))
    parser.update({"bundle_root": str(ROOT), "output_dir": str(output_dir)})
    parser.get_parsed_content("provide_data")  # the embedded default data set, written (and logged) by its step
    cases = discover_cases(parser.get_parsed_content("dataset_dir"), "train", parser["validation_ids"])
    slices = build_slices(cases[:1], parser.get_parsed_content("volume_transforms"), None, progress=False)
    s = slices[len(slices) // 2]
    tiles = [s["image"][i].numpy() for i in range(3)] + [s["mask"][0].numpy()]
    return save_png(tiles, [*SEQUENCES, "myocardium"], output_dir / f"{s['case']}_preview.png")


def synthesize(task: str, output_dir: Path, extra: dict) -> bool:
    from monai.bundle import run

    try:
        run(config_file=[str(ROOT / "configs/common.yaml"), str(ROOT / "configs/inference.yaml")],
            bundle_root=str(ROOT), task=task, output_dir=str(output_dir), **extra)
        return True
    except Exception as e:  # a clear one-line reason instead of a traceback; the other tasks still run
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        print(f"task {task}: {type(cause).__name__}: {cause}", file=sys.stderr)
        return False


def describe(task: str, synth_dir: Path, dataset_dir: Path | None = None) -> None:
    """Print what the user is looking at for each case ``synthesize`` wrote: target and conditions, the PNG's
    panels, and (with the real sequence at hand in ``dataset_dir``) the PSNR of the synthesis inside the FOV."""
    import nibabel as nib
    import numpy as np
    import torch
    from monai.metrics import PSNRMetric

    from bundle.data import SEQUENCES
    from bundle.transforms import fov_offsets, normalize_fov

    names = {"C0": "bSSFP", "DE": "LGE", "T2": "T2"}
    target = {"lge": "DE", "t2": "T2", "bssfp": "C0"}.get(task)
    if target is None:
        return
    conds = [s for s in SEQUENCES if s != target]
    for synth in sorted(synth_dir.glob(f"*_{target}_synth.nii.gz")):
        case = synth.name[: -len(f"_{target}_synth.nii.gz")]
        line = (f"{case}: synthetic {names[target]} from {names[conds[0]]} + {names[conds[1]]}; "
                f"PNG {synth.with_suffix('').with_suffix('.png').name}: inputs | synthesis | real | |error|")
        real = next(iter(sorted(dataset_dir.glob(f"*/{case}_{target}.nii.gz")))) if dataset_dir else None
        if real is not None:
            try:  # PSNR in the evaluation's units: centred 256-voxel field, [0, p99.5] -> [0, 1]
                ref = np.asarray(nib.load(str(real)).dataobj, dtype=np.float32)
                syn = np.asarray(nib.load(str(synth)).dataobj, dtype=np.float32)
                ox, oy = (max(o, 0) for o in fov_offsets(ref.shape, 256))
                ref, syn = ref[ox:ox + 256, oy:oy + 256], syn[ox:ox + 256, oy:oy + 256]
                ref = normalize_fov(torch.as_tensor(ref)[None])[None]
                psnr = PSNRMetric(max_val=1.0)(torch.as_tensor(syn).clamp(0, 1)[None, None], ref).mean()
                line += f"; PSNR vs the real {names[target]} {float(psnr):.1f} dB"
            except Exception:  # a description only: never fail the demo over it
                pass
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_dir", default=str(ROOT / "output/demo"))
    ap.add_argument("--tasks", default="lge,t2,bssfp")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args(argv)
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"phantom preview: {preview(out)}")
    print("phantom = a synthetic MyoPS-like short-axis heart (LV ring with an edema/scar sector, blood pools, RV,\n"
          "  lungs, liver, fat; 0.75 mm pixels), not a patient; see bundle/phantom.py")
    ok = True
    for task in args.tasks.split(","):
        done = synthesize(task, out / "synthesis_phantom", {"num_inference_steps": args.steps,
                                                            "dataset_dir": str(out / "phantom")})
        if done:
            describe(task, out / "synthesis_phantom", out / "phantom")
        ok &= done
    myops = Path(os.environ.get("MYOPS_DIR", ROOT.parent / "shared/data/myops2020"))
    if myops.is_dir():
        from bundle.data import discover_cases

        first = discover_cases(myops, "validation", [203, 206, 210, 211, 214])[0]
        files = {k: first[k] for k in ("C0", "DE", "T2")}
        for task in args.tasks.split(","):
            ok &= synthesize(task, out / "synthesis_myops", {"num_inference_steps": args.steps, "case_name": first["case"],
                                                   "input_files": files})
    print(f"demo outputs: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

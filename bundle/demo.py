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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_dir", default=str(ROOT / "output/demo"))
    ap.add_argument("--tasks", default="lge,t2,bssfp")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args(argv)
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"phantom preview: {preview(out)}")
    ok = True
    for task in args.tasks.split(","):
        ok &= synthesize(task, out / "synthesis_phantom", {"num_inference_steps": args.steps,
                                                            "dataset_dir": str(out / "phantom")})
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

"""Write a copy of a MyoPS-layout dataset cropped to the bundle's field of view (for carrying to another machine).

    PYTHONPATH=. python scripts/crop_fov.py SRC DST [--fov 256] [--cases 101 102 ...]

Every ``*.nii.gz`` under SRC (same sub-folders) is centre-cropped/padded in-plane to ``fov`` x ``fov`` with MONAI's
``ResizeWithPadOrCrop`` -- the transform ``configs/common.yaml`` applies first -- and saved with its shifted affine
and original dtype. With ``--target_spacing native`` the bundle's pipeline gives the same slices on DST as on SRC (its
own crop is then a no-op), at a fraction of the size; the default path (in-plane resampling to 0.729 mm, a 186.6 mm
field of view) reads nearly the same field of view from it, but the whole-field output then covers only the copy. DST must not exist or be empty; SRC is never written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ResizeWithPadOrCrop


def crop_file(src: Path, dst: Path, fov: int) -> None:
    """Crop one volume (H, W[, D]) to (fov, fov[, D]) around its centre; the affine follows the crop."""
    img = nib.load(str(src))
    data = np.asanyarray(img.dataobj)
    t = MetaTensor(torch.as_tensor(data[None].astype(np.float64)), affine=torch.as_tensor(img.affine))
    size = [fov, fov] + [-1] * (data.ndim - 2)
    out = ResizeWithPadOrCrop(size)(t)
    arr = out[0].numpy().astype(data.dtype)
    hdr = img.header.copy()
    new = nib.Nifti1Image(arr, out.affine.numpy(), hdr)
    new.set_qform(out.affine.numpy())
    new.set_sform(out.affine.numpy())
    nib.save(new, str(dst))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--fov", type=int, default=256)
    p.add_argument("--cases", nargs="*", type=int, help="keep only these case numbers (default: all)")
    a = p.parse_args(argv)
    if not a.src.is_dir():
        print(f"error: {a.src} is not a directory", file=sys.stderr)
        return 2
    if a.dst.exists() and any(a.dst.iterdir()):
        print(f"error: {a.dst} exists and is not empty", file=sys.stderr)
        return 2
    n = 0
    for f in sorted(a.src.rglob("*.nii.gz")):
        if a.cases is not None and not any(f"_{c}_" in f.name for c in a.cases):
            continue
        out = a.dst / f.relative_to(a.src)
        out.parent.mkdir(parents=True, exist_ok=True)
        crop_file(f, out, a.fov)
        n += 1
    print(f"wrote {n} files to {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

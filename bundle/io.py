"""Writing results safely: NIfTI on the input's grid and PNG previews, atomically (temp file + rename),
never onto an input file; plus the output-folder checks that turn OS errors into clear messages."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from bundle.data import SEQUENCES, DataError
from bundle.transforms import paste_fov


def check_output_dir(path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Create ``path`` if needed and check it is a writable folder that is not an input file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(f"output_dir {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".write_test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise DataError(f"output_dir {p} is not writable: {e.strerror or e}") from None
    return p


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path`` (same suffix), then rename it onto ``path`` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_nifti_like(volume: np.ndarray, reference: str | Path, path: str | Path,
                    protected: Sequence[str | Path] = ()) -> Path:
    """Write ``volume`` (X, Y, S) float32 with ``reference``'s affine and header, atomically.

    Refuses to write onto ``reference`` or any path in ``protected`` (the inputs)."""
    path = Path(path)
    for q in [reference, *protected]:
        if Path(q).exists() and path.exists() and path.resolve() == Path(q).resolve():
            raise DataError(f"refusing to overwrite input file {q} with an output")
    ref = nib.load(str(reference))
    img = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), ref.affine, ref.header)
    img.set_data_dtype(np.float32)
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    img.set_qform(ref.affine, code=int(ref.header["qform_code"]) or 1)
    img.set_sform(ref.affine if int(ref.header["sform_code"]) else None, code=int(ref.header["sform_code"]))
    return atomic_write(path, lambda tmp: nib.save(img, tmp))


def save_png(tiles: Sequence[np.ndarray], titles: Sequence[str], path: str | Path) -> Path:
    """A one-row grayscale preview of 2D ``tiles`` in [0, 1] (each (X, Y), shown X across and Y up), labelled
    with ``titles``."""
    from PIL import Image, ImageDraw

    nx, ny = tiles[0].shape  # shown transposed: X across (width), Y up (height)
    canvas = Image.new("L", (nx * len(tiles), ny + 14), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (t, name) in enumerate(zip(tiles, titles)):
        arr = (np.clip(np.asarray(t, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
        canvas.paste(Image.fromarray(arr.T[::-1]), (i * nx, 14))  # rows = Y (anterior up), cols = X
        draw.text((i * nx + 3, 1), name, fill=255)
    return atomic_write(Path(path), lambda tmp: canvas.save(tmp, format="PNG"))


class SaveSynthesisd(MapTransform):
    """Evaluator post-processing: writes ``<case>_<SEQ>_<suffix>.nii.gz`` (suffix ``synth``) (and ``_uncertainty`` when the
    inferer produced one) on the grid of the case's first condition file, plus ``<case>_<SEQ>_synth.png``.

    ``pred`` (1, fov, fov, S) is pasted into the native grid (0 outside the field of view). ``image``
    (3, fov, fov, S) provides the conditions and, when present, the reference for the preview.
    """

    def __init__(self, output_dir: str | Path, target: str, conditions: Sequence[str], inferer=None,
                 keys: KeysCollection = "pred", preview: bool = True, suffix: str = "synth",
                 pred_channel: int = 0) -> None:
        super().__init__(keys)
        self.output_dir, self.target, self.conditions = Path(output_dir), target, list(conditions)
        self.inferer, self.preview, self.suffix, self.pred_channel = inferer, preview, suffix, pred_channel
        self.written: list[Path] = []
        self._unc: tuple[object, int] = (None, 0)  # (the inferer's current uncertainty batch, next item in it)

    def _uncertainty(self) -> np.ndarray | None:
        """This item's (X, Y, S) slice of the inferer's ``uncertainty_volume`` (B, 1, X, Y, S): post-processing
        runs once per item of a batch, in order, so the k-th call since the batch changed takes item k."""
        unc = getattr(self.inferer, "uncertainty_volume", None)
        if unc is None:
            return None
        k = self._unc[1] if self._unc[0] is unc else 0
        self._unc = (unc, k + 1)  # holds the batch: a new batch is a new object (its id is never reused meanwhile)
        return unc[min(k, unc.shape[0] - 1), 0].float().cpu().numpy()

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        case = d["case"]
        inputs = [str(d[f"{s}_path"]) for s in SEQUENCES if f"{s}_path" in d]
        ref = str(d[f"{self.conditions[0]}_path"])
        native = nib.load(ref).shape
        pred = torch.as_tensor(d["pred"]).detach().float().cpu().numpy()[self.pred_channel]
        out = self.output_dir / f"{case}_{self.target}_{self.suffix}.nii.gz"
        self.written.append(save_nifti_like(paste_fov(pred, native), ref, out, inputs))
        u = self._uncertainty()
        if u is not None:
            self.written.append(save_nifti_like(paste_fov(u, native), ref, self.output_dir /
                                                f"{case}_{self.target}_uncertainty.nii.gz", inputs))
        if self.preview:
            img = torch.as_tensor(d["image"]).float().cpu().numpy()
            s = pred.shape[-1] // 2
            tiles = [img[SEQUENCES.index(c), :, :, s] for c in self.conditions] + [pred[:, :, s]]
            titles = [f"{c} (input)" for c in self.conditions] + [f"{self.target} {self.suffix}"]
            if d.get("present", [True] * 3)[SEQUENCES.index(self.target)]:
                ref_img = img[SEQUENCES.index(self.target), :, :, s]
                tiles += [ref_img, np.abs(pred[:, :, s] - ref_img)]
                titles += [f"{self.target} reference", "|error|"]
            self.written.append(save_png(tiles, titles, self.output_dir / f"{case}_{self.target}_{self.suffix}.png"))
        return d

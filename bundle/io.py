"""Writing results safely: NIfTI on the input's grid and PNG previews, atomically (temp file + rename),
never onto an input file; plus the output-folder checks that turn OS errors into clear messages."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from bundle.atomic import atomic_write, atomic_write_all
from bundle.data import SEQUENCES, DataError
from bundle.errors import flag
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


def case_file_stem(name: str) -> str:
    """A case name as the stem of output file names: one path component (no ``/`` or ``\\``, not ``.`` or ``..``, no
    NUL), so that every output stays inside its output folder; a ``DataError`` naming ``case_name`` otherwise."""
    text = str(name)
    if not text or text in (".", "..") or any(c in text for c in "/\\\0"):
        raise DataError(f"case_name {text[:80]!r} cannot name output files: it must be one file-name component "
                        "(no '/' or '\\', not '.' or '..')")
    return text


def file_entry(path: str | Path, record_paths: bool = False) -> dict:
    """How a sidecar names a file: ``{"file": name, "md5": ...}`` (``"path"`` too with ``record_paths``; absolute
    paths often carry patient names or ids); md5 None when the file is absent."""
    from bundle.weights import file_md5

    p = Path(path)
    entry = {"file": p.name, "md5": file_md5(p) if p.is_file() else None}
    return dict(entry, path=str(p)) if record_paths else entry


def nifti_writer(volume: np.ndarray, reference: str | Path, path: str | Path,
                 protected: Sequence[str | Path] = (), descrip: str | None = None,
                 dtype: type = np.float32) -> Callable[[str], None]:
    """The ``write(tmp)`` of :func:`save_nifti_like` (for :func:`atomic_write_all`), after its checks: refuses a
    ``path`` that is ``reference`` or any path in ``protected`` (the inputs) before anything is written. ``dtype``:
    the stored type (float32 for images, int16 for label maps)."""
    path = Path(path)
    for q in [reference, *protected]:
        if Path(q).exists() and path.exists() and path.resolve() == Path(q).resolve():
            raise DataError(f"refusing to overwrite input file {q} with an output")
    ref = nib.load(str(reference))
    img = nib.Nifti1Image(np.asarray(volume, dtype=dtype), ref.affine, ref.header)
    img.set_data_dtype(dtype)
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    img.set_qform(ref.affine, code=int(ref.header["qform_code"]) or 1)
    img.set_sform(ref.affine if int(ref.header["sform_code"]) else None, code=int(ref.header["sform_code"]))
    if descrip is not None:
        img.header["descrip"] = descrip.encode("ascii", "replace")[:79]
    return lambda tmp: nib.save(img, tmp)


def save_nifti_like(volume: np.ndarray, reference: str | Path, path: str | Path,
                    protected: Sequence[str | Path] = (), descrip: str | None = None) -> Path:
    """Write ``volume`` (X, Y, S) float32 with ``reference``'s affine and header, atomically; ``descrip`` (at most
    80 characters, longer is cut) replaces the header's description.

    Refuses to write onto ``reference`` or any path in ``protected`` (the inputs)."""
    return atomic_write(Path(path), nifti_writer(volume, reference, path, protected, descrip))


def png_writer(tiles: Sequence[np.ndarray], titles: Sequence[str]) -> Callable[[str], None]:
    """The ``write(tmp)`` of :func:`save_png` (for :func:`atomic_write_all`)."""
    from PIL import Image, ImageDraw

    nx, ny = tiles[0].shape  # shown transposed: X across (width), Y up (height)
    canvas = Image.new("L", (nx * len(tiles), ny + 14), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (t, name) in enumerate(zip(tiles, titles)):
        arr = (np.clip(np.asarray(t, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
        canvas.paste(Image.fromarray(arr.T[::-1]), (i * nx, 14))  # rows = Y (anterior up), cols = X
        draw.text((i * nx + 3, 1), name, fill=255)
    return lambda tmp: canvas.save(tmp, format="PNG")


def save_png(tiles: Sequence[np.ndarray], titles: Sequence[str], path: str | Path) -> Path:
    """A one-row grayscale preview of 2D ``tiles`` in [0, 1] (each (X, Y), shown X across and Y up), labelled
    with ``titles``."""
    return atomic_write(Path(path), png_writer(tiles, titles))


def try_call(fn, default=None):
    """``fn()``, or ``default`` when it raises (config helper: optional provenance entries)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default


def to_input_grid(volume: np.ndarray, field_affine: np.ndarray, reference: str | Path,
                  mode: str = "bilinear") -> np.ndarray:
    """Map ``volume`` (X', Y', S) on the processing grid (``field_affine``: reoriented, resampled) back onto the
    grid of the NIfTI file ``reference`` (its shape and affine), with MONAI ``ResampleToMatch`` (``mode``; border
    padding). The identity (native-grid path) is returned unchanged."""
    from monai.data import MetaTensor
    from monai.transforms import ResampleToMatch

    ref = nib.load(str(reference))
    src_aff = np.asarray(field_affine, dtype=np.float64)
    vol = np.asarray(volume, dtype=np.float32)
    if tuple(vol.shape) == tuple(ref.shape[:3]) and np.allclose(src_aff, ref.affine, atol=1e-4):
        return vol
    src = MetaTensor(torch.as_tensor(vol)[None], affine=torch.as_tensor(src_aff))
    dst = MetaTensor(torch.zeros((1, *ref.shape[:3])), affine=torch.as_tensor(np.asarray(ref.affine, np.float64)))
    out = ResampleToMatch(mode=mode, padding_mode="border", dtype=torch.float64)(src, img_dst=dst)
    return np.asarray(out.as_tensor()[0].float().cpu().numpy())


# what each file of a case is (the sidecar's ``files`` / ``roles``)
ROLES = {
    "mean": "the mean of the num_samples samples: the PSNR-optimal estimate, blurred where the samples disagree",
    "sample": "one sample (the first of the num_samples; with estimator x0 the first one-step estimate): "
              "realistic-looking and sharper than the mean, but it may show structure that is not in the patient",
    "std": "per-voxel standard deviation of the samples (the field of view only, 0 outside)",
    "prediction": "the inferer's prediction (not a diffusion sampler)",
    "preview": "PNG preview of the middle slice",
}


class SaveSynthesisd(MapTransform):
    """Evaluator post-processing: writes ``<case>_<SEQ>_<suffix>.nii.gz`` (suffix ``synth``) on the grid of the
    case's first condition file, its sidecar ``<case>_<SEQ>_<suffix>.json``, plus the preview
    ``<case>_<SEQ>_<suffix>.png``; with a sampler of ``num_samples`` N > 1 (``bundle.sampler.CMRDiffSampler``) also
    ``_uncertainty`` (the item's ``std``) and the output ``synth_output`` did not choose: ``_sample`` (the item's
    ``sample``, the first sample) when ``pred`` is the mean, ``_mean`` (its ``mean``) when ``pred`` is the sample
    (``mean``, ``sample``, ``std`` (1, fov, fov, S): the sampler's outputs beside ``pred``, put into the engine
    output by ``bundle.sampler.SynthesisOutputs``). The sidecar's ``files`` names each file's role (``mean``,
    ``sample``, ``std``, ...); the roles come from the inferer's settings (``synth_output``, ``num_samples``).

    Saving only saves: ``pred`` (1, fov, fov, S) is the synthesis of the model's field of view; with ``field``
    (3, X', Y', S: the whole reoriented, resampled and normalised input field) and ``field_affine``, the whole-field
    synthesis ``pred_field`` (and ``mean_field`` / ``sample_field``; X', Y', S) and its ``field_fill`` record come
    from the inference step before it (``bundle.fill.FillFieldd``); it is mapped back onto the input's grid (MONAI
    ``ResampleToMatch``) and keeps the input's affine and header; the std is 0 outside the FOV. Without ``field``
    (old callers) ``pred`` is pasted into the native grid (0 outside the field of view).
    ``image`` (3, fov, fov, S) provides the conditions for a preview without ``field``.
    ``provenance`` (task, knobs, ``weights`` {name: path}) goes into the sidecar; inputs and weights are recorded by
    file name and md5 (absolute paths often carry patient names or ids); ``record_paths`` adds their paths.
    A case's files are written all or nothing (:func:`atomic_write_all`); outputs of an earlier sampler run of the
    same case that this run does not write (``_sample``, ``_mean``, ``_uncertainty``) are removed after it.
    """

    def __init__(self, output_dir: str | Path, target: str, conditions: Sequence[str], inferer=None,
                 keys: KeysCollection = "pred", preview: bool = True, suffix: str = "synth",
                 pred_channel: int = 0, provenance: Mapping | None = None, record_paths: bool = False) -> None:
        super().__init__(keys)
        self.output_dir, self.target, self.conditions = Path(output_dir), target, list(conditions)
        self.inferer, self.preview, self.suffix, self.pred_channel = inferer, preview, suffix, pred_channel
        self.provenance = dict(provenance or {})
        self.record_paths = flag(record_paths, "sidecar_paths")
        self.written: list[Path] = []

    @staticmethod
    def _item(d: Mapping, key: str | None) -> np.ndarray | None:
        """This item's (X, Y, S) of output ``key`` (1, X, Y, S) in ``d``, or None when absent."""
        vol = d.get(key) if key else None
        return None if vol is None else torch.as_tensor(vol).detach()[0].float().cpu().numpy()

    def roles(self) -> tuple[str, str | None, int | None, str | None]:
        """(role of ``pred``, role of the other output or None, num_samples or None, synth_output or None), from
        the inferer: a sampler (``synth_output`` and ``num_samples`` attributes) with N > 1 returns the mean or
        the sample and keeps the other; with N 1 its output is the single sample; other inferers: a prediction."""
        choice, n = getattr(self.inferer, "synth_output", None), getattr(self.inferer, "num_samples", None)
        if choice is None or n is None:
            return "prediction", None, None, None
        if int(n) == 1:
            return "sample", None, 1, str(choice)
        return str(choice), ("sample" if choice == "mean" else "mean"), int(n), str(choice)

    def weights_md5(self) -> dict:
        """``{name: file entry}`` of the provenance's weights files (:meth:`_file_entry`)."""
        return {name: self._file_entry(path) for name, path in (self.provenance.get("weights") or {}).items()
                if path is not None}

    def _file_entry(self, path: str | Path) -> dict:
        """:func:`file_entry` of a file, with this writer's ``record_paths``."""
        return file_entry(path, self.record_paths)

    def __call__(self, data: Mapping) -> dict:
        import json

        d = dict(data)
        case = case_file_stem(d["case"])
        inputs = [str(d[f"{s}_path"]) for s in SEQUENCES if f"{s}_path" in d]
        ref = str(d[f"{self.conditions[0]}_path"])
        native = nib.load(ref).shape
        pred = torch.as_tensor(d["pred"]).detach().float().cpu().numpy()[self.pred_channel]
        fov = pred.shape[0]
        base = f"{case}_{self.target}_{self.suffix}"
        out = self.output_dir / f"{base}.nii.gz"
        role, other_role, n_samples, choice = self.roles()
        u = self._item(d, "std")  # (fov, fov, S) or None
        other = self._item(d, other_role)  # (fov, fov, S) or None
        field = d.get("field")
        norm = json.loads(d["norm"]) if isinstance(d.get("norm"), str) else None
        geometry = json.loads(d["geometry"]) if isinstance(d.get("geometry"), str) else None
        if field is not None:
            if d.get("pred_field") is None:
                raise DataError("SaveSynthesisd got a `field` without its whole-field synthesis `pred_field`: run "
                                "bundle.fill.FillFieldd before it (configs/inference.yaml `fill`)")
            field = torch.as_tensor(field).detach().float().cpu()
            faff = np.asarray(torch.as_tensor(d["field_affine"]).double().cpu().numpy())
            method, feather = d["field_fill"]["method"], d["field_fill"]["feather_voxels"]

            def to_output(key: str) -> tuple[np.ndarray | None, np.ndarray]:
                """Output ``key`` -> (the whole field (X', Y', S), the volume on the input's grid)."""
                whole = np.asarray(d[f"{key}_field"])
                return whole, np.clip(to_input_grid(whole, faff, ref), 0, 1)
        else:
            method, feather = "none (0 outside the field of view)", None

            def to_output(key: str) -> tuple[np.ndarray | None, np.ndarray]:
                fov_vol = pred if key == "pred" else self._item(d, key)
                return None, paste_fov(fov_vol, native)
        whole, vol = to_output("pred")
        t = SEQUENCES.index(self.target)
        win = norm[t] if norm else None
        if win and win.get("present"):
            units = (f"[0,1]=[p{win['percentiles'][0]},p{win['percentiles'][1]}] of FOV" if win["signed"]
                     else f"[0,1]=[0,p{win['percentiles'][1]}] of FOV")
        else:
            units = "[0,1]=target window [0,p99.5] of FOV (training protocol)"
        descrip = f"CMRDiff {self.provenance.get('task', '')} {self.target} {self.suffix} {units}"
        niftis = [(out, nifti_writer(vol, ref, out, inputs, descrip=descrip))]
        files = {out.name: role}
        if other is not None:
            opath = self.output_dir / f"{case}_{self.target}_{other_role}.nii.gz"
            niftis.append((opath, nifti_writer(to_output(other_role)[1], ref, opath, inputs,
                                               descrip=f"CMRDiff {self.provenance.get('task', '')} {self.target} "
                                                       f"{other_role} {units}")))
            files[opath.name] = other_role
        if u is not None:
            uvol = paste_fov(u, field.shape[1:]) if field is not None else None
            uvol = np.clip(to_input_grid(uvol, faff, ref), 0, None) if uvol is not None else paste_fov(u, native)
            upath = self.output_dir / f"{case}_{self.target}_uncertainty.nii.gz"
            niftis.append((upath, nifti_writer(uvol, ref, upath, inputs,
                                               descrip=f"CMRDiff {self.target} std of samples, FOV only")))
            files[upath.name] = "std"
        png = self.output_dir / f"{base}.png"
        if self.preview:
            files[png.name] = "preview"
        sidecar = {
            "file": out.name, "case": case, "target": self.target, "conditions": self.conditions,
            "inputs": {s: self._file_entry(d[f"{s}_path"]) for s in SEQUENCES if f"{s}_path" in d},
            "units": "normalised [0, 1], not scanner units: 0 and 1 are the ends of the target sequence's "
                     "intensity window (training protocol [0, p99.5] of the field of view; a given signed reference: "
                     "its [p0.5, p99.5]); see `descrip` and `normalisation`",
            "descrip": descrip[:79],
            "synth_output": choice, "num_samples": n_samples,
            "files": files, "roles": {r: ROLES[r] for r in dict.fromkeys(files.values())},
            **{k: v for k, v in self.provenance.items() if k != "weights"},
            "weights": self.weights_md5(),
            "normalisation": norm,
            "geometry": dict(geometry or {}, fov_voxels=fov,
                             fov_mm=None if not geometry or geometry.get("target_spacing_mm") is None
                             else round(fov * geometry["target_spacing_mm"], 2)),
            "whole_field": {"method": method, "feather_voxels": feather,
                            "note": "the field of view is synthesized by the model; outside it, by `method`, "
                                    "blended over `feather_voxels` at the FOV border"},
            "outputs": [p.name for p, _ in niftis],
        }
        js = self.output_dir / f"{base}.json"
        items = [*niftis, (js, lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2)))]
        if self.preview:
            s = pred.shape[-1] // 2
            if field is not None:
                img, syn = field.numpy(), whole
            else:
                img, syn = torch.as_tensor(d["image"]).float().cpu().numpy(), pred
            tiles = [img[SEQUENCES.index(c), :, :, s] for c in self.conditions] + [syn[:, :, s]]
            title = f"{self.target} {self.suffix}" + (f" ({role})" if other_role and role != "mean" else "")
            titles = [f"{c} (input)" for c in self.conditions] + [title]
            if d.get("present", [True] * 3)[SEQUENCES.index(self.target)]:
                ref_img = img[SEQUENCES.index(self.target), :, :, s]
                tiles += [ref_img, np.abs(syn[:, :, s] - ref_img)]
                titles += [f"{self.target} reference", "|error|"]
            items.append((png, png_writer(tiles, titles)))
        self.written += atomic_write_all(items)
        if n_samples is not None:  # a sampler's run: its files of an earlier run with other settings would mislead
            keep = {p.resolve() for p, _ in items} | {Path(q).resolve() for q in inputs}
            for r in ("sample", "mean", "uncertainty"):
                stale = self.output_dir / f"{case}_{self.target}_{r}.nii.gz"
                if stale.is_file() and stale.resolve() not in keep:
                    stale.unlink()
        return d

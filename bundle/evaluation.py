"""Evaluation protocol: per-slice PSNR and SSIM of the synthesis against the reference sequence, on the
model's 256×256 field of view (after the in-plane resampling to ``target_spacing``: 186.6 mm; or the native grid with
``target_spacing: native``) in normalised [0, 1] units (data range 1), over the whole field of view and
inside the myocardium ({200, 1220, 2221}: PSNR over its voxels, SSIM over its bounding box), plus the clinical
fidelity and realism columns of :mod:`bundle.clinical` (docs/clinical_metrics.md).
Writes ``metrics.csv`` (one row per slice) and ``summary.json`` (mean ± std over slices and over cases; the clinical
read-out in its ``"clinical"`` section)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.metrics import PSNRMetric, SSIMMetric

from bundle import clinical
from bundle.atomic import atomic_write
from bundle.realism import C2STCollector
from bundle.clinical import CLINICAL_COLUMNS
from bundle.data import SEQUENCES, DataError

COLUMNS = ("psnr", "ssim", "myo_psnr", "myo_ssim")
PSNR_CAP = 120.0  # dB, = an MSE of 1e-12 (data range 1)


def slice_metrics(pred: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """Metrics of one slice: pred, ref (X, Y) in [0, 1]; mask (X, Y) myocardium or None (-> NaN myo metrics)."""
    p, r = pred.float()[None, None], ref.float()[None, None]
    # identical images: PSNR capped at 120 dB (MSE floor 1e-12) like the myocardium PSNR, not inf
    out = {"psnr": min(float(PSNRMetric(max_val=1.0)(p, r).item()), PSNR_CAP),
           "ssim": float(SSIMMetric(spatial_dims=2, data_range=1.0)(p, r).item()),
           "myo_psnr": math.nan, "myo_ssim": math.nan}
    if mask is not None and mask.sum() > 0:
        m = mask.bool()
        mse = float(((pred.float() - ref.float())[m] ** 2).mean())
        out["myo_psnr"] = 10 * math.log10(1.0 / max(mse, 1e-12))
        xs, ys = torch.nonzero(m, as_tuple=True)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        # the SSIM window is 11 px: grow a smaller box to 11 px (inside the image)
        x0, x1 = _grow(x0, x1, 11, pred.shape[0])
        y0, y1 = _grow(y0, y1, 11, pred.shape[1])
        out["myo_ssim"] = float(SSIMMetric(spatial_dims=2, data_range=1.0)(p[..., x0:x1, y0:y1], r[..., x0:x1, y0:y1]).item())
    return out


def _grow(a: int, b: int, n: int, size: int) -> tuple[int, int]:
    if b - a >= n:
        return a, b
    a = max(0, min(a - (n - (b - a)) // 2, size - n))
    return a, a + n


def summary_stats(values) -> dict[str, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    return {"mean": float(v.mean()) if v.size else math.nan, "std": float(v.std()) if v.size else math.nan,
            "n": int(v.size)}


class SynthesisMetrics:
    """Ignite handler for the evaluator: collects :func:`slice_metrics` and
    :func:`bundle.clinical.clinical_slice_metrics` for every slice of every case (``pred`` (1, X, Y, S) vs channel
    ``target`` of ``image`` (3, X, Y, S); ``mask`` (1, X, Y, S); ``gd`` (1, X, Y, S) MyoPS labels, optional), puts
    the means into ``engine.state.metrics`` and writes ``metrics.csv`` and ``summary.json`` to ``output_dir``.

    ``readout``: the lesion read-out, ``"auto"`` (from ``target``: DE -> ``"lge"``, T2 -> ``"t2"``, C0 -> none),
    ``"lge"``, ``"t2"`` or None. ``fwhm_fraction``, ``nsd_lge``/``nsd_t2`` (n of the n-SD threshold) and
    ``hf_cutoff`` (cycles/pixel) are the thresholds of :mod:`bundle.clinical`. The uncertainty calibration uses each
    item's ``std`` (1, X, Y, S) in the engine output when there is one (the per-voxel std of ``--num_samples`` > 1,
    put there by ``bundle.sampler.SynthesisOutputs``).
    ``c2st``: run the real-vs-synthetic patch classifier of :mod:`bundle.realism` (the ``"realism"`` section of
    summary.json, with its real-vs-real and real-vs-blurred controls)."""

    def __init__(self, output_dir: str | Path, task: str, target: str, extra: dict | None = None,
                 pred_channel: int = 0, prefix: str = "", readout: str | None = "auto",
                 fwhm_fraction: float = clinical.FWHM_FRACTION, nsd_lge: float = clinical.NSD_DEFAULT["lge"],
                 nsd_t2: float = clinical.NSD_DEFAULT["t2"], hf_cutoff: float = clinical.HF_CUTOFF,
                 c2st: bool = True) -> None:
        self.output_dir, self.task, self.target = Path(output_dir), task, SEQUENCES.index(target)
        self.extra, self.pred_channel, self.prefix = dict(extra or {}), pred_channel, prefix
        self.readout = clinical.readout_of(target) if readout == "auto" else readout
        if self.readout not in (None, *clinical.LESION_LABELS):
            raise ValueError(f"readout must be 'auto', None or one of {sorted(clinical.LESION_LABELS)}, got {readout!r}")
        self.fwhm_fraction, self.hf_cutoff = float(fwhm_fraction), float(hf_cutoff)
        self.nsd = None if self.readout is None else float({"lge": nsd_lge, "t2": nsd_t2}[self.readout])
        self.uncertainty_slices = 0
        self.rows: list[dict] = []
        self.c2st = C2STCollector() if c2st else None
        self._realism: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self) -> None:
        self.rows.clear()
        self.uncertainty_slices = 0
        self._realism = None
        if self.c2st is not None:
            self.c2st.reset()

    def iteration(self, engine: Engine) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):
            present = item.get("present", [True] * 3)
            if not bool(present[self.target]):
                raise DataError(f"case {item['case']}: evaluation needs the reference {SEQUENCES[self.target]} file")
            ref, pred = item["image"][self.target], out["pred"][self.pred_channel]
            mask = item["mask"][0] if "mask" in item else None
            gd = item.get("gd")
            gd = None if gd is None else torch.as_tensor(gd)[0].detach().cpu()
            if gd is not None and tuple(gd.shape) != tuple(pred.shape):
                gd = None  # not on the prediction's grid: no lesion read-out rather than a wrong one
            unc = out.get("std")
            unc = torch.as_tensor(unc)[0].detach().float().cpu() if unc is not None else None
            if unc is not None and tuple(unc.shape) != tuple(pred.shape):
                unc = None
            for s in range(pred.shape[-1]):
                p, r = pred[..., s].cpu(), ref[..., s].cpu()
                m = slice_metrics(p, r, None if mask is None else mask[..., s].cpu())
                c = clinical.clinical_slice_metrics(
                    p.float(), r.float(), None if gd is None else gd[..., s], self.readout,
                    std=None if unc is None else unc[..., s], fwhm_fraction=self.fwhm_fraction, nsd=self.nsd,
                    hf_cutoff=self.hf_cutoff)
                self.uncertainty_slices += unc is not None
                if self.c2st is not None:
                    self.c2st.add(p.float().numpy(), r.float().numpy(), str(item["case"]))
                self.rows.append({"task": self.task, "case": item["case"], "slice": s, **m, **c})

    def summary(self) -> dict:
        cases = sorted({r["case"] for r in self.rows})
        per_case = {c: {k: float(np.nanmean([r[k] for r in self.rows if r["case"] == c] or [math.nan]))
                        for k in COLUMNS} for c in cases}
        return {"task": self.task, "target": SEQUENCES[self.target], "cases": len(cases), "slices": len(self.rows),
                **self.extra,
                "over_slices": {k: summary_stats(r[k] for r in self.rows) for k in COLUMNS},
                "over_cases": {k: summary_stats(per_case[c][k] for c in cases) for k in COLUMNS},
                "per_case": per_case,
                "clinical": self.clinical_summary(cases),
                "realism": self.realism_summary()}

    def realism_summary(self) -> dict | None:
        """The ``"realism"`` section of summary.json: the C2ST accuracy of synthetic vs real patches and of the two
        controls (:class:`bundle.realism.C2STCollector`), computed once per run; None when ``c2st`` is off."""
        if self.c2st is None:
            return None
        if self._realism is None:
            self._realism = self.c2st.summary()
        return self._realism

    def clinical_summary(self, cases: list[str]) -> dict:
        """The ``"clinical"`` section of summary.json (see docs/clinical_metrics.md)."""
        rows = self.rows
        per_case = {c: {k: _nanmean([r[k] for r in rows if r["case"] == c]) for k in CLINICAL_COLUMNS} for c in cases}
        lesion_px = [r["lesion_px"] for r in rows]
        myo = [r for r in rows if self.readout is not None and not math.isnan(r["burden_fwhm_real"])]
        return {
            "readout": self.readout,
            "lesion_labels": list(clinical.LESION_LABELS[self.readout]) if self.readout else None,
            "fwhm_fraction": self.fwhm_fraction, "nsd": self.nsd, "hf_cutoff": self.hf_cutoff,
            "uncertainty_slices": int(self.uncertainty_slices),
            # slices with a label and a lesion; slices with myocardium but no lesion (None without a read-out)
            "slices_with_lesion": sum(1 for v in lesion_px if v > 0) if self.readout else None,
            "slices_without_lesion": sum(1 for r in myo if r["lesion_px"] == 0) if self.readout else None,
            "over_slices": {k: summary_stats(r[k] for r in rows) for k in CLINICAL_COLUMNS},
            "over_cases": {k: summary_stats(per_case[c][k] for c in cases) for k in CLINICAL_COLUMNS},
            "burden_agreement": {
                t: clinical.agreement([r[f"burden_{t}_synth"] for r in rows], [r[f"burden_{t}_real"] for r in rows])
                for t in ("fwhm", "nsd")},
            "per_case": per_case,
        }

    def completed(self, engine: Engine) -> None:
        s = self.summary()
        engine.state.metrics.update({self.prefix + k: s["over_slices"][k]["mean"] for k in COLUMNS})
        self.output_dir.mkdir(parents=True, exist_ok=True)

        def write_csv(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["task", "case", "slice", *COLUMNS, *CLINICAL_COLUMNS, "lesion_px"])
                w.writeheader()
                w.writerows({**r, **{k: f"{r[k]:.4f}" for k in (*COLUMNS, *CLINICAL_COLUMNS)},
                             "lesion_px": "nan" if math.isnan(r["lesion_px"]) else int(r["lesion_px"])}
                            for r in self.rows)

        atomic_write(self.output_dir / f"{self.prefix}metrics.csv", write_csv)
        atomic_write(self.output_dir / f"{self.prefix}summary.json", lambda tmp: Path(tmp).write_text(json.dumps(s, indent=2)))
        o = s["over_slices"]
        print(f"[{self.task}] {s['slices']} slices of {s['cases']} cases: "
              + ", ".join(f"{k} {o[k]['mean']:.4f}±{o[k]['std']:.4f}" for k in COLUMNS))
        print(f"[{self.task}] clinical: " + clinical_line(s["clinical"]))
        if s["realism"] is not None:
            r = s["realism"]
            print(f"[{self.task}] realism: C2ST {r['c2st']['accuracy']:.3f} (controls: real vs real "
                  f"{r['control_real']['accuracy']:.3f}, real vs blurred {r['control_blur']['accuracy']:.3f}; "
                  f"{r['c2st']['patches']} patches of {r['c2st']['cases']} cases)")


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else math.nan


def clinical_line(c: dict) -> str:
    """One line of the clinical section: CR, Dice (real ceiling / synth), burden R and bias, realism ratios."""
    o, a = c["over_slices"], c["burden_agreement"]
    parts = []
    if c["readout"]:
        parts += [f"{c['readout']} read-out on {c['slices_with_lesion']} lesion / {c['slices_without_lesion']} "
                  f"lesion-free slices",
                  f"CR real {o['cr_real']['mean']:.2f} synth {o['cr_synth']['mean']:.2f} "
                  f"(rel err {o['cr_rel_error']['mean']:.3f})",
                  f"Dice FWHM {o['dice_fwhm_real']['mean']:.3f}/{o['dice_fwhm_synth']['mean']:.3f}, "
                  f"{c['nsd']:g}-SD {o['dice_nsd_real']['mean']:.3f}/{o['dice_nsd_synth']['mean']:.3f} (real/synth)",
                  f"burden R FWHM {a['fwhm']['r']:.3f} nSD {a['nsd']['r']:.3f}"]
    parts += [f"HF ratio {o['hf_ratio']['mean']:.3f}", f"grad ratio {o['grad_ratio']['mean']:.3f}",
              f"unc rho {o['unc_spearman']['mean']:.3f}"]
    return ", ".join(parts)

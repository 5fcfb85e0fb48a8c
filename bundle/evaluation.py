"""Evaluation protocol: per-slice PSNR and SSIM of the synthesis against the reference sequence, on the
256×256 native field of view in normalised [0, 1] units (data range 1), over the whole field of view and
inside the myocardium ({200, 1220, 2221}: PSNR over its voxels, SSIM over its bounding box).
Writes ``metrics.csv`` (one row per slice) and ``summary.json`` (mean ± std over slices and over cases)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.metrics import PSNRMetric, SSIMMetric

from bundle.data import SEQUENCES, DataError
from bundle.io import atomic_write

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
    """Ignite handler for the evaluator: collects :func:`slice_metrics` for every slice of every case
    (``pred`` (1, X, Y, S) vs channel ``target`` of ``image`` (3, X, Y, S); ``mask`` (1, X, Y, S)), puts the means
    into ``engine.state.metrics`` and writes ``metrics.csv`` and ``summary.json`` to ``output_dir``."""

    def __init__(self, output_dir: str | Path, task: str, target: str, extra: dict | None = None,
                 pred_channel: int = 0, prefix: str = "") -> None:
        self.output_dir, self.task, self.target = Path(output_dir), task, SEQUENCES.index(target)
        self.extra, self.pred_channel, self.prefix = dict(extra or {}), pred_channel, prefix
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def iteration(self, engine: Engine) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):
            present = item.get("present", [True] * 3)
            if not bool(present[self.target]):
                raise DataError(f"case {item['case']}: evaluation needs the reference {SEQUENCES[self.target]} file")
            ref, pred = item["image"][self.target], out["pred"][self.pred_channel]
            mask = item["mask"][0] if "mask" in item else None
            for s in range(pred.shape[-1]):
                m = slice_metrics(pred[..., s].cpu(), ref[..., s].cpu(), None if mask is None else mask[..., s].cpu())
                self.rows.append({"task": self.task, "case": item["case"], "slice": s, **m})

    def summary(self) -> dict:
        cases = sorted({r["case"] for r in self.rows})
        per_case = {c: {k: float(np.nanmean([r[k] for r in self.rows if r["case"] == c] or [math.nan]))
                        for k in COLUMNS} for c in cases}
        return {"task": self.task, "target": SEQUENCES[self.target], "cases": len(cases), "slices": len(self.rows),
                **self.extra,
                "over_slices": {k: summary_stats(r[k] for r in self.rows) for k in COLUMNS},
                "over_cases": {k: summary_stats(per_case[c][k] for c in cases) for k in COLUMNS},
                "per_case": per_case}

    def completed(self, engine: Engine) -> None:
        s = self.summary()
        engine.state.metrics.update({self.prefix + k: s["over_slices"][k]["mean"] for k in COLUMNS})
        self.output_dir.mkdir(parents=True, exist_ok=True)

        def write_csv(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["task", "case", "slice", *COLUMNS])
                w.writeheader()
                w.writerows({**r, **{k: f"{r[k]:.4f}" for k in COLUMNS}} for r in self.rows)

        atomic_write(self.output_dir / f"{self.prefix}metrics.csv", write_csv)
        atomic_write(self.output_dir / f"{self.prefix}summary.json", lambda tmp: Path(tmp).write_text(json.dumps(s, indent=2)))
        o = s["over_slices"]
        print(f"[{self.task}] {s['slices']} slices of {s['cases']} cases: "
              + ", ".join(f"{k} {o[k]['mean']:.4f}±{o[k]['std']:.4f}" for k in COLUMNS))

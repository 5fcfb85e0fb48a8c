"""Print markdown rows from evaluation summary.json files (evaluate.yaml or inference_autoencoder.yaml output).

    PYTHONPATH=. .venv/bin/python scripts/summarize.py LABEL=path/to/summary.json [...]
"""

import json
import sys


def fmt(stat: dict, digits: int) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


print("| | PSNR (dB) | SSIM | myocardium PSNR (dB) | myocardium SSIM | slices / cases | case-level PSNR | case-level SSIM |")
print("|---|---|---|---|---|---|---|---|")
for arg in sys.argv[1:]:
    label, path = arg.split("=", 1)
    d = json.load(open(path))
    o, c = d["over_slices"], d["over_cases"]
    print(f"| {label} | {fmt(o['psnr'], 2)} | {fmt(o['ssim'], 3)} | {fmt(o['myo_psnr'], 2)} | {fmt(o['myo_ssim'], 3)} "
          f"| {d['slices']} / {d['cases']} | {fmt(c['psnr'], 2)} | {fmt(c['ssim'], 3)} |")

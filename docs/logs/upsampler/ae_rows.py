"""Tabulate reconstruction evaluations: python ae_rows.py output/ae_eval/<run> ... (columns C0 / DE / T2, each run's
<SEQ>_summary.json); synth_rows.py does the same for syntheses."""
import json
import sys


def row(name, files):
    """One table row over the summary.json files (one per column): PSNR | SSIM | C2ST | HF ratio | grad ratio."""
    cells = {k: [] for k in ("psnr", "ssim", "c2st", "hf", "grad")}
    for f in files:
        j = json.load(open(f))
        o, c = j["over_slices"], j["clinical"]["over_slices"]
        cells["psnr"].append(f"{o['psnr']['mean']:.2f}"); cells["ssim"].append(f"{o['ssim']['mean']:.3f}")
        cells["c2st"].append(f"{j['realism']['c2st']['accuracy']:.2f}")
        cells["hf"].append(f"{c['hf_ratio']['mean']:.2f}"); cells["grad"].append(f"{c['grad_ratio']['mean']:.2f}")
    return f"| {name} | " + " | ".join(" / ".join(v) for v in cells.values()) + " |"


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(row(d, [f"{d}/{s}_summary.json" for s in ("C0", "DE", "T2")]))

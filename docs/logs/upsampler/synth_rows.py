"""Tabulate score_synth.sh outputs: python synth_rows.py output/ae_eval/synth_<variant> ... (columns lge / t2 / bssfp)."""
import json, sys
for d in sys.argv[1:]:
    cells = {k: [] for k in ("psnr", "ssim", "c2st", "hf", "grad")}
    for t in ("lge", "t2", "bssfp"):
        j = json.load(open(f"{d}/{t}/summary.json"))
        o, c = j["over_slices"], j["clinical"]["over_slices"]
        cells["psnr"].append(f"{o['psnr']['mean']:.2f}"); cells["ssim"].append(f"{o['ssim']['mean']:.3f}")
        cells["c2st"].append(f"{j['realism']['c2st']['accuracy']:.2f}")
        cells["hf"].append(f"{c['hf_ratio']['mean']:.2f}"); cells["grad"].append(f"{c['grad_ratio']['mean']:.2f}")
    print(f"| {d} | " + " | ".join(" / ".join(v) for v in cells.values()) + " |")

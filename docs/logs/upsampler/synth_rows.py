"""Tabulate score_synth.sh outputs: python synth_rows.py output/ae_eval/synth_<variant> ... (columns lge / t2 / bssfp,
each run's <task>/summary.json)."""
import sys

from ae_rows import row

for d in sys.argv[1:]:
    print(row(d, [f"{d}/{t}/summary.json" for t in ("lge", "t2", "bssfp")]))

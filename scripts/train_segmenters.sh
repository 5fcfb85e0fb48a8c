#!/bin/bash
# The downstream-utility segmenters (issue 34; configs/train_segmenter.yaml): the fixed segmenter on all three
# sequences and the three two-sequence segmenters (the fair alternative to synthesis for each task), trained on
# train_tune with the checkpoint chosen on the tuning fold; logs in docs/logs/segmenter/. On one CPU core: ~9 min each
# (200 epochs), beside another run.
#   DATASET_DIR=../shared/data/myops2020 OUT=output/seg bash scripts/train_segmenters.sh
# EXTRA_ARGS: options passed to every run (e.g. EXTRA_ARGS='--max_epochs 120').
# then copy $OUT/models/segmenter_cpu_*.pt to models/ (or pass --segmenter_dir $OUT/models to evaluate_utility.yaml).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATASET_DIR=${DATASET_DIR:-../shared/data/myops2020}
OUT=${OUT:-output/seg}
LOGS=${LOGS:-docs/logs/segmenter}
read -r -a EXTRA <<< "${EXTRA_ARGS:-}"
mkdir -p "$LOGS"
for inputs in "['C0','DE','T2']" "['C0','T2']" "['C0','DE']" "['T2','DE']"; do
  name=$(echo "$inputs" | tr -d "[]' " | tr ',' '_')
  $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/train_segmenter.yaml']" \
    --dataset_dir "$DATASET_DIR" --train_split train_tune --val_split tune --export_checkpoint best \
    --segmenter_inputs "$inputs" --output_dir "$OUT" --export_dir "$OUT/models" ${EXTRA[@]+"${EXTRA[@]}"} > "$LOGS/segmenter_cpu_$name.log" 2>&1
  echo "$name exit $?: $(grep -E 'saved' "$LOGS/segmenter_cpu_$name.log" | tail -1)"
done

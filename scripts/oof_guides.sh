#!/usr/bin/env bash
# Out-of-fold guides for the bridge recipe's starts (configs/train_diffusion.yaml `train_guide_folds`): the guide
# recipe trained once per fold without that fold's cases, so that the diffusion model learns from the guide's errors
# on cases it has not seen (its errors on its own training cases are smaller).
#   SPLIT=train_tune|train DATASET_DIR=../shared/data/myops2020 OUT=output/oof bash scripts/oof_guides.sh [guide args]
# Folds: the MyoPS training ids of SPLIT grouped by id mod 5 (train_tune: 4 folds of 5, the tuning fold left out;
# train: 5 folds of 5). Fold r's guide goes to $OUT/g<r>/guide_cpu_any.pt (log $OUT/g<r>/train.log, headed by its
# command); all folds train side by side (OMP_NUM_THREADS=1 each). Writes $OUT/folds.txt: the value to pass as
# `--train_guide_folds`. The guide args are the guide recipe's (the shipped one: scripts/train_all.sh GUIDE_ARGS).
set -euo pipefail
DATASET_DIR=${DATASET_DIR:?set DATASET_DIR to the MyoPS 2020 folder}
SPLIT=${SPLIT:-train_tune}
OUT=${OUT:-output/oof}
PY=${PY:-.venv/bin/python}
case "$SPLIT" in   # KEEP_OUT: held out of every fold's training (and of the folds): the tuning fold, id mod 5 = 4
  train_tune) RESIDUES="0 1 2 3"
              KEEP_OUT=$($PY -c "import yaml; print(','.join(map(str, yaml.safe_load(open('configs/common.yaml'))['tuning_ids'])) + ',')") ;;
  train) RESIDUES="0 1 2 3 4"; KEEP_OUT="" ;;
  *) echo "error: SPLIT must be train_tune or train, got '$SPLIT'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
folds=()
for r in $RESIDUES; do
  ids=""
  for i in $(seq 101 125); do
    (( i % 5 == r )) && [[ ",$KEEP_OUT" != *",$i,"* ]] && ids+="${ids:+,}$i"
  done
  out=$OUT/g$r
  mkdir -p "$out"
  cmd=($PY -m monai.bundle run --config_file "['configs/common.yaml','configs/baselines/image.yaml','configs/baselines/unet_l1.yaml','configs/train_guide.yaml']"
       --dataset_dir "$DATASET_DIR" --train_split train_tune --val_split tune --tuning_ids "[$KEEP_OUT$ids]"
       --val_interval 100 --baselines_dir "$out" --export_dir "$out" "$@")
  ( echo "# command (OMP_NUM_THREADS=1, folds side by side, commit $(git rev-parse --short HEAD)): ${cmd[*]}"
    OMP_NUM_THREADS=1 PYTHONPATH=. "${cmd[@]}" ) > "$out/train.log" 2>&1 &
  folds+=("{'case_ids': [$ids], 'weights': '$out/guide_cpu_any.pt'}")
done
wait
for r in $RESIDUES; do
  [ -f "$OUT/g$r/guide_cpu_any.pt" ] || { echo "error: fold $r did not export a guide, see $OUT/g$r/train.log" >&2; exit 1; }
done
(IFS=,; echo "[${folds[*]}]") > "$OUT/folds.txt"
echo "folds: $OUT/folds.txt"

#!/usr/bin/env bash
# Train the baselines and the trained ablation of the results table (configs/baselines/), one after another,
# each within a stated wall-clock budget (seconds, TimeLimit handler; the weights at the end are exported,
# `export_checkpoint: last`: no checkpoint is picked on validation):
#   DATASET_DIR=/path/to/myops2020 bash scripts/train_baselines.sh [method ...]
# methods: linear unet_l1 pix2pix ldm_plain no_heatmap cmrdiff (default: linear unet_l1 pix2pix ldm_plain;
# `cmrdiff` = CMRDiff itself trained with the baselines' recipe into output/baselines/, the same-budget reference for
# no_heatmap). Every trained method runs its config's schedule to the end (unet_l1: 300 epochs; the latent ones:
# train_diffusion.yaml's 900 epochs, EMA, last weights exported) unless its time budget stops it first; all get the
# same augmentation (flips, rot90). Weights go to $BASELINES (default output/baselines/, not shipped), full logs to
# $BASELINES/logs/, copies without progress-bar redraws to $LOGS (default docs/logs/baselines/).
# Budgets (s): UNET_L1_S, PIX2PIX_S, LDM_S (ldm_plain, no_heatmap, cmrdiff).
# TUNE=1: train on `train_tune` and validate on `tune` (the tuning fold), into output/tune/baselines/.
# EXTRA_ARGS: options passed to every method, e.g. the same data and augmentation as CMRDiff's guide:
#   EXTRA_ARGS='--augment_affine true --extra_train_dir ../shared/data/myopspp_centre_d --extra_train_case_ids [4006,4007]'
set -euo pipefail
DATASET_DIR=${DATASET_DIR:?set DATASET_DIR to the MyoPS 2020 folder}
LOGS=${LOGS:-docs/logs/baselines}
PROFILE=${PROFILE:-cpu}
PY=${PY:-python}
UNET_L1_S=${UNET_L1_S:-864000}
PIX2PIX_S=${PIX2PIX_S:-864000}
LDM_S=${LDM_S:-864000}
SPLITS=()
read -r -a EXTRA <<< "${EXTRA_ARGS:-}"
if [ "${TUNE:-0}" = 1 ]; then
  BASELINES=${BASELINES:-output/tune/baselines}; SPLITS=(--train_split train_tune --val_split tune)
fi
BASELINES=${BASELINES:-output/baselines}
RAW=$BASELINES/logs
mkdir -p "$LOGS" "$RAW"
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(linear unet_l1 pix2pix ldm_plain)
for m in "${methods[@]}"; do
  case $m in
    linear)  files=(configs/common.yaml configs/baselines/image.yaml configs/baselines/linear.yaml configs/baselines/fit_linear.yaml)
             args=() ;;
    unet_l1) files=(configs/common.yaml configs/baselines/image.yaml configs/baselines/unet_l1.yaml)
             args=(--val_interval 20 --time_limit_s "$UNET_L1_S") ;;
    pix2pix) files=(configs/common.yaml configs/baselines/image.yaml configs/baselines/unet_l1.yaml configs/baselines/pix2pix.yaml)
             args=(--val_interval 20 --time_limit_s "$PIX2PIX_S") ;;
    ldm_plain|no_heatmap|cmrdiff)
             files=(configs/common.yaml configs/train_diffusion.yaml configs/baselines/latent.yaml)
             [ "$m" = cmrdiff ] || files+=("configs/baselines/$m.yaml")
             args=(--task any --time_limit_s "$LDM_S") ;;
    *) echo "error: unknown method $m (expected linear, unet_l1, pix2pix, ldm_plain, no_heatmap, cmrdiff)" >&2; exit 2 ;;
  esac
  list=$(printf "'%s'," "${files[@]}"); list="[${list%,}]"
  start=$(date +%s)
  echo "== $m: $PY -m monai.bundle run --config_file \"$list\" --dataset_dir $DATASET_DIR --profile $PROFILE ${args[*]} ${EXTRA[*]}"
  $PY -m monai.bundle run --config_file "$list" --dataset_dir "$DATASET_DIR" --profile "$PROFILE" \
      --baselines_dir "$BASELINES" ${args[@]+"${args[@]}"} ${SPLITS[@]+"${SPLITS[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} \
      > "$RAW/$m.log" 2>&1 || { echo "error: $m failed, see $RAW/$m.log" >&2; exit 1; }
  tr '\r' '\n' < "$RAW/$m.log" | grep -v -E '[0-9]+%\|' | grep -v -E '^\s*$' > "$LOGS/$m.log" || true
  echo "$m done in $(( $(date +%s) - start )) s: $(grep -E 'saved' "$LOGS/$m.log" | tail -1)"
done

#!/usr/bin/env bash
# Train the baselines and the trained ablation of the results table (configs/baselines/), one after another,
# each within a stated wall-clock budget (seconds, TimeLimit handler; the best validation checkpoint is exported):
#   DATASET_DIR=/path/to/myops2020 bash scripts/train_baselines.sh [method ...]
# methods: unet_l1 pix2pix ldm_plain no_heatmap cmrdiff (default: all; `cmrdiff` = CMRDiff itself trained from
# scratch with the ablations' budget, the same-budget reference for no_heatmap and ldm_plain). Weights go to output/baselines/ (not shipped),
# full logs to output/baselines/logs/, copies without progress-bar redraws to $LOGS (default docs/logs/baselines/).
# Budgets: UNET_L1_S, PIX2PIX_S, LDM_S (ldm_plain, no_heatmap, cmrdiff).
set -euo pipefail
DATASET_DIR=${DATASET_DIR:?set DATASET_DIR to the MyoPS 2020 folder}
LOGS=${LOGS:-docs/logs/baselines}
PROFILE=${PROFILE:-cpu}
PY=${PY:-python}
UNET_L1_S=${UNET_L1_S:-720}
PIX2PIX_S=${PIX2PIX_S:-720}
LDM_S=${LDM_S:-2100}
RAW=output/baselines/logs
mkdir -p "$LOGS" "$RAW"
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(unet_l1 pix2pix ldm_plain no_heatmap cmrdiff)
for m in "${methods[@]}"; do
  case $m in
    unet_l1) files=(configs/common.yaml configs/baselines/image.yaml configs/baselines/unet_l1.yaml)
             args=(--max_epochs 60 --time_limit_s "$UNET_L1_S") ;;
    pix2pix) files=(configs/common.yaml configs/baselines/image.yaml configs/baselines/unet_l1.yaml configs/baselines/pix2pix.yaml)
             args=(--max_epochs 40 --time_limit_s "$PIX2PIX_S") ;;
    ldm_plain|no_heatmap|cmrdiff)
             files=(configs/common.yaml configs/train_diffusion.yaml configs/baselines/latent.yaml)
             [ "$m" = cmrdiff ] || files+=("configs/baselines/$m.yaml")
             args=(--task any --max_epochs 450 --val_interval 50 --time_limit_s "$LDM_S") ;;
    *) echo "error: unknown method $m (expected unet_l1, pix2pix, ldm_plain, no_heatmap, cmrdiff)" >&2; exit 2 ;;
  esac
  list=$(printf "'%s'," "${files[@]}"); list="[${list%,}]"
  start=$(date +%s)
  echo "== $m: $PY -m monai.bundle run --config_file \"$list\" --dataset_dir $DATASET_DIR --profile $PROFILE ${args[*]}"
  $PY -m monai.bundle run --config_file "$list" --dataset_dir "$DATASET_DIR" --profile "$PROFILE" "${args[@]}" \
      > "$RAW/$m.log" 2>&1 || { echo "error: $m failed, see $RAW/$m.log" >&2; exit 1; }
  tr '\r' '\n' < "$RAW/$m.log" | grep -v -E '[0-9]+%\|' | grep -v -E '^\s*$' > "$LOGS/$m.log" || true
  echo "$m done in $(( $(date +%s) - start )) s: $(grep -E 'saved' "$LOGS/$m.log" | tail -1)"
done

#!/usr/bin/env bash
# Train the shipped models with the bundle's own configs: the stage-1 VAE, then the stage-2 diffusion models
# (three per-task models, the all-task `any` model and the no-heatmap-loss ablation) and the guide regressor side by side.
# The baselines of the results table: scripts/train_baselines.sh.
#   DATASET_DIR=/path/to/myops2020 OUT=output/train_all bash scripts/train_all.sh [extra monai.bundle overrides]
# Weights go to $MODELS (default $OUT/models; the diffusion models read the autoencoder trained there), logs and
# TensorBoard runs to $OUT. To ship them, copy them into models/ (large_files.yml lists their md5s).
# The guide's recipe (v0.9.0): the affine augmentation and the 10 unlabelled MyoPS++ centre-D cases 4006-4015 beside
# the MyoPS training cases ($CENTRE_D, default the folder beside $DATASET_DIR; without it the guide trains on MyoPS
# alone, which is not the shipped recipe). GUIDE_ARGS replaces these options.
set -euo pipefail
DATASET_DIR=${DATASET_DIR:?set DATASET_DIR to the MyoPS 2020 folder}
OUT=${OUT:-output/train_all}
MODELS=${MODELS:-$OUT/models}
PROFILE=${PROFILE:-cpu}
AE_LIMIT=${AE_LIMIT:-864000}
DM_LIMIT=${DM_LIMIT:-864000}
PY=${PY:-python}
mkdir -p "$OUT" "$MODELS"
CENTRE_D=${CENTRE_D:-$(dirname "$DATASET_DIR")/myopspp_centre_d}
if [ -z "${GUIDE_ARGS+x}" ]; then
  GUIDE_ARGS="--augment_affine true"
  if [ -d "$CENTRE_D" ]; then
    GUIDE_ARGS="$GUIDE_ARGS --extra_train_dir $CENTRE_D --extra_train_case_ids [4006,4007,4008,4009,4010,4011,4012,4013,4014,4015]"
  else
    echo "warning: no centre-D folder at $CENTRE_D: the guide trains on the MyoPS cases alone (not the shipped recipe)" >&2
  fi
fi
read -r -a GUIDE <<< "$GUIDE_ARGS"
# The shipped VAE and diffusion models were trained before v0.5.0 resampled the inputs to 0.729 mm: they saw the
# 256-voxel crop of the stored grid, window clipped at 0 (docs/results.md, "Shipped weights"). NATIVE_ARGS="" trains
# them on today's resampled inputs instead (not the shipped recipe). The guide (v0.9.0) was trained on resampled inputs.
NATIVE_ARGS=${NATIVE_ARGS---target_spacing native --signed_fraction none}
read -r -a NATIVE <<< "$NATIVE_ARGS"
EXTRA=("$@")
run() { $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/$1.yaml']" --dataset_dir "$DATASET_DIR" \
          --output_dir "$OUT" --models_dir "$MODELS" --export_dir "$MODELS" --profile "$PROFILE" "${@:2}" ${EXTRA[@]+"${EXTRA[@]}"}; }
start=$(date +%s)
run train_autoencoder --time_limit_s "$AE_LIMIT" ${NATIVE[@]+"${NATIVE[@]}"} > "$OUT/train_autoencoder.log" 2>&1
echo "autoencoder done in $(( $(date +%s) - start )) s"; grep -E "saved|best value" "$OUT/train_autoencoder.log" | tail -2
start=$(date +%s)
pids=()
for task in lge t2 bssfp any; do
  run train_diffusion --task "$task" --time_limit_s "$DM_LIMIT" ${NATIVE[@]+"${NATIVE[@]}"} > "$OUT/train_diffusion_$task.log" 2>&1 & pids+=($!)
done
# the guide regressor of the `guide: regression` start (configs/train_guide.yaml)
$PY -m monai.bundle run --config_file "['configs/common.yaml','configs/baselines/image.yaml','configs/baselines/unet_l1.yaml','configs/train_guide.yaml']" \
    --dataset_dir "$DATASET_DIR" --output_dir "$OUT" --export_dir "$MODELS" --profile "$PROFILE" --val_interval 20 \
    --baselines_dir "$OUT" ${GUIDE[@]+"${GUIDE[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT/train_guide.log" 2>&1 & pids+=($!)
# ablation: the `any` model without the heatmap loss (configs/baselines/no_heatmap.yaml), written to output/baselines/
$PY -m monai.bundle run --config_file "['configs/common.yaml','configs/train_diffusion.yaml','configs/baselines/latent.yaml','configs/baselines/no_heatmap.yaml']" \
    --dataset_dir "$DATASET_DIR" --output_dir "$OUT" --models_dir "$MODELS" --profile "$PROFILE" --task any --time_limit_s "$DM_LIMIT" \
    ${NATIVE[@]+"${NATIVE[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT/train_diffusion_any_noheatmap.log" 2>&1 & pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
echo "diffusion done in $(( $(date +%s) - start )) s (status $status)"
for f in "$OUT"/train_diffusion_*.log; do echo "$f: $(grep -E 'best value' "$f" | tail -1)"; done
exit $status

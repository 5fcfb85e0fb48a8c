#!/usr/bin/env bash
# Fine-tune the shipped cpu models on a second centre's unlabelled scans, then score them on a held-out fold of that
# centre and on the MyoPS validation split (issue 16 item 6; docs/results.md "Second centre").
#   CENTRE_D=../shared/data/myopspp_centre_d MYOPS_DIR=../shared/data/myops2020 bash scripts/finetune_centre_d.sh [train|eval|all]
# Recipe fixed before any score was seen (no knob chosen on the fold): the diffusion model from
# models/diffusion_cpu_any.pt, 300 epochs at lr 1e-4 (EMA as in the configs), the guide regressor from
# models/guide_cpu_any.pt, 100 epochs at lr 1e-4 with its own loss (configs/train_guide.yaml); both on cases 4006-4015, exporting their last weights; the
# in-training validation loss/PSNR is logged on cases 4014-4015 (training cases: logging only, nothing is chosen).
# Held-out fold: cases 4001-4005, never trained on.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CENTRE_D=${CENTRE_D:-../shared/data/myopspp_centre_d}
MYOPS_DIR=${MYOPS_DIR:-../shared/data/myops2020}
OUT=${OUT:-output/centre_d}
TRAIN="[4006,4007,4008,4009,4010,4011,4012,4013,4014,4015]"
LOGVAL="[4014,4015]"
FOLD="[4001,4002,4003,4004,4005]"
export PYTHONPATH=. OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
what=${1:-all}
mkdir -p "$OUT/logs"

if [[ $what == train || $what == all ]]; then
  $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/baselines/image.yaml','configs/baselines/unet_l1.yaml','configs/train_guide.yaml']" \
    --dataset_dir "$CENTRE_D" --train_case_ids "$TRAIN" --val_case_ids "$LOGVAL" \
    --init_weights models/guide_cpu_any.pt --max_epochs 100 --lr 1e-4 --baselines_dir "$OUT/guide" --export_dir "$OUT/guide" \
    > "$OUT/logs/guide_finetune.log" 2>&1
  $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/train_diffusion.yaml']" \
    --dataset_dir "$CENTRE_D" --train_case_ids "$TRAIN" --val_case_ids "$LOGVAL" --task any \
    --init_weights models/diffusion_cpu_any.pt --max_epochs 300 --lr 1e-4 --autoencoder_path models/autoencoder_cpu.pt \
    --output_dir "$OUT/train" > "$OUT/logs/diffusion_finetune.log" 2>&1
fi

if [[ $what == eval || $what == all ]]; then
  EV="['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml']"
  for model in shipped finetuned; do
    extra=()
    if [[ $model == finetuned ]]; then
      extra=(--models_dir "$OUT/train/models" --autoencoder_path models/autoencoder_cpu.pt
             --guide_weights "$OUT/guide/guide_cpu_any.pt")
    fi
    for task in lge t2 bssfp; do
      $PY -m monai.bundle run --config_file "$EV" --task $task --dataset_dir "$CENTRE_D" --case_ids "$FOLD" \
        --output_dir "$OUT/eval/${model}_centre_d/$task" "${extra[@]}" > "$OUT/logs/eval_${model}_centre_d_$task.log" 2>&1
      $PY -m monai.bundle run --config_file "$EV" --task $task --dataset_dir "$MYOPS_DIR" --split validation \
        --output_dir "$OUT/eval/${model}_myops/$task" "${extra[@]}" > "$OUT/logs/eval_${model}_myops_$task.log" 2>&1
    done
  done
  $PY - "$OUT/eval" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print("| models | data | lge PSNR / SSIM | t2 PSNR / SSIM | bssfp PSNR / SSIM |")
print("|---|---|---|---|---|")
for model in ("shipped", "finetuned"):
    for data, label in (("centre_d", "centre D fold 4001-4005"), ("myops", "MyoPS validation")):
        cells = []
        for t in ("lge", "t2", "bssfp"):
            o = json.loads((root / f"{model}_{data}" / t / "summary.json").read_text())["over_slices"]
            cells.append(f"{o['psnr']['mean']:.2f} ± {o['psnr']['std']:.2f} / {o['ssim']['mean']:.3f}")
        print(f"| {model} | {label} | " + " | ".join(cells) + " |")
EOF
fi

#!/usr/bin/env bash
# Per-task guide diagnostic after v0.18.1 (docs/history.md): B1 = the train_tune guide's recipe with --task bssfp,
# scored as the guide alone (8 views) on the tuning fold, beside G0 (output/utility_tune/guide). Usage:
#   bash guide_task.sh train   # ~20 min on two threads -> output/tune_guide_bssfp/models/guide_cpu_bssfp.pt
#   bash guide_task.sh score   # -> output/utility_tune_b1/guide/bssfp/, PSNR/SSIM and the contrast error E
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PY:-.venv/bin/python}; D=../shared/data/myops2020; O=output/utility_tune_b1
export PYTHONPATH=.
case $1 in
  train)
    $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/baselines/image.yaml','configs/baselines/unet_l1.yaml','configs/train_guide.yaml']" \
      --dataset_dir $D --val_interval 20 --train_split train_tune --val_split tune --task bssfp \
      --baselines_dir output/tune_guide_bssfp --output_dir output/tune_guide_bssfp > output/tune_guide_bssfp.log 2>&1 ;;
  score)
    $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml','configs/baselines/image.yaml','configs/baselines/evaluate_image.yaml']" \
      --task bssfp --dataset_dir $D --split tune --output_dir $O/guide/bssfp --method guide \
      --baseline_weights output/tune_guide_bssfp/models/guide_cpu_bssfp.pt > $O.guide.bssfp.log 2>&1
    for g in output/utility_tune $O; do
      $PY -c "import json; o=json.load(open('$g/guide/bssfp/summary.json'))['over_slices']; print('bssfp', '$g', round(o['psnr']['mean'],3), round(o['ssim']['mean'],4))"
    done
    $PY docs/logs/segmenter/blood_contrast.py --split tune --results $O --methods guide 2>/dev/null | sed -n '/bssfp/,$p' ;;
  *) echo "usage: guide_task.sh train | score" >&2; exit 2 ;;
esac

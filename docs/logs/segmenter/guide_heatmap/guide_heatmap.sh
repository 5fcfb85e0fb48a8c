#!/usr/bin/env bash
# The guide-heatmap round after v0.18.1 (issue 34; rule in docs/history.md): G1 = the train_tune guide's recipe with the
# heatmap region myocardium + LV + RV, scored as the guide alone (8 views) on the tuning fold with the shipped
# segmenters, beside G0 (output/tune_guide, scored by channel_aug/tune_utility.sh).
#   training (OMP 2, ~20 min): cd /work/main && .venv/bin/python -m monai.bundle run --config_file \
#     "['configs/common.yaml','configs/baselines/image.yaml','configs/baselines/unet_l1.yaml','configs/train_guide.yaml']" \
#     --dataset_dir ../shared/data/myops2020 --val_interval 20 --train_split train_tune --val_split tune \
#     --baselines_dir output/tune_guide_g1 --output_dir output/tune_guide_g1 --volume_transforms#transforms#7#labels "[200,1220,2221,500,600]"
#   then: bash guide_heatmap.sh   (writes output/utility_tune_g1/; numbers: python blood_contrast.py / the utility.md)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PY:-.venv/bin/python}; D=../shared/data/myops2020; O=output/utility_tune_g1
export PYTHONPATH=.
for task in lge t2 bssfp; do
  $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml','configs/baselines/image.yaml','configs/baselines/evaluate_image.yaml']" \
    --task $task --dataset_dir $D --split tune --output_dir $O/guide/$task --method guide \
    --baseline_weights output/tune_guide_g1/models/guide_cpu_any.pt > $O.guide.$task.log 2>&1
done
$PY -m monai.bundle run --config_file "['configs/common.yaml','configs/train_segmenter.yaml','configs/evaluate_utility.yaml']" \
  --dataset_dir $D --split tune --results_dir $O --utility_methods "['guide']" --segmenter_dir models --output_dir $O/seg_shipped > $O.seg.log 2>&1
cat $O/seg_shipped/utility.md
for t in lge t2 bssfp; do for g in output/utility_tune output/utility_tune_g1; do
  $PY -c "import json,sys; o=json.load(open('$g/guide/$t/summary.json'))['over_slices']; print('$t', '$g', round(o['psnr']['mean'],3), round(o['ssim']['mean'],4))"
done; done
$PY docs/logs/segmenter/blood_contrast.py --split tune --results $O --methods guide

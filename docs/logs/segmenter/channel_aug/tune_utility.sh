#!/usr/bin/env bash
# The utility round after v0.18.0 (issue 34; rule in docs/history.md): the segmenters' Dice on the tuning fold with the
# target sequence real, zeros, the two-sequence segmenter, and synthesized by the tuning-fold twins (the diffusion model
# output/tune/models and the guide output/tune_guide, both trained on train_tune): CMRDiff's default chain and the guide
# alone (8 views). Usage:
#   bash tune_utility.sh synth                 # the syntheses, output/utility_tune/{cmrdiff,guide}/<task>/
#   bash tune_utility.sh score <name> <dir>    # utility with the segmenters in <dir> -> output/utility_tune/seg_<name>/
# Candidates A / B were trained with the code of 1d9ffc6 (the channel_aug_prob knob, out again):
#   OUT=output/seg_augA LOGS=output/seg_augA/logs EXTRA_ARGS='--channel_aug_prob 0.25 --channel_blur_sigma [0.5,1.0]' bash scripts/train_segmenters.sh
#   OUT=output/seg_augB LOGS=output/seg_augB/logs EXTRA_ARGS='--channel_aug_prob 0.5 --channel_blur_sigma [0.5,2.0]' bash scripts/train_segmenters.sh
# and scored from their fixed segmenter (the rule's M and R need no other): score A_partial output/seg_augA/models.
# Numbers: python tune_rule.py <dir with utility.json> ... (rule_scores.log; the tables utility_tune_*.md).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PY:-.venv/bin/python}; D=../shared/data/myops2020; O=output/utility_tune
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=.
EVAL="'configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml'"
case $1 in
  synth)
    mkdir -p $O
    for task in lge t2 bssfp; do
      $PY -m monai.bundle run --config_file "[$EVAL]" --task $task --dataset_dir $D --split tune \
        --output_dir $O/cmrdiff/$task --models_dir output/tune/models --autoencoder_path models/autoencoder_cpu.pt \
        --guide_weights output/tune_guide/models/guide_cpu_any.pt > $O/cmrdiff.$task.log 2>&1
      $PY -m monai.bundle run --config_file "[$EVAL,'configs/baselines/image.yaml','configs/baselines/evaluate_image.yaml']" \
        --task $task --dataset_dir $D --split tune --output_dir $O/guide/$task --method guide \
        --baseline_weights output/tune_guide/models/guide_cpu_any.pt > $O/guide.$task.log 2>&1
    done ;;
  score)
    $PY -m monai.bundle run \
      --config_file "['configs/common.yaml','configs/train_segmenter.yaml','configs/evaluate_utility.yaml']" \
      --dataset_dir $D --split tune --results_dir $O --utility_methods "['cmrdiff','guide']" \
      --segmenter_dir "$3" --output_dir $O/seg_$2 > $O/seg_$2.log 2>&1
    cat $O/seg_$2/utility.md ;;
  *) echo "usage: tune_utility.sh synth | score <name> <segmenter dir>" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Per-task diffusion models on the tuning fold (issues 31 and 34; rule in docs/history.md, "After v0.18.1: per-task
# diffusion models"). The models: train.sh here (the twin's command plus --task <t>, 900 epochs each). Usage:
#   [TASKS="t2 lge"] bash score.sh synth <candidate>   # syntheses -> output/utility_tune_pt/<candidate>/<task>/ (summary.json, NIfTI)
#   bash score.sh utility             # the shipped segmenters on P2, P4 -> output/utility_tune_pt/seg/utility.md
# Candidates: P2 = the per-task models with the default sampler (strength 0.2, 16 samples over 8 views);
# P4 = the same at strength 0.4; Q4 = one sample at strength 0.4 (the sampler round's S2 settings; diagnostic).
# Reference A: the shared twin's default chain, output/utility_tune/cmrdiff (channel_aug/tune_utility.sh synth).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PY:-.venv/bin/python}; D=../shared/data/myops2020; O=output/utility_tune_pt
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=.
mkdir -p $O output/tune_pt/models
for t in lge t2 bssfp; do ln -sf ../$t/models/diffusion_cpu_$t.pt output/tune_pt/models/diffusion_cpu_$t.pt; done
case $1 in
  synth)
    case $2 in
      P2) a=() ;;
      P4) a=(--strength 0.4) ;;
      Q4) a=(--num_samples 1 --views 1 --strength 0.4) ;;
      *) echo "unknown candidate $2" >&2; exit 2 ;;
    esac
    for task in ${TASKS:-lge t2 bssfp}; do
      $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml']" \
        --task $task --dataset_dir $D --split tune --output_dir $O/$2/$task --models_dir output/tune_pt/models \
        --autoencoder_path models/autoencoder_cpu.pt --guide_weights output/tune_guide/models/guide_cpu_any.pt \
        "${a[@]}" > $O/$2.$task.log 2>&1
    done ;;
  utility)
    $PY -m monai.bundle run \
      --config_file "['configs/common.yaml','configs/train_segmenter.yaml','configs/evaluate_utility.yaml']" \
      --dataset_dir $D --split tune --results_dir $O --utility_methods "['P2','P4']" \
      --segmenter_dir models --output_dir $O/seg > $O/seg.log 2>&1
    cat $O/seg/utility.md ;;
  *) echo "usage: score.sh synth P2|P4|Q4 | utility" >&2; exit 2 ;;
esac

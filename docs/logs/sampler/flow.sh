#!/usr/bin/env bash
# Rectified-flow realism round (issue 31, after v0.18.1; rule in docs/history.md, "After v0.18.1: rectified flow for
# one realistic sample"): one sample (num_samples 1, views 1) of the flow twin (train_tune, the shipped recipe plus
# --prediction_type flow; command in docs/logs/sampler/flow_train.cmd) on the tuning fold, 50 Euler steps of the
# chain, one evaluation per task; summaries under output/sampler_tune/<candidate>/<task>/.
# Usage: bash docs/logs/sampler/flow.sh F2|F4|F6|F10; tabulate:
#   (cd docs/logs/upsampler && python synth_rows.py ../../../output/sampler_tune/F2 ...)
set -euo pipefail
cd "$(dirname "$0")/../../.."
c=$1
case $c in
  F2) s=0.2 ;; F4) s=0.4 ;; F6) s=0.6 ;; F10) s=1.0 ;;
  *) echo "unknown candidate $c" >&2; exit 2 ;;
esac
mkdir -p output/sampler_tune
for task in lge t2 bssfp; do
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=. .venv/bin/python -m monai.bundle run \
    --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml']" --task $task \
    --dataset_dir ../shared/data/myops2020 --split tune --output_dir output/sampler_tune/$c/$task \
    --models_dir output/flow_tune/models --autoencoder_path models/autoencoder_cpu.pt \
    --guide_weights output/tune_guide/models/guide_cpu_any.pt --prediction_type flow \
    --num_samples 1 --views 1 --strength $s --num_inference_steps 50 > output/sampler_tune/$c.$task.log 2>&1
done

#!/usr/bin/env bash
# Round 2 scoring (run at commit 45f43a1, which has the --upsample knobs) (docs/history.md, "After v0.17.0, round 2"): the guide trained on train_tune (guide_tune.cmd) on the
# tuning fold, 8 views / 1 view, and 1 view drawn by an upsampler; one evaluation per task, each row's summary.json
# under output/ae_eval/synth_<variant>/<task>/. Usage: bash score_synth.sh <variant> [upsampler weights]
#   variant g8: 8 views; g1: 1 view; any other name: 1 view + the upsampler weights given.
set -euo pipefail
cd /work/main
v=$1; w=${2:-}
args=(--views 1)
[ "$v" = g8 ] && args=(--views 8)
[ -n "$w" ] && args+=(--upsample true --upsampler_weights "$w")
for task in lge t2 bssfp; do
  OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python -m monai.bundle run --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml','configs/baselines/image.yaml','configs/baselines/evaluate_image.yaml']" \
    --task $task --dataset_dir ../shared/data/myops2020 --split tune --output_dir output/ae_eval/synth_$v/$task --profile cpu \
    --method guide --baseline_weights output/tune_guide/models/guide_cpu_any.pt "${args[@]}" > output/ae_eval/synth_$v.$task.log 2>&1
done

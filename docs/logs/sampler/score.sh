#!/usr/bin/env bash
# The two sampler rounds after v0.18.0 (issue 31; rules in docs/history.md, "After v0.18.0"): one CMRDiff sample on the
# tuning fold from the diffusion model and the guide trained on train_tune, one evaluation per task; each row's
# summary.json under output/sampler_tune/<candidate>/<task>/. Usage: bash score.sh <candidate>
#   round 1, run at 72823b9 (the eta knob): S0–S5, one sample (num_samples 1, views 1); M0 / M1 (not needed: no
#     candidate passed): the default chain (16 samples over 8 views), eta 0 / 1;
#   round 2, run with the code of 45f43a1 (the upsampler knobs) checked out as a worktree at $WT: U1 = S0 + upsampler D,
#     U2 = S0 + E, U3 = S2 (strength 0.4) + D, the sample drawn at 256² by the upsampler.
# Tabulate: python docs/logs/upsampler/synth_rows.py output/sampler_tune/<candidate> ...
set -euo pipefail
MAIN=/work/main; WT=${WT:-/work/wt45}
up=(--num_samples 1 --views 1 --upsample true --upsampler_weights)
c=$1; code=$MAIN
case $c in
  S0) a=(--num_samples 1 --views 1 --strength 0.2 --eta 0.0) ;;
  S1) a=(--num_samples 1 --views 1 --strength 0.2 --eta 1.0) ;;
  S2) a=(--num_samples 1 --views 1 --strength 0.4 --eta 0.0) ;;
  S3) a=(--num_samples 1 --views 1 --strength 0.4 --eta 1.0) ;;
  S4) a=(--num_samples 1 --views 1 --strength 0.6 --eta 1.0) ;;
  S5) a=(--num_samples 1 --views 1 --strength 0.4 --eta 1.0 --guidance_scale_1 3.0 --guidance_scale_2 3.0) ;;
  M0) a=(--eta 0.0) ;;
  M1) a=(--eta 1.0) ;;
  U1) a=(--strength 0.2 "${up[@]}" $MAIN/output/up_d/models/upsampler_cpu.pt); code=$WT ;;
  U2) a=(--strength 0.2 "${up[@]}" $MAIN/output/up_e/models/upsampler_cpu.pt); code=$WT ;;
  U3) a=(--strength 0.4 "${up[@]}" $MAIN/output/up_d/models/upsampler_cpu.pt); code=$WT ;;
  *) echo "unknown candidate $c" >&2; exit 2 ;;
esac
mkdir -p $MAIN/output/sampler_tune
cd "$code"
for task in lge t2 bssfp; do
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=. $MAIN/.venv/bin/python -m monai.bundle run \
    --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml']" --task $task \
    --dataset_dir ../shared/data/myops2020 --split tune --output_dir $MAIN/output/sampler_tune/$c/$task \
    --models_dir $MAIN/output/tune/models --autoencoder_path $MAIN/models/autoencoder_cpu.pt \
    --guide_weights $MAIN/output/tune_guide/models/guide_cpu_any.pt "${a[@]}" > $MAIN/output/sampler_tune/$c.$task.log 2>&1
done

#!/usr/bin/env bash
# (Run at 72823b9, which has the eta knob.) Sampler round after v0.18.0 (issue 31; rule in docs/history.md, "After v0.18.0"): one CMRDiff sample on the tuning
# fold from the diffusion model and the guide trained on train_tune, one evaluation per task; each row's summary.json
# under output/sampler_tune/<candidate>/<task>/. Usage: bash score.sh <candidate>
#   S0–S5: one sample (num_samples 1, views 1); M0 / M1: the default chain (16 samples over 8 views), eta 0 / 1.
# Tabulate: python docs/logs/upsampler/synth_rows.py output/sampler_tune/<candidate> ...
set -euo pipefail
c=$1
case $c in
  S0) a=(--num_samples 1 --views 1 --strength 0.2 --eta 0.0) ;;
  S1) a=(--num_samples 1 --views 1 --strength 0.2 --eta 1.0) ;;
  S2) a=(--num_samples 1 --views 1 --strength 0.4 --eta 0.0) ;;
  S3) a=(--num_samples 1 --views 1 --strength 0.4 --eta 1.0) ;;
  S4) a=(--num_samples 1 --views 1 --strength 0.6 --eta 1.0) ;;
  S5) a=(--num_samples 1 --views 1 --strength 0.4 --eta 1.0 --guidance_scale_1 3.0 --guidance_scale_2 3.0) ;;
  M0) a=(--eta 0.0) ;;
  M1) a=(--eta 1.0) ;;
  *) echo "unknown candidate $c" >&2; exit 2 ;;
esac
mkdir -p output/sampler_tune
for task in lge t2 bssfp; do
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=. .venv/bin/python -m monai.bundle run \
    --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml']" --task $task \
    --dataset_dir ../shared/data/myops2020 --split tune --output_dir output/sampler_tune/$c/$task \
    --models_dir output/tune/models --autoencoder_path models/autoencoder_cpu.pt \
    --guide_weights output/tune_guide/models/guide_cpu_any.pt "${a[@]}" > output/sampler_tune/$c.$task.log 2>&1
done

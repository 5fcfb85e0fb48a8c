#!/usr/bin/env bash
# Sampler round 2 after v0.18.0 (issue 31; rule in docs/history.md): one CMRDiff sample (the twin diffusion model and
# guide of score.sh) drawn at 256² by the texture upsampler, with the code of 45f43a1 (the upsampler knobs; checked out
# as a worktree at $WT), on the tuning fold. Usage: bash score_upsampled.sh <candidate>
#   U1: S0 (strength 0.2) + upsampler D; U2: S0 + E; U3: S2 (strength 0.4) + D.
# Tabulate: python docs/logs/upsampler/synth_rows.py output/sampler_tune/<candidate> ...
set -euo pipefail
MAIN=/work/main; WT=${WT:-/work/wt45}
c=$1
case $c in
  U1) a=(--strength 0.2 --upsampler_weights $MAIN/output/up_d/models/upsampler_cpu.pt) ;;
  U2) a=(--strength 0.2 --upsampler_weights $MAIN/output/up_e/models/upsampler_cpu.pt) ;;
  U3) a=(--strength 0.4 --upsampler_weights $MAIN/output/up_d/models/upsampler_cpu.pt) ;;
  *) echo "unknown candidate $c" >&2; exit 2 ;;
esac
cd "$WT"
for task in lge t2 bssfp; do
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=. $MAIN/.venv/bin/python -m monai.bundle run \
    --config_file "['configs/common.yaml','configs/inference.yaml','configs/evaluate.yaml']" --task $task \
    --dataset_dir ../shared/data/myops2020 --split tune --output_dir $MAIN/output/sampler_tune/$c/$task \
    --models_dir $MAIN/output/tune/models --autoencoder_path $MAIN/models/autoencoder_cpu.pt \
    --guide_weights $MAIN/output/tune_guide/models/guide_cpu_any.pt --num_samples 1 --views 1 --upsample true \
    "${a[@]}" > $MAIN/output/sampler_tune/$c.$task.log 2>&1
done

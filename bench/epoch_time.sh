#!/usr/bin/env bash
# Seconds per epoch of the diffusion tuning recipe on real data (MyoPS train_tune, the docs/logs/tune/diff_tune_v0130.log
# command) for EPOCHS epochs (default 40), mean over epochs 6..EPOCHS; extra arguments are overrides.
#   bash bench/epoch_time.sh NAME [--latent_augment_mode batch] [--profiles#cpu#diffusion#channels "[64,128,128]"]
# Needs ../shared/data/myops2020 (or DATASET_DIR) and models/autoencoder_cpu.pt; writes under ${WORK:-/tmp/epoch_time}.
set -euo pipefail
NAME=${1:?name}; shift
cd "$(dirname "$0")/.."
W=${WORK:-/tmp/epoch_time}; mkdir -p "$W"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONPATH=. ${PY:-.venv/bin/python} -m monai.bundle run \
  --config_file "['configs/common.yaml','configs/train_diffusion.yaml']" --task any \
  --dataset_dir "${DATASET_DIR:-../shared/data/myops2020}" --output_dir "$W/$NAME" --models_dir "$W/$NAME/models" \
  --autoencoder_path models/autoencoder_cpu.pt --max_epochs "${EPOCHS:-40}" --val_interval 1000 \
  --train_split train_tune --val_split tune --export_checkpoint last "$@" > "$W/$NAME.log" 2>&1
python3 - "$W/$NAME.log" "$NAME" <<'PY'
import re, sys
t = [int(h) * 3600 + int(m) * 60 + float(s) for e, h, m, s in re.findall(
    r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)", open(sys.argv[1]).read())
    if int(e) > 5]
print(sys.argv[2], f"{sum(t) / len(t):.3f} s per epoch over {len(t)} epochs (6-{len(t) + 5})")
PY

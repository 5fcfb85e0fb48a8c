#!/usr/bin/env bash
# Stage-1 recipe sweep on a GPU machine: several cpu-profile VAE recipes trained side by side with the bundle's own
# train_autoencoder.yaml (overrides only), each sized to the same budget of ~80 min on this project's 2 CPU cores
# (epochs x the measured CPU seconds per iteration of its network). Used for the shipped models/autoencoder_cpu.pt.
#   D=<dataset dir> OUT=<out dir> AE_LIMIT=<s> bash scripts/device_vae_sweep.sh
# (on the device: D=.gpu_data, a FOV-cropped copy made by scripts/crop_fov.py, and wheels of monai, ignite, nibabel,
# fire and termcolor installed first; it ran with ROUND=1, then ROUND=2). EXTRA="--profile tiny --max_epochs 1"
# makes a quick smoke test. Writes OUT/ae_<name>.log per recipe and OUT/ae_sweep.tar.gz (weights + small
# TensorBoard event files).
set -uo pipefail
D=${D:?dataset dir}
OUT=${OUT:?output dir}
AE_LIMIT=${AE_LIMIT:-420}
PY=${PY:-python3}
WORK=${WORK:-/tmp/ae_sweep}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT" "$WORK"
run_ae() {
  local name=$1; shift
  $PY -m monai.bundle run --config_file "['configs/common.yaml','configs/train_autoencoder.yaml']" \
    --dataset_dir "$D" --output_dir "$WORK/$name" --models_dir "$WORK/$name/models" --time_limit_s "$AE_LIMIT" \
    --num_workers 2 "$@" ${EXTRA:-} > "$OUT/ae_$name.log" 2>&1
  echo "$name exit $? after $SECONDS s: $(grep -E 'best value' "$OUT/ae_$name.log" | tail -1)"
}
CH="--profiles#cpu#autoencoder#channels"
LAT="--profiles#cpu#autoencoder#latent_channels"
NRB="--profiles#cpu#autoencoder#num_res_blocks"
if [ "${ROUND:-1}" = 1 ]; then
# name         recipe (CPU s/iter on the 2-core machine, bench/bench_vae_recipes.py: 1.24 / 1.31 / 1.63 / 2.83)
run_ae ctrl   --lr 2.0e-4 &                                                           # the old recipe, to the end
run_ae lr     --lr 1.0e-3 &                                                           # 200 ep x 19 it x 1.24 s
run_ae lat8   --lr 1.0e-3 "$LAT" 8 &                                                  # 200 ep x 19 it x 1.31 s
run_ae nrb2   --lr 1.0e-3 "$LAT" 8 "$NRB" 2 --max_epochs 150 --adv_warmup_epochs 30 &  # 150 ep x 1.63 s
run_ae wide   --lr 1.0e-3 "$LAT" 8 "$CH" "[32, 64, 64]" --max_epochs 90 --adv_warmup_epochs 18 &  # 90 ep x 2.83 s
else  # round 2: around the round-1 winner (lat8), same network and epochs
run_ae noadv  --lr 1.0e-3 "$LAT" 8 --adv_weight 0.0 &
run_ae lr2    --lr 2.0e-3 "$LAT" 8 &
run_ae bs8    --lr 1.0e-3 "$LAT" 8 --batch_size 8 &
run_ae bs8lr2 --lr 2.0e-3 "$LAT" 8 --batch_size 8 --adv_weight 0.0 &
run_ae late   --lr 1.0e-3 "$LAT" 8 --adv_warmup_epochs 120 &
fi
wait
cd "$WORK" && find . \( -name '*.pt' -path '*models*' -o -name 'events.out.tfevents*' -size -1M \) -print0 \
  | tar --null -czf "$OUT/ae_sweep.tar.gz" -T - && ls -la "$OUT"

#!/usr/bin/env bash
# The tuning recipe of the diffusion model (docs/logs/tune/diff_tune.log) at git revision REV, stopped after its first
# validation: prints the tuning-fold val_loss after one epoch. Two revisions (or one with and without overrides) that
# print the same value train on the same inputs with the same random stream; used to trace what changed a recipe.
# (--max_epochs 900 keeps the recipe's cosine learning-rate schedule for that first epoch.)
#   bash scripts/first_epoch_loss.sh REV [monai.bundle overrides...]   (DATASET_DIR, default ../shared/data/myops2020)
set -euo pipefail
REV=$1; shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATASET_DIR=$(realpath "${DATASET_DIR:-$ROOT/../shared/data/myops2020}")
OUT=$ROOT/output/first_epoch/$REV
W=$(mktemp -d)/tree
git -C "$ROOT" worktree add -f --detach "$W" "$REV" -q
trap 'git -C "$ROOT" worktree remove --force "$W"' EXIT
mkdir -p "$OUT"
(cd "$W" && OMP_NUM_THREADS=1 PYTHONPATH=. exec "$ROOT/.venv/bin/python" -m monai.bundle run \
  --config_file "['configs/common.yaml','configs/train_diffusion.yaml']" --dataset_dir "$DATASET_DIR" --task any \
  --train_split train_tune --val_split tune --export_checkpoint best --output_dir "$OUT" --models_dir "$OUT/models" \
  --autoencoder_path "$ROOT/models/autoencoder_cpu.pt" --max_epochs 900 --val_interval 1 "$@" > "$OUT/train.log" 2>&1) &
pid=$!
until grep -q "Epoch\[1\] Metrics" "$OUT/train.log" 2>/dev/null || ! kill -0 $pid 2>/dev/null; do sleep 3; done
kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
grep -o "Epoch\[1\] Metrics -- val_loss: [0-9.]*" "$OUT/train.log" || { echo "no first-epoch loss: see $OUT/train.log" >&2; exit 1; }

#!/usr/bin/env bash
# Issue 14, the budget lever on a GPU machine: the CMRDiff diffusion model (cpu profile, both centres: the MyoPS
# training cases + MyoPS++ centre D 4006-4015, as the guide) trained for E epochs instead of 900, side by side:
#   tune_cd      the tuning-fold twin (train_tune + centre D, validated and exported best on `tune`), to be scored on
#                the tuning fold against the 900-epoch model before anything ships;
#   all_cd       the same recipe on all 25 training cases + centre D (the candidate shipped model, export last);
#   ldm_plain_cd the `ldm_plain` baseline on the same cases and epochs (an equal budget for the latent competitor).
# Every job is configs/common.yaml + configs/train_diffusion.yaml (+ configs/baselines/latent.yaml, ldm_plain.yaml)
# with overrides only. The slices come from caches made here by scripts/slice_cache.py (the device copy is limited to
# 64 MiB): .gpu/all.pt (--set dataset_dir=../shared/data/myops2020) and .gpu/cd.pt (--set
# dataset_dir=../shared/data/myopspp_centre_d train_case_ids=[4006,...,4015] val_case_ids=[4006]); they are the
# slices --dataset_dir ../shared/data/myops2020 --extra_train_dir ../shared/data/myopspp_centre_d
# --extra_train_case_ids [4006,...,4015] builds (unlabelled slices get the all-zero mask build_slices gives them).
# E: a PROBE_EP-epoch (40) probe of the three jobs side by side measures seconds per epoch; E = the whole hundreds of epochs
# that fit TRAIN_S seconds (capped at E_MAX). The log prints E; reproduce a model with --max_epochs E.
#   OUT=<out dir> bash scripts/device_train_long.sh        (on the device: wheels installed first, PYTHONPATH set)
# v0.11.0 ran it on an H200 as (carry: .gpu .whl; wheels of monai 1.6.1, pytorch-ignite 0.5.5, nibabel 5.4.2,
# fire 0.7.1, termcolor 3.3.0): python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:. && OUT=$OUT TRAIN_S=420 bash scripts/device_train_long.sh   (-> E = 500)
# PROBE_EP=12 E_MAX=2 makes a quick smoke test (on CPU too).
# EXTRA adds overrides to all three jobs. The wider-UNet round for a future device session (docs/results.md, round
# 16, v0.15.0): EXTRA='--profiles#cpu#diffusion#channels [64,128,128] --latent_augment_mode batch' (the flips drawn
# per batch: the per-slice MONAI transforms bound v0.11.0's loop on the GPU); score tune_cd.pt with the same channels.
set -uo pipefail
OUT=${OUT:?output dir}
PY=${PY:-python3}
W=${WORK:-/tmp/long}
TRAIN_S=${TRAIN_S:-380}
E_MAX=${E_MAX:-9000}
PROBE_EP=${PROBE_EP:-40}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT" "$W"
TUNE="['myops_training_104','myops_training_109','myops_training_114','myops_training_119','myops_training_124']"
A="torch.load('.gpu/all.pt')"
CD="[dict(s, mask=torch.zeros_like(s['image'][:1])) for s in torch.load('.gpu/cd.pt')['train']]"
TUNE_TRAIN="\$[s for s in $A['train'] if s['case'] not in $TUNE] + $CD"
TUNE_VAL="\$[s for s in $A['train'] if s['case'] in $TUNE]"
ALL_TRAIN="\$$A['train'] + $CD"
ALL_VAL="\$$A['validate']"
DIFF="['configs/common.yaml','configs/train_diffusion.yaml']"
LDM="['configs/common.yaml','configs/train_diffusion.yaml','configs/baselines/latent.yaml','configs/baselines/ldm_plain.yaml']"
job() {  # name config out_dir epochs limit train_slices val_slices [overrides...]
  local name=$1 cfg=$2 dir=$3 ep=$4 lim=$5 tr=$6 va=$7; shift 7
  $PY -m monai.bundle run --config_file "$cfg" --task any --output_dir "$dir" --baselines_dir "$dir" \
    --autoencoder_path models/autoencoder_cpu.pt --max_epochs "$ep" --time_limit_s "$lim" \
    --num_workers 2 --train#dataloader#persistent_workers true \
    --train#slices "$tr" --validate#slices "$va" "$@" ${EXTRA:-} > "$dir.log" 2>&1
  echo "$name exit $? after $SECONDS s: $(grep -E 'Key metric|saved' "$dir.log" | tail -2 | tr '\n' ' ')"
}
three() {  # prefix epochs limit val_interval
  job tune_cd "$DIFF" "$W/$1tune_cd" "$2" "$3" "$TUNE_TRAIN" "$TUNE_VAL" --val_interval "$4" \
      --train_split train_tune --val_split tune --export_checkpoint best &
  job all_cd "$DIFF" "$W/$1all_cd" "$2" "$3" "$ALL_TRAIN" "$ALL_VAL" --val_interval "$4" &
  job ldm_plain_cd "$LDM" "$W/$1ldm_plain_cd" "$2" "$3" "$ALL_TRAIN" "$ALL_VAL" --val_interval "$4" &
  wait
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
three probe_ "$PROBE_EP" 300 20
# seconds per epoch: the slowest job's mean over its trainer epochs 11-40 (after start-up); E from it
E=$($PY - "$W" "$TRAIN_S" "$E_MAX" <<'PYEOF'
import glob, re, sys
w, budget, cap = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
spe = 0.0
for f in glob.glob(f"{w}/probe_*.log"):
    t = [int(h) * 3600 + int(m) * 60 + float(s) for e, h, m, s in re.findall(
        r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)", open(f).read())
        if int(e) > 10]
    if t:
        spe = max(spe, sum(t) / len(t))
        print(f"{f}: {sum(t) / len(t):.3f} s per epoch over {len(t)} epochs", file=sys.stderr)
print(min(cap, max(100, int(budget / spe) // 100 * 100)) if spe > 0 else min(cap, 100))
PYEOF
)
echo "probe -> E = $E epochs for a ${TRAIN_S} s training window"
three "" "$E" $((TRAIN_S + 60)) 100
cp "$W/tune_cd/models/diffusion_cpu_any.pt" "$OUT/tune_cd.pt"
cp "$W/all_cd/models/diffusion_cpu_any.pt" "$OUT/all_cd.pt"
cp "$W/ldm_plain_cd/ldm_plain_cpu_any.pt" "$OUT/ldm_plain_cd.pt"
cd "$W" && tar -czf "$OUT/logs.tar.gz" *.log $(find . -name 'events.out.tfevents*' -size -2M) && ls -la "$OUT"

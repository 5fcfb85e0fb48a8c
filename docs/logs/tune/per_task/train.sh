#!/bin/bash
# Per-task diffusion twins (train_tune, 900 epochs = train_diffusion.yaml's default), issue 31/34 round.
cd "$(dirname "$0")/../../../.."
train() {  # task threads
  OMP_NUM_THREADS=$2 MKL_NUM_THREADS=$2 .venv/bin/python -m monai.bundle run \
    --config_file "['configs/common.yaml','configs/train_diffusion.yaml']" \
    --dataset_dir ../shared/data/myops2020 --task $1 --train_split train_tune --val_split tune \
    --export_checkpoint best --output_dir output/tune_pt/$1 --models_dir output/tune_pt/$1/models \
    --autoencoder_path models/autoencoder_cpu.pt > output/tune_pt/$1.log 2>&1
}
train t2 1 &
train lge 1 &
wait
train bssfp 2
echo done > output/tune_pt/DONE

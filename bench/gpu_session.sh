#!/usr/bin/env bash
# One GPU session's measurements, run from the repository root on a CUDA machine that has torch and
# e3nn but no PySCF (graphs and targets come from the trainer's cache, built beforehand on a CPU box with
#   uniham train configs/si_rattled_gpu.toml --prepare ).
# Writes JSON/CSV/PNG and the trained model into ${OUT:-gpu_out}.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:src
C=runs/si_rattled_gpu/samples.pt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, e3nn; print('torch', torch.__version__, 'e3nn', e3nn.__version__)" | tee -a "$OUT/gpu.txt"
# speed: SO(2) vs DeepH-E3-like, float32, then SO(2) with bfloat16 autocast
timeout 110 python3 bench/model_speed.py --cache $C --device cuda --kinds so2,e3 --sizes 1,2,3,4 --batch 4 > "$OUT/speed_fp32.json"
timeout 50 python3 bench/model_speed.py --cache $C --device cuda --amp --kinds so2 --sizes 1,2,3,4 --batch 4 > "$OUT/speed_amp.json"
# training (wall-clock budget in the config), then what bfloat16 inference costs on the trained model
timeout 330 python3 -m uniham.cli train configs/si_rattled_gpu.toml > "$OUT/train.json" 2> "$OUT/train.err"
tail -c 1500 "$OUT/train.err"
cp runs/si_rattled_gpu/best.pt runs/si_rattled_gpu/log.csv runs/si_rattled_gpu/learning_curve.png "$OUT/"
timeout 40 python3 bench/amp_accuracy.py runs/si_rattled_gpu/best.pt $C > "$OUT/amp.json"
cat "$OUT"/*.json

#!/usr/bin/env bash
# Equal-wall-clock A/B on one GPU: configs/db1_gpu.toml trained at batch 8 and at batch 64, one after the
# other on the same subset of db1, same seed, same time budget (the learning-rate schedule follows the clock).
# The question it answers: at a fixed GPU budget, does the larger batch (same steps per second, 8x the
# structures per step: bench/results/gpu_db1/db1_gpu_h200_batch_probe.txt) give a better model?
# Set-up as for bench/gpu_db1.sh (subset runs/db1_sub, wheels and basis in .whl, data/db1 out of the tree).
# Writes summary.txt (both runs: steps, validation MAE, GPU use), log_b{8,64}.csv and the EMA weights
# best_b{8,64}.pt (in two parts each) into ${OUT:-gpu_out}. Then, on a CPU:
#   uniham evaluate --model gpu_out/best_b8.pt --data runs/db1_sub --split test     (and best_b64.pt)
# MINUTES: the budget of each run (default 3.5); a dry run on a CPU: MINUTES=0.1.
set -u
OUT=${OUT:-gpu_out}
source "$(dirname "$0")/gpu_common.sh"
MINUTES=${MINUTES:-3.5}
S="$OUT/summary.txt"
summary_header "$S"
for B in 8 64; do
  D=runs/db1_gpu_b$B; C=$(mktemp -d)/db1_gpu_b$B.toml; mkdir -p $D
  sed -e "s/^max_minutes = .*/max_minutes = $MINUTES/" -e "s/^batch_size = .*/batch_size = $B/" \
      -e "s#^out = .*#out = \"$D\"#" configs/db1_gpu.toml > "$C"
  [ $B != 8 ] && cp runs/db1_gpu_b8/samples.pt $D/ 2>/dev/null   # same graphs and targets: the cache key has no batch
  ( sleep $(python3 -c "print(int(60 * $MINUTES * 0.6) + 20)"); \
    echo "batch $B gpu: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>&1)" >> "$S" ) &
  timeout $(python3 -c "print(int(60 * $MINUTES) + 150)") python3 -m uniham.cli train "$C" > "$OUT/train.json" 2> "$OUT/train.err"
  echo "batch $B: exit $? $(cat "$OUT/train.json")" >> "$S"
  wait
  cp $D/log.csv "$OUT/log_b$B.csv" 2>> "$S"
  ema_parts "$D/best.pt" "$OUT/best_b$B.pt" >> "$S" 2>&1   # cat best_b$B.pt.part-* > best_b$B.pt
done
tr '\r' '\n' < "$OUT/train.err" | grep -v '^ *$' | tail -n 3 >> "$S"; rm -f "$OUT/train.json" "$OUT/train.err"
cat "$S"

#!/usr/bin/env bash
# Side-by-side GPU training of the loss/normalization variants in bench/configs/ (one GPU, all runs at
# once: each run is bound by kernel-launch latency, so they share the GPU with little slow-down), plus
# the single-structure overfit (eager trainer and bench/overfit_graph.py's CUDA graph, same config). Graphs and targets come from trainer caches
# made beforehand on a CPU box (no PySCF on the GPU node):
#   uniham train configs/si_rattled_gpu.toml --prepare      -> runs/si_rattled_gpu/samples.pt
#   uniham train configs/overfit_si.toml --prepare          -> runs/overfit_si/samples.pt
#   uniham train bench/configs/v_big_si8.toml --prepare     -> runs/v_big_si8/samples.pt
# Writes logs, best.pt and learning curves into ${OUT:-gpu_out}/<variant>/.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:src OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, e3nn; print('torch', torch.__version__, 'e3nn', e3nn.__version__)" | tee -a "$OUT/gpu.txt"
for v in v_base v_ref v_ref_mse v_ref_ow v_ref_ow100 v_big; do mkdir -p runs/$v; cp runs/si_rattled_gpu/samples.pt runs/$v/; done
mkdir -p runs/overfit_eager; cp runs/overfit_si/samples.pt runs/overfit_eager/
pids=()
for v in v_base v_ref v_ref_mse v_ref_ow v_ref_ow100 v_big v_big_si8 overfit_eager; do
  [ -f runs/$v/samples.pt ] || { echo "$v: no cache, skipped"; continue; }
  timeout ${LIMIT:-500} python3 -m uniham.cli train bench/configs/$v.toml > "$OUT/$v.json" 2> "$OUT/$v.err" &
  pids+=($!)
done
timeout ${LIMIT:-500} python3 bench/overfit_graph.py bench/configs/overfit_eager.toml --minutes 7 --out "$OUT/overfit_graph" > "$OUT/overfit_graph.json" 2> "$OUT/overfit_graph.err" &
pids+=($!)
( sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv > "$OUT/gpu_util.txt" ) &
wait "${pids[@]}"
for v in v_base v_ref v_ref_mse v_ref_ow v_ref_ow100 v_big v_big_si8 overfit_eager; do
  mkdir -p "$OUT/$v"
  cp runs/$v/best.pt runs/$v/log.csv runs/$v/learning_curve.png "$OUT/$v/" 2>/dev/null
  echo "== $v"; cat "$OUT/$v.json"; tail -n 3 runs/$v/log.csv 2>/dev/null; tail -c 400 "$OUT/$v.err" | tr '\r' '\n' | tail -n 2
done
echo "== overfit_graph"; cat "$OUT/overfit_graph.json"; tail -n 3 "$OUT/overfit_graph/log.csv"; tail -c 600 "$OUT/overfit_graph.err"
# step and inference latency of the SO(2) model after the latency work (session 3, same command: 0.109 s/step)
timeout 60 python3 bench/model_speed.py --cache runs/si_rattled_gpu/samples.pt --device cuda --kinds so2 --sizes 1,4 --batch 4 > "$OUT/speed_so2.json"
cat "$OUT/speed_so2.json"

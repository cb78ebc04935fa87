#!/usr/bin/env bash
# Side-by-side GPU training of the variants in bench/configs/ (one GPU, all runs at once: each run is
# bound by kernel-launch latency, so they share the GPU), plus the single-structure overfit (the eager
# trainer and bench/overfit_graph.py's CUDA graph, same config). Graphs and targets come from trainer
# caches made beforehand on a CPU box (no PySCF on the GPU node):
#   uniham train bench/configs/v_big_si8.toml --prepare     -> runs/v_big_si8/samples.pt
#   uniham train configs/overfit_si.toml --prepare          -> runs/overfit_si/samples.pt
# The si_rattled-only runs take their samples out of the first cache (same structures, same split; the
# key below is the trainer's cache key for configs/si_rattled_gpu.toml's data, split and cutoff).
# Returns at most 8 files in ${OUT:-gpu_out}: summary.txt, logs.tgz and the EMA weights of the variants.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
W=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:src OMP_NUM_THREADS=1
S="$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, e3nn; print('torch', torch.__version__, 'e3nn', e3nn.__version__)"; } > "$S" 2>&1
python3 - <<'PY' >> "$S" 2>&1
import torch
from pathlib import Path
b = torch.load("runs/v_big_si8/samples.pt", weights_only=True)
sub = {n: [s for s in v if s["id"].startswith("si_rattled/")] for n, v in b["sets"].items()}
out = {"format": b["format"], "key": "6205498a28dbefd18d9f898f2c4395251a3942952bf01d36cd93ea15dd20e87e",
       "meta": b["meta"], "sets": sub}
for v in ("v_base", "v_ref", "v_ref_ow", "v_ref_ow100", "v_big"):
    Path(f"runs/{v}").mkdir(parents=True, exist_ok=True)
    torch.save(out, f"runs/{v}/samples.pt")
print("si_rattled samples:", {n: len(v) for n, v in sub.items()})
PY
mkdir -p runs/overfit_eager; cp runs/overfit_si/samples.pt runs/overfit_eager/
VARIANTS="v_base v_ref v_ref_ow v_ref_ow100 v_big v_big_si8 overfit_eager"
# MINUTES (optional): a shorter wall-clock budget for every run (copies of the configs)
C=bench/configs
if [ -n "${MINUTES:-}" ]; then
  C=$W/configs; mkdir -p $C
  for f in bench/configs/*.toml; do sed "s/^max_minutes = .*/max_minutes = $MINUTES/" $f > $C/$(basename $f); done
fi
sed 's/^loss = .*/loss = "mse"/' $C/overfit_eager.toml > $C/overfit_mse.toml
sed 's/^channels = .*/channels = 64/; s/^layers = .*/layers = 4/' $C/overfit_eager.toml > $C/overfit_big.toml
pids=()
for v in $VARIANTS; do
  timeout ${LIMIT:-450} python3 -m uniham.cli train $C/$v.toml > "$W/$v.json" 2> "$W/$v.err" &
  pids+=($!)
done
for o in overfit_eager overfit_mse overfit_big; do
  timeout ${LIMIT:-450} python3 bench/overfit_graph.py $C/$o.toml --minutes ${MINUTES:-6.5} --out "$W/graph_$o" > "$W/graph_$o.json" 2> "$W/graph_$o.err" &
  pids+=($!)
done
( sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv > "$W/gpu_util.txt" ) &
wait "${pids[@]}"
for v in $VARIANTS; do
  mkdir -p "$W/$v"; cp runs/$v/log.csv runs/$v/learning_curve.png "$W/$v/" 2>/dev/null
  { echo "== $v"; cat "$W/$v.json"; tail -n 3 runs/$v/log.csv; tail -c 300 "$W/$v.err" | tr '\r' '\n' | tail -n 2; } >> "$S" 2>&1
done
for o in overfit_eager overfit_mse overfit_big; do
  { echo "== graph_$o"; cat "$W/graph_$o.json"; tail -n 3 "$W/graph_$o/log.csv"; tail -c 600 "$W/graph_$o.err"; } >> "$S" 2>&1
done
cat "$W/gpu_util.txt" >> "$S"
# EMA weights only (evaluate/predict read them; the full checkpoints would not fit the transfer)
python3 - "$OUT" <<'PY' >> "$S" 2>&1
import sys, torch
for v in ("v_base", "v_ref", "v_ref_ow", "v_ref_ow100", "v_big", "v_big_si8"):
    try:
        ck = torch.load(f"runs/{v}/best.pt", weights_only=True)
    except FileNotFoundError:
        print(v, "no best.pt"); continue
    if ck.get("ema_state_dict"):
        ck["state_dict"], ck["ema_state_dict"] = ck["ema_state_dict"], None
    torch.save(ck, f"{sys.argv[1]}/{v}.pt")
PY
# step and inference latency of the SO(2) model after the latency work (session 3, same command: 0.109 s/step)
[ -n "${SPEED-1}" ] && timeout 45 python3 bench/model_speed.py --cache runs/v_base/samples.pt --device cuda --kinds so2 --sizes 1,4 --batch 4 > "$W/speed_so2.json" 2>> "$S"
cat "$W/speed_so2.json" >> "$S"
tar czf "$OUT/logs.tgz" -C "$W" .
ls -la "$OUT" >> "$S"
cat "$S"

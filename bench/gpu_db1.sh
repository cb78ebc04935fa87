#!/usr/bin/env bash
# One GPU run of configs/db1_gpu.toml: a first model across the periodic table from a subset of db1.
# Made for a lent GPU node (torch, e3nn, h5py there; no PySCF needed: H-only samples). Beforehand, here:
#   uniham dataset subset data/db1 -o runs/db1_sub --n 420       (48.7 MiB: fits the 64 MiB transfer)
#   pip download --no-deps ... -d .whl ase==3.29.0                 (see the device README)
#   mkdir -p .whl/cp2kdata && cp /usr/share/cp2k/BASIS_MOLOPT .whl/cp2kdata/   (the basis shells: orbital layout)
# and carry ["runs/db1_sub", ".whl"], data/db1 itself left out of the working tree for the call (e.g.
# `git rm -r -q --cached data/db1` + `/data/db1/` in .git/info/exclude, undone by `git reset -q -- data/db1`).
# The command there: pip install the wheels into /tmp/site (device README), PYTHONPATH=/tmp/site, then this.
# Writes summary.txt, log.csv, learning_curve.png and the EMA weights (best_ema.pt.part-*) into ${OUT:-gpu_out}.
# MINUTES overrides the config's wall-clock budget (a dry run on a CPU: MINUTES=0.2).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:src OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
[ -d .whl/cp2kdata ] && export CP2K_DATA_DIR=${CP2K_DATA_DIR:-$PWD/.whl/cp2kdata}
C=configs/db1_gpu.toml
if [ -n "${MINUTES:-}" ]; then
  C=$(mktemp -d)/db1_gpu.toml
  sed "s/^max_minutes = .*/max_minutes = $MINUTES/" configs/db1_gpu.toml > "$C"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
  python3 -c "import torch, e3nn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'e3nn', e3nn.__version__)"
  python3 -m uniham.cli dataset info runs/db1_sub | head -1; } > "$OUT/summary.txt" 2>&1
( sleep 120; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> "$OUT/summary.txt" 2>&1 ) &
timeout ${LIMIT:-540} python3 -m uniham.cli train "$C" > "$OUT/train.json" 2> "$OUT/train.err"
echo "train exit $?" >> "$OUT/summary.txt"
tr '\r' '\n' < "$OUT/train.err" | grep -v '^ *$' | tail -n 4 >> "$OUT/summary.txt"
cat "$OUT/train.json" >> "$OUT/summary.txt"; rm -f "$OUT/train.json" "$OUT/train.err"
cp runs/db1_gpu/log.csv runs/db1_gpu/learning_curve.png "$OUT/" 2>> "$OUT/summary.txt"
# the EMA weights alone (what evaluate/predict read), in parts of 15 MiB (files come back at most 16 MiB each):
#   cat best_ema.pt.part-* > runs/db1_gpu/best.pt
python3 - "$OUT" <<'PY' >> "$OUT/summary.txt" 2>&1
import sys, torch
ck = torch.load("runs/db1_gpu/best.pt", weights_only=True)
ck["state_dict"], ck["ema_state_dict"] = ck["ema_state_dict"] or ck["state_dict"], None
torch.save(ck, sys.argv[1] + "/best_ema.pt")
print("best.pt: step", ck["step"], "validation MAE", ck["best_val_mae_meV"], "meV")
PY
split -b 15M "$OUT/best_ema.pt" "$OUT/best_ema.pt.part-" && rm -f "$OUT/best_ema.pt"
cat "$OUT/summary.txt"

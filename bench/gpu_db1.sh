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
OUT=${OUT:-gpu_out}
source "$(dirname "$0")/gpu_common.sh"
C=configs/db1_gpu.toml
if [ -n "${MINUTES:-}" ]; then
  C=$(mktemp -d)/db1_gpu.toml
  sed "s/^max_minutes = .*/max_minutes = $MINUTES/" configs/db1_gpu.toml > "$C"
fi
summary_header "$OUT/summary.txt"
( sleep 120; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> "$OUT/summary.txt" 2>&1 ) &
timeout ${LIMIT:-540} python3 -m uniham.cli train "$C" > "$OUT/train.json" 2> "$OUT/train.err"
echo "train exit $?" >> "$OUT/summary.txt"
tr '\r' '\n' < "$OUT/train.err" | grep -v '^ *$' | tail -n 4 >> "$OUT/summary.txt"
cat "$OUT/train.json" >> "$OUT/summary.txt"; rm -f "$OUT/train.json" "$OUT/train.err"
cp runs/db1_gpu/log.csv runs/db1_gpu/learning_curve.png "$OUT/" 2>> "$OUT/summary.txt"
# the EMA weights alone (what evaluate/predict read): cat best_ema.pt.part-* > runs/db1_gpu/best.pt
ema_parts runs/db1_gpu/best.pt "$OUT/best_ema.pt" >> "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"

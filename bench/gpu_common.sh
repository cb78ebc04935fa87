# Sourced by the GPU bench scripts (bench/gpu_db1.sh, bench/gpu_db1_batch.sh): the environment of a lent GPU
# node, the summary's header and the export of a checkpoint's EMA weights. Expects OUT to be set.
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:src OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
[ -d .whl/cp2kdata ] && export CP2K_DATA_DIR=${CP2K_DATA_DIR:-$PWD/.whl/cp2kdata}
mkdir -p "$OUT"

# summary_header FILE: the GPU, torch/e3nn versions and the subset trained on, written to FILE
summary_header() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
    python3 -c "import torch, e3nn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'e3nn', e3nn.__version__)"
    python3 -m uniham.cli dataset info runs/db1_sub | head -1; } > "$1" 2>&1
}

# ema_parts CKPT DEST: the checkpoint with its EMA weights as the model's (what evaluate/predict read), in parts
# DEST.part-aa, -ab, ... of 15 MiB (files come back from the node at most 16 MiB each); join with
#   cat DEST.part-* > DEST
# Prints the checkpoint's step and validation MAE.
ema_parts() {
  python3 - "$1" "$2" <<'PY' || return 1
import sys, torch
ck = torch.load(sys.argv[1], weights_only=True)
ck["state_dict"], ck["ema_state_dict"] = ck["ema_state_dict"] or ck["state_dict"], None
torch.save(ck, sys.argv[2])
print("  best.pt: step", ck["step"], "validation MAE", ck["best_val_mae_meV"], "meV")
PY
  split -b 15M "$2" "$2.part-" && rm -f "$2"
}

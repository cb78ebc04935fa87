"""Test-split H MAE and band errors of the models trained by bench/gpu_variants.sh, one JSON table.

    python bench/eval_variants.py GPU_OUT [--data data/si_rattled] [--bands 6] > bench/results/variants.json

For each GPU_OUT/<variant>/best.pt (or GPU_OUT/<variant>.pt): `uniham evaluate` on the test split of its own run (structures of
--data only, so every variant is scored on the same structures), plus the steps and wall time reached.
Overfit runs (no validation set) are scored on the one structure they were trained on.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--data", default="data/si_rattled")
    ap.add_argument("--bands", type=int, default=6)
    a = ap.parse_args()
    from uniham.model.evaluate import evaluate

    rows = {}
    cks = sorted(Path(a.out).glob("*/best.pt")) + sorted(Path(a.out).glob("*.pt"))
    for ck in cks:
        name = ck.parent.name if ck.name == "best.pt" else ck.stem
        logf = ck.parent / "log.csv"
        log = list(csv.DictReader(open(logf))) if ck.name == "best.pt" and logf.exists() else []
        overfit = name.startswith("overfit")
        res = evaluate(ck, [a.data], n_bands=1 if overfit else a.bands, split="train" if overfit else "test")
        bands = res["bands"]
        last = log[-1] if log else {}
        rows[name] = {"steps": res["step"], "wall_s": float(last.get("wall_s", "nan")),
                      "val_mae_meV": float(last.get("val_mae_meV", "nan")),
                      "mae_meV": res["mae_meV"], "mae_per_orbital_pair_meV": res["mae_per_orbital_pair_meV"],
                      "n_structures": res["n_structures"],
                      "band_max_aligned_meV": float(np.mean([b["aligned_meV"] for b in bands])),
                      "band_mean_abs_aligned_meV": float(np.mean([b["aligned_mean_abs_meV"] for b in bands])),
                      "band_mean_shift_meV": float(np.mean([b["mean_shift_meV"] for b in bands])), "bands": bands}
        print(name, {k: v for k, v in rows[name].items() if k not in ("bands", "mae_per_orbital_pair_meV")}, file=sys.stderr)
    json.dump(rows, sys.stdout, indent=1)


if __name__ == "__main__":
    main()

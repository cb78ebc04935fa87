"""Does an optimized BLAS/LAPACK make CP2K faster for database structures?

Debian's cp2k links the reference libblas.so.3/liblapack.so.3 (the alternatives system picks the
implementation). This runs the same structures with the reference libraries and with OpenBLAS (serial
build, `apt-get install libopenblas0-serial`, selected for the CP2K child by LD_LIBRARY_PATH), alternating,
and reports wall times (median of --reps) and the largest |dH| between the two (meV).

    python bench/cp2k_blas.py --plan plan.json [--ids ID ...] [--reps 2] [-o OUT.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from uniham.data.build import load_plan
from uniham.data.recipe import load_recipe
from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-serial"
DEFAULT_IDS = ["proto-AB_cF8_216_c_a-CdCo-1x1x1-0", "proto-AB3_tP4_123_a_ce-FeBr-1x1x1-0"]


def run(entry, dft: dict, blas: str):
    env = os.environ.pop("LD_LIBRARY_PATH", None)
    if blas == "openblas":
        os.environ["LD_LIBRARY_PATH"] = OPENBLAS
    try:
        t0 = time.perf_counter()
        ham = run_dft(entry.atoms, Cp2kSettings(**({"n_check_kpoints": 0} | dft)))
        return time.perf_counter() - t0, ham
    finally:
        os.environ.pop("LD_LIBRARY_PATH", None)
        if env is not None:
            os.environ["LD_LIBRARY_PATH"] = env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="data/recipes/db1.toml")
    ap.add_argument("--plan", required=True)
    ap.add_argument("--ids", nargs="+", default=DEFAULT_IDS)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("-o", "--output")
    a = ap.parse_args()
    if not os.path.exists(f"{OPENBLAS}/libblas.so.3"):
        raise SystemExit(f"no OpenBLAS at {OPENBLAS}: apt-get install libopenblas0-serial")
    recipe = load_recipe(a.recipe)
    entries = {e.id: e for e in load_plan(a.plan, recipe)[0]}
    rows = []
    for sid in a.ids:
        e = entries[sid]
        times = {"reference": [], "openblas": []}
        hams = {}
        for _ in range(a.reps):
            for blas in ("reference", "openblas"):
                t, hams[blas] = run(e, dict(recipe.dft), blas)
                times[blas].append(round(t, 1))
        h0, h1 = hams["reference"].H, hams["openblas"].H
        dh = max(float(np.abs(h0[k] - h1[k]).max()) for k in set(h0) & set(h1)) * 1000
        med = {b: statistics.median(v) for b, v in times.items()}
        rows.append({"id": sid, "n_atoms": len(e.atoms), "norb": hams["reference"].norb,
                     "kmesh": hams["reference"].provenance["settings"]["kmesh"], "wall_s": times,
                     "median_s": med, "speedup": round(med["reference"] / med["openblas"], 2), "max_dH_meV": dh})
        print(json.dumps(rows[-1]), flush=True)
    out = {"rows": rows, "note": "alternating runs on the same machine; other load may be present"}
    if a.output:
        with open(a.output, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

"""Prediction time and peak memory vs number of atoms (chunked, bounded-memory inference), and DFT SCF
time for the sizes DFT can still do, measured in the same run so that speed-ups are ratios.

Structures: cubic diamond-Si supercells (8 n^3 atoms) with one vacancy per 64 atoms and 0.03 A rattles.
Each size runs in its own subprocess (its own peak RSS). DFT: CP2K with uniham's defaults (and PySCF
with --pyscf) on the sizes in --dft.

    python bench/large_predict.py --model runs/si_rattled_gpu/best.pt --reps 3,5,11,17 [--dft 1,2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

import numpy as np
from _isolated import run_case


def structure(reps: int):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(reps)
    rng = np.random.default_rng(reps)
    n_vac = len(atoms) // 64
    if n_vac:
        del atoms[rng.choice(len(atoms), n_vac, replace=False).tolist()]
    atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
    return atoms


def one_predict(model: str, reps: int, threads: int, overlap: bool, max_edges: int) -> dict:
    from uniham.model.inference import predict_large

    atoms = structure(reps)
    with tempfile.TemporaryDirectory() as tmp:
        res = predict_large(atoms, model, f"{tmp}/prediction.h5", max_edges=max_edges, overlap=overlap,
                            progress=False, threads=threads)
    return {"reps": reps, "atoms": res["atoms"], "edges": res["edges"], "chunks": res["chunks"],
            **{k: round(v, 2) for k, v in res["timing"].items()}, "peak_rss_mb": round(res["peak_rss_mb"], 1),
            "file_mb": round(res["file_mb"], 2), "threads": threads}


def one_dft(reps: int, engine: str, threads: int) -> dict:
    atoms = structure(reps)
    t0 = time.perf_counter()
    if engine == "cp2k":
        from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

        ham = run_dft(atoms, Cp2kSettings(n_check_kpoints=0, threads=threads))
    else:
        from uniham.dft.pyscf_engine import DFTSettings, run_dft

        ham = run_dft(atoms, DFTSettings(basis="DZVP-MOLOPT-SR-GTH"))
    return {"reps": reps, "atoms": len(atoms), "engine": engine, "wall_s": round(time.perf_counter() - t0, 1),
            "kmesh": ham.provenance.get("settings", {}).get("kmesh"),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--reps", default="3,5,11")
    ap.add_argument("--dft", default="", help="supercell repetitions to run DFT on (e.g. 1,2)")
    ap.add_argument("--pyscf", action="store_true", help="also PySCF on the --dft sizes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-edges", type=int, default=20000)
    ap.add_argument("--no-overlap", action="store_true")
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        kind, reps = a.one.split(":")
        if kind == "predict":
            out = one_predict(a.model, int(reps), a.threads, not a.no_overlap, a.max_edges)
        else:
            out = one_dft(int(reps), kind, a.threads)
        print(json.dumps(out))
        return
    jobs = [("predict", r) for r in a.reps.split(",") if r]
    jobs += [("cp2k", r) for r in a.dft.split(",") if r]
    if a.pyscf:
        jobs += [("pyscf", r) for r in a.dft.split(",") if r]
    rows = []
    for kind, reps in jobs:
        cmd = [sys.executable, __file__, "--model", a.model, "--threads", str(a.threads), "--max-edges",
               str(a.max_edges), "--one", f"{kind}:{reps}"] + (["--no-overlap"] if a.no_overlap else [])
        row = run_case(cmd, a.timeout, {"job": kind, "reps": reps})
        row["job"] = kind
        rows.append(row)
    pred = {r["atoms"]: r for r in rows if r["job"] == "predict" and "atoms" in r}
    summary = {}
    if len(pred) >= 2:
        sizes = sorted(pred)
        lo, hi = pred[sizes[-2]], pred[sizes[-1]]
        summary["time_ratio_largest_two"] = round(hi["total_s"] / lo["total_s"], 2)
        summary["atom_ratio_largest_two"] = round(hi["atoms"] / lo["atoms"], 2)
    for r in rows:
        if r["job"] != "predict" and "wall_s" in r:
            same = [p for p in pred.values() if p["atoms"] == r["atoms"]]
            if same:
                summary[f"speedup_vs_{r['job']}_{r['atoms']}_atoms"] = round(r["wall_s"] / same[0]["total_s"], 1)
    print(json.dumps({"model": a.model, "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()

"""Shift-invert Lanczos near E_F on supercells of a DFT Hamiltonian: SuperLU vs PARDISO, time and memory.

For each supercell (repetitions of the primitive cell of SRC, a DeepH-dock folder or any readable
Hamiltonian) and each sparse solver, one subprocess (so that peak memory is its own) assembles the sparse
H, S at the supercell's Gamma point, finds the N eigenvalues nearest E_F, and checks them against the
primitive cell's dense eigenvalues at the folded k-points (exact at any size; perfect supercells have
exactly degenerate multiplets, so distinct values are compared and multiplicities reported); below
--dense-max orbitals also against a dense solve of the supercell itself. --disorder W adds random
on-site energies in [-W/2, W/2] eV (Anderson disorder: no degeneracies, the dense check then compares
every eigenvalue; the folded check is skipped).

    python bench/eigensolvers.py SRC --reps 2x2x1,8x8x1,71x71x1 [--n 20] [--solvers superlu,pardiso]  # JSON
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
from _isolated import run_case


def _distinct(x: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    x = np.sort(x)
    return x[np.concatenate([[True], np.diff(x) > tol])]


def one(src: str, reps: tuple, n: int, solver: str, dense_max: int, disorder: float = 0.0) -> dict:
    from uniham.io import read_hamiltonian
    from uniham.properties import eigensolvers as E

    ham = read_hamiltonian(src)
    ef = ham.fermi_level
    sigma = ef + 1e-3
    t0 = time.perf_counter()
    h, s = E.supercell_matrices(ham, reps)
    if disorder:
        import scipy.sparse as sp

        h = (h + sp.diags(np.random.default_rng(0).uniform(-disorder / 2, disorder / 2, h.shape[0]))).tocsr()
    t_asm = time.perf_counter() - t0
    rss_asm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    e, info = E.eigs_near(h, s, n, sigma, solver)
    out = {"reps": list(reps), "atoms": len(ham.atoms) * int(np.prod(reps)), "orbitals": h.shape[0],
           "nnz_H": int(h.nnz), "solver": solver, "n_eigenvalues": n, "disorder_eV": disorder,
           "assemble_s": round(t_asm, 2), "factorize_s": round(info["factorize_s"], 2),
           "lanczos_s": round(info["lanczos_s"], 2),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "rss_after_assembly_mb": round(rss_asm, 1),
           "eigenvalues_minus_EF_eV": [round(float(x - ef), 6) for x in e]}
    if not disorder:
        grids = [np.arange(m) / m for m in reps]
        ks = np.array(np.meshgrid(*grids, indexing="ij")).reshape(3, -1).T
        folded = np.sort(ham.eigenvalues(ks).ravel())
        got = _distinct(e)
        # every distinct value found must be a folded eigenvalue, and those are the nearest distinct ones
        want = _distinct(folded)
        want = np.sort(want[np.argsort(np.abs(want - sigma))[:len(got)]])
        out["distinct_found"] = len(got)
        out["max_err_distinct_vs_folded_primitive_eV"] = float(np.abs(got - want).max())
    if h.shape[0] <= dense_max:
        t0 = time.perf_counter()
        dense = np.sort(E.generalized_eigh(h.toarray(), s.toarray()))
        out["dense_s"] = round(time.perf_counter() - t0, 2)
        out["max_err_vs_dense_eV"] = float(np.abs(e - np.sort(dense[np.argsort(np.abs(dense - sigma))[:n]])).max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("--reps", default="2x2x1,4x4x1,8x8x1")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--solvers", default="superlu,pardiso")
    ap.add_argument("--dense-max", type=int, default=4000)
    ap.add_argument("--disorder", type=float, default=0.0, help="random on-site energies, eV (width)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per (size, solver)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        reps, solver = a.one.split(":")
        print(json.dumps(one(a.src, tuple(int(x) for x in reps.split("x")), a.n, solver, a.dense_max, a.disorder)))
        return
    from uniham.properties.eigensolvers import available_solvers

    rows = []
    for reps in a.reps.split(","):
        for solver in a.solvers.split(","):
            if solver not in available_solvers():
                continue
            cmd = [sys.executable, __file__, a.src, "--n", str(a.n), "--dense-max", str(a.dense_max),
                   "--disorder", str(a.disorder),
                   "--one", f"{reps}:{solver}"]
            rows.append(run_case(cmd, a.timeout, {"reps": reps, "solver": solver}))
    print(json.dumps({"src": a.src, "disorder_eV": a.disorder, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

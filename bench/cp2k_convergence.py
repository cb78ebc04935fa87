"""Convergence of the CP2K engine's default settings: bands near E_F vs runs converged far beyond them.

For each system (Si, MgO, Al, h-BN monolayer, Cu) the bands of uniham's H(R), S(R) at fixed random
k-points are compared, for E within E_F +- 3 eV of the reference, between
  * the defaults (per-element cutoff rule, k-spacing 0.25 1/A rounded up to odd),
  * cutoff variants at the default k-mesh, compared with 1200 Ry (1400 Ry with Mg) at the default mesh,
  * k-mesh variants at the default cutoff, compared with k-spacing 0.15 1/A at the default cutoff,
and the defaults' total error is bounded by the sum of the two parts (cutoff and k-mesh errors are
independent to first order; a joint reference at 1400 Ry and 19x19x19 for MgO costs > 20 min here).
Errors are printed raw (absolute energies) and "aligned" (after removing the mean shift, which is the
part that matters for band structures). Each run is cached in OUTDIR so the study resumes.

    python bench/cp2k_convergence.py [OUTDIR] [SYSTEM ...]   # prints JSON
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

from uniham.dft.cp2k_engine import (
    Cp2kSettings,
    choose_cutoff,
    choose_kmesh,
    element_bases,
    run_dft,
)


def systems() -> dict[str, Atoms]:
    bn = Atoms("BN", scaled_positions=[(0, 0, 0.5), (1 / 3, 2 / 3, 0.5)],
               cell=[[2.504, 0, 0], [-1.252, 2.16853, 0], [0, 0, 20.0]], pbc=(True, True, False))
    return {"Si": bulk("Si", "diamond", a=5.431), "MgO": bulk("MgO", "rocksalt", a=4.212),
            "Al": bulk("Al", "fcc", a=4.05), "BN": bn, "Cu": bulk("Cu", "fcc", a=3.615)}


def run(outdir: Path, name: str, atoms: Atoms, ecut: float, kspacing: float, kpts: np.ndarray) -> dict:
    s = Cp2kSettings(ecut=ecut, kspacing=kspacing, n_check_kpoints=0)
    mesh = choose_kmesh(atoms, s)
    cache = outdir / f"{name}_{int(ecut)}Ry_{'x'.join(map(str, mesh))}.npz"
    if cache.exists():
        d = np.load(cache)
        return {"eigs": d["eigs"], "fermi": float(d["fermi"]), "wall_s": float(d["wall"]), "mesh": mesh}
    t0 = time.perf_counter()
    ham = run_dft(atoms, s)
    wall = time.perf_counter() - t0
    eigs = ham.eigenvalues(kpts)
    np.savez(cache, eigs=eigs, fermi=ham.fermi_level, wall=wall)
    return {"eigs": eigs, "fermi": ham.fermi_level, "wall_s": wall, "mesh": mesh}


def compare(a: dict, ref: dict, window: float = 3.0) -> dict:
    sel = np.abs(ref["eigs"] - ref["fermi"]) <= window
    d = a["eigs"][sel] - ref["eigs"][sel]
    return {"max_raw_meV": round(1000 * float(np.abs(d).max()), 3),
            "max_aligned_meV": round(1000 * float(np.abs(d - d.mean()).max()), 3),
            "mean_shift_meV": round(1000 * float(d.mean()), 3)}


def main(argv: list[str]) -> None:
    outdir = Path(argv[0] if argv else "bench_out/cp2k_convergence")
    outdir.mkdir(parents=True, exist_ok=True)
    wanted = argv[1:] or list(systems())
    rng = np.random.default_rng(1)
    result = {}
    for name in wanted:
        atoms = systems()[name]
        kpts = np.vstack([np.zeros(3), rng.uniform(-0.5, 0.5, (11, 3))]) * atoms.pbc
        default = Cp2kSettings()
        ecut0 = choose_cutoff(element_bases(atoms.get_chemical_symbols(), default), default)
        ref_ecut = 1400.0 if "Mg" in atoms.get_chemical_symbols() else 1200.0
        ref_e = run(outdir, name, atoms, ref_ecut, default.kspacing, kpts)
        ref_k = run(outdir, name, atoms, ecut0, 0.15, kpts)
        base = run(outdir, name, atoms, ecut0, default.kspacing, kpts)
        ce, ck = compare(base, ref_e), compare(base, ref_k)
        entry = {"default": {"ecut_Ry": ecut0, "kmesh": list(base["mesh"]), "wall_s": round(base["wall_s"], 1),
                             "cutoff_error": ce, "kmesh_error": ck,
                             "bound_aligned_meV": round(ce["max_aligned_meV"] + ck["max_aligned_meV"], 3),
                             "bound_raw_meV": round(ce["max_raw_meV"] + ck["max_raw_meV"], 3)},
                 "reference_cutoff": {"ecut_Ry": ref_ecut, "kmesh": list(ref_e["mesh"])},
                 "reference_kmesh": {"ecut_Ry": ecut0, "kmesh": list(ref_k["mesh"])},
                 "ecut_scan": {}, "kspacing_scan": {}}
        for ecut in sorted({400.0, 600.0, 800.0, 1000.0} - {ecut0}):
            r = run(outdir, name, atoms, ecut, default.kspacing, kpts)
            entry["ecut_scan"][str(int(ecut))] = compare(r, ref_e) | {"wall_s": round(r["wall_s"], 1)}
        for ks in (0.4, 0.3, 0.2):
            r = run(outdir, name, atoms, ecut0, ks, kpts)
            entry["kspacing_scan"][str(ks)] = compare(r, ref_k) | {"kmesh": list(r["mesh"]),
                                                                   "wall_s": round(r["wall_s"], 1)}
        result[name] = entry
        print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

"""CP2K engine throughput with the default settings: structures per hour on this machine.

Rattled (0.05 A, seeded) Si cells of 2, 8 and 16 atoms, REPEATS each, run as independent single-threaded
CP2K jobs, WORKERS at a time (one per core: the throughput setting). Printed per size: median wall of
one structure (s), its k-mesh, orbitals, and structures/hour = jobs / elapsed wall * 3600.

    python bench/cp2k_throughput.py [REPEATS] [WORKERS]   # prints JSON
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from ase.build import bulk

from uniham.dft.cp2k_engine import Cp2kSettings, run_dft


def structure(n_atoms: int, seed: int):
    if n_atoms == 2:
        atoms = bulk("Si", "diamond", a=5.431)
    else:
        atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat((n_atoms // 8, 1, 1))
    atoms.positions += np.random.default_rng(seed).normal(0, 0.05, atoms.positions.shape)
    return atoms


def one(args) -> dict:
    n_atoms, seed = args
    t0 = time.perf_counter()
    ham = run_dft(structure(n_atoms, seed), Cp2kSettings(n_check_kpoints=0, threads=1))
    return {"wall_s": time.perf_counter() - t0, "kmesh": ham.provenance["settings"]["kmesh"],
            "orbitals": ham.norb, "scf_cycles": ham.provenance["scf"]["cycles"]}


def main(argv: list[str]) -> None:
    repeats = int(argv[0]) if argv else 4
    workers = int(argv[1]) if len(argv) > 1 else 2
    out = {"workers": workers, "repeats": repeats, "settings": "defaults (DZVP-MOLOPT-SR-GTH, 500 Ry, k-spacing 0.25)"}
    for n_atoms in (2, 8, 16):
        t0 = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            res = list(pool.map(one, [(n_atoms, s) for s in range(repeats)]))
        elapsed = time.perf_counter() - t0
        out[f"Si{n_atoms}"] = {"median_wall_s": round(statistics.median(r["wall_s"] for r in res), 1),
                               "kmesh": res[0]["kmesh"], "orbitals": res[0]["orbitals"],
                               "scf_cycles": [r["scf_cycles"] for r in res],
                               "structures_per_hour": round(repeats / elapsed * 3600, 1)}
        print(json.dumps({f"Si{n_atoms}": out[f"Si{n_atoms}"]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

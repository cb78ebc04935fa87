"""Bands of db1 Hamiltonians: uniham's batched k-space against sisl's Hamiltonian (the anchor), in one run.

For each structure of data/db1 (default: ten, metals included): the SCF H(R), S(R) as stored, a default
`uniham bands` path (seekpath, 120 k), and
  - uniham: ``Hamiltonian.eigenvalues`` on the path (phases × stacked blocks as matrix products, batched
    Cholesky + eigvalsh), median of ``--repeat`` runs;
  - sisl: a ``sisl.Hamiltonian`` built from the same blocks (non-orthogonal, supercell from the R range),
    ``eigh`` per k as sisl users call it, median of the same repeats;
  - the largest |Δε| between them (eV), and the wall time of the whole default CLI ``uniham bands EXPORT``
    (reading, E_F by electron counting on its auto mesh, the path, the JSON) in a subprocess.
Prints one JSON document (bench/results/bands_vs_sisl/bands_vs_sisl_cpu.json).

    OMP_NUM_THREADS=2 python bench/bands_vs_sisl.py [--ids ID ...] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import run_meta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IDS = ["el-Cu-1x1x1-0", "el-Al-1x1x1-0", "el-Fe-1x1x1-0", "el-Si-1x1x1-0", "proto-AB2C_cF16_225_a_c_b-AsGeRu-1x1x1-0",
       "proto-AB_cF8_225_a_b-CaGa-1x1x1-0", "proto-A_hP2_194_c-Al-1x1x1-0", "layer-MoS2-1x1x1-0",
       "proto-AB3_cF16_225_a_bc-PdCd-1x1x1-0", "proto-A2BC_oC8_38_e_a_b-MnHgCu-1x1x1-0"]


def to_sisl(ham):
    """A sisl.Hamiltonian (non-orthogonal) holding exactly the blocks of a uniham Hamiltonian."""
    import scipy.sparse as sp
    import sisl

    atoms, off, n = ham.atoms, ham.orbital_offsets, ham.norb
    rs = np.array(sorted({k[:3] for k in ham.H} | {k[:3] for k in ham.S}))
    nsc = 2 * np.abs(rs).max(0) + 1
    geom = sisl.Geometry(atoms.positions, [sisl.Atom(z, orbitals=[sisl.Orbital(1.0)] * (off[i + 1] - off[i]))
                                           for i, z in enumerate(atoms.numbers)],
                         lattice=sisl.Lattice(np.asarray(atoms.cell), nsc=nsc))
    mats = []
    for blocks in (ham.H, ham.S):
        rows, cols, vals = [], [], []
        for (r1, r2, r3, i, j), b in blocks.items():
            isc = geom.lattice.sc_index([r1, r2, r3])
            rr, cc = np.meshgrid(np.arange(off[i], off[i + 1]), np.arange(off[j], off[j + 1]), indexing="ij")
            rows.append(rr.ravel()), cols.append((cc + isc * n).ravel()), vals.append(np.asarray(b).ravel())
        mats.append(sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(n, n * geom.n_s)))
    return sisl.Hamiltonian.fromsp(geom, [mats[0]], S=mats[1])


def one(sid: str, repeat: int) -> dict:
    from uniham.data.store import DatasetStore
    from uniham.properties.kpath import auto_labels, build_path

    store = DatasetStore(ROOT / "data" / "db1")
    ham = store.load(sid)
    kpts, _ = build_path(ham.atoms, auto_labels(ham.atoms), 120)
    t_u, t_s = [], []
    for _ in range(repeat):
        ham.invalidate_cache()
        t0 = time.perf_counter()
        eu = ham.eigenvalues(kpts)
        t_u.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    hs = to_sisl(ham)
    t_build = time.perf_counter() - t0
    for _ in range(repeat):
        t0 = time.perf_counter()
        es = np.array([hs.eigh(k=k) for k in kpts])
        t_s.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "uniham.cli", "dataset", "export", str(ROOT / "data" / "db1"), sid,
                        "-o", f"{tmp}/x"], check=True, capture_output=True)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "uniham.cli", "bands", f"{tmp}/x", "--json", f"{tmp}/b.json"],
                           capture_output=True, text=True)
        t_cli = time.perf_counter() - t0
    return {"id": sid, "atoms": len(ham.atoms), "orbitals": ham.norb, "lattice_vectors": len({k[:3] for k in ham.H}),
            "kpoints": len(kpts), "uniham_s": float(np.median(t_u)), "sisl_s": float(np.median(t_s)),
            "sisl_build_s": t_build, "sisl_over_uniham": float(np.median(t_s) / np.median(t_u)),
            "max_abs_diff_eV": float(np.abs(eu - es).max()), "cli_bands_s": t_cli, "cli_rc": p.returncode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", nargs="+", default=IDS)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import sisl

    rows = [one(s, a.repeat) for s in a.ids]
    print(json.dumps(run_meta() | {"threads": os.environ.get("OMP_NUM_THREADS"), "sisl": sisl.__version__,
                                   "rows": rows,
                                   "median_sisl_over_uniham": float(np.median([r["sisl_over_uniham"] for r in rows])),
                                   "max_abs_diff_eV": max(r["max_abs_diff_eV"] for r in rows),
                                   "max_cli_bands_s": max(r["cli_bands_s"] for r in rows)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

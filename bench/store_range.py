"""Band error of storing H only out to a range rule, against every block the DFT code wrote.

Usage: python bench/store_range.py FOLDER [FOLDER ...]   (`uniham dft` output folders, DZVP-MOLOPT-SR)

Rules (as `uniham.data.build.stored_range` applies them): a fixed cutoff ("10A"), each element pair's basis
range at an overlap threshold ("r1e-6": :func:`uniham.dft.cp2k_basis.overlap_range`), or the larger of the
two ("max10,r1e-6"). H beyond the rule is set to zero; S is kept whole (the dataset recomputes it over its
own range). Prints JSON: per folder and rule, the max band error (meV) at 6 random k for E <= E_F + 5 eV
and for |E - E_F| <= 3 eV, and the number of stored H elements.
"""
import json
import sys

import numpy as np

from uniham.data.build import stored_range
from uniham.hamiltonian import Hamiltonian
from uniham.io import read_hamiltonian

RULES = {"10A": (10.0, None), "r1e-6": (0.0, 1e-6), "max10,r1e-6": (10.0, 1e-6), "r3e-7": (0.0, 3e-7),
         "r1e-7": (0.0, 1e-7), "max10,r1e-7": (10.0, 1e-7)}


def main() -> None:
    ks = np.random.default_rng(1).uniform(-0.5, 0.5, (6, 3))
    out = []
    for folder in sys.argv[1:]:
        ham = read_hamiltonian(folder)
        pos, cell, sym = ham.atoms.positions, ham.atoms.cell.array, ham.atoms.get_chemical_symbols()
        ref = ham.eigenvalues(ks)
        sel, near = ref <= ham.fermi_level + 5.0, np.abs(ref - ham.fermi_level) <= 3.0
        dist = {k: np.linalg.norm(pos[k[4]] + np.array(k[:3]) @ cell - pos[k[3]]) for k in ham.H}
        row = {"folder": folder, "formula": ham.atoms.get_chemical_formula(), "n_elements_all": int(sum(v.size for v in ham.H.values())),
               "rules": {}}
        for name, (floor, eps) in RULES.items():
            reach = stored_range(sym, "DZVP-MOLOPT-SR-GTH", {"cutoff": floor, "range_eps": eps})
            keep = {k for k, d in dist.items() if d <= reach[k[3], k[4]] + 1e-9}
            H = {k: (v if k in keep else np.zeros_like(v)) for k, v in ham.H.items()}
            e = np.abs(Hamiltonian(ham.atoms, ham.basis, H, ham.S, ham.fermi_level).eigenvalues(ks) - ref) * 1000
            row["rules"][name] = {"max_band_error_meV": round(float(e[sel].max()), 3),
                                  "max_error_near_EF_meV": round(float(e[near].max()), 3) if near.any() else None,
                                  "n_elements": int(sum(ham.H[k].size for k in keep))}
        out.append(row)
        print(row["formula"], {n: r["max_band_error_meV"] for n, r in row["rules"].items()}, file=sys.stderr, flush=True)
    print(json.dumps({"window": "E <= E_F + 5 eV", "basis": "DZVP-MOLOPT-SR-GTH", "results": out}, indent=1))


if __name__ == "__main__":
    main()

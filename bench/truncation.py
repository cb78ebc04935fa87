"""Band error from truncating H(R), S(R) at a distance cutoff, against the untruncated set.

Usage: python bench/truncation.py DOCK_FOLDER [cutoffs...]   (e.g. the output of `uniham dft`)
Prints JSON: per cutoff, the number of blocks and the max band error (meV) for E <= E_F + 5 eV
at 6 random k-points.
"""
import json
import sys

import numpy as np

from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.io import read_hamiltonian


def main() -> None:
    ham = read_hamiltonian(sys.argv[1])
    cutoffs = [float(x) for x in sys.argv[2:]] or [6, 8, 10, 12, 14]
    pos, cell = ham.atoms.positions, ham.atoms.cell.array
    ks = np.random.default_rng(1).uniform(-0.5, 0.5, (6, 3))
    ref = ham.eigenvalues(ks)
    sel = ref <= ham.fermi_level + 5.0
    rows = []
    for c in cutoffs:
        def keep(key):
            return np.linalg.norm(pos[key[4]] + np.array(key[:3]) @ cell - pos[key[3]]) <= c
        cut = Hamiltonian(ham.atoms, ham.basis, {k: v for k, v in ham.H.items() if keep(k)},
                          {k: v for k, v in ham.S.items() if keep(k)}, ham.fermi_level)
        try:
            err = float(np.abs(cut.eigenvalues(ks) - ref)[sel].max()) * 1000
        except UnihamError:
            err = None  # truncated S(k) not positive definite
        rows.append({"cutoff_A": c, "n_blocks": len(cut.H), "max_band_error_meV": err})
    print(json.dumps({"source": sys.argv[1], "window": "E <= E_F + 5 eV", "results": rows}, indent=1))


if __name__ == "__main__":
    main()

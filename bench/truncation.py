"""Band error from truncating H(R), S(R) at a distance cutoff, against the untruncated set.

Usage: python bench/truncation.py DOCK_FOLDER [cutoffs...] [--h-only] [--float32]
(e.g. the output of `uniham dft`). ``--h-only`` truncates H only and keeps every S block (the dataset
situation: S is recomputed from the basis); ``--float32`` also rounds H to float32 (the stored precision).
Prints JSON: per cutoff, the number of blocks and the max band error (meV) for E <= E_F + 5 eV
and for |E - E_F| <= 3 eV at 6 random k-points.
"""
import json
import sys

import numpy as np

from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.io import read_hamiltonian


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    h_only, f32 = "--h-only" in sys.argv, "--float32" in sys.argv
    ham = read_hamiltonian(args[0])
    cutoffs = [float(x) for x in args[1:]] or [6, 8, 10, 12, 14]
    pos, cell = ham.atoms.positions, ham.atoms.cell.array
    ks = np.random.default_rng(1).uniform(-0.5, 0.5, (6, 3))
    ref = ham.eigenvalues(ks)
    sel = ref <= ham.fermi_level + 5.0
    near = np.abs(ref - ham.fermi_level) <= 3.0
    rows = []
    for c in cutoffs:
        def keep(key):
            return np.linalg.norm(pos[key[4]] + np.array(key[:3]) @ cell - pos[key[3]]) <= c
        hk = {k: (v.astype(np.float32).astype(float) if f32 else v) for k, v in ham.H.items() if keep(k)}
        sk = dict(ham.S) if h_only else {k: v for k, v in ham.S.items() if keep(k)}
        hk = hk | {k: np.zeros_like(v) for k, v in sk.items() if k not in hk}
        cut = Hamiltonian(ham.atoms, ham.basis, hk, sk, ham.fermi_level)
        try:
            d = np.abs(cut.eigenvalues(ks) - ref)
            err, err_near = float(d[sel].max()) * 1000, float(d[near].max()) * 1000
        except UnihamError:
            err = err_near = None  # truncated S(k) not positive definite
        rows.append({"cutoff_A": c, "n_blocks": sum(1 for k in ham.H if keep(k)), "max_band_error_meV": err,
                     "max_error_near_EF_meV": err_near})
    print(json.dumps({"source": args[0], "h_only": h_only, "float32": f32, "window": "E <= E_F + 5 eV",
                      "n_blocks_total": len(ham.H), "results": rows}, indent=1))


if __name__ == "__main__":
    main()

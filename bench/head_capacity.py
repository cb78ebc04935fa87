"""What the output heads can represent: DFT blocks projected onto heads that keep |m| <= MMAX in the
bond frame, and the H and band errors that projection alone causes (a floor for any training).

A block between shells l1 and l2 is a sum of irreps L = |l1 - l2| .. l1 + l2. An SO(2) head with m
truncation produces, in the frame of each bond, only components |m| <= mmax of every irrep; DFT blocks
have the rest too (a d-d delta bond is |m| = 4). This takes real DFT H(R), decomposes every off-site
block within the model cutoff into irreps (the network's own Clebsch-Gordan assembly, inverted),
drops |m| > MMAX in the bond frame, reassembles, and compares H and bands with the untouched blocks
(both truncated at the cutoff, so only the m truncation differs).

    python bench/head_capacity.py data/si_rattled --n 4 --mmax 2,3,4     # prints JSON
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def projector(layout):
    """(A, need): A (U*U, n) maps irreps coefficients (e3nn basis, ordered by (L, s), channel, M) to blocks."""
    from uniham.model.layout import BlockAssembler

    asm = BlockAssembler(layout)
    return asm.matrix(), sorted(asm.need.items())


def truncate_m(blocks: torch.Tensor, vec: torch.Tensor, layout, mmax: int, A, Ainv, need) -> torch.Tensor:
    """blocks (E, U, U) in the universal layout -> the same with |m| > mmax removed in each bond frame."""
    from uniham.model.so2 import edge_wigner

    w = edge_wigner(vec, max(L for (L, _), _ in need))
    f = (Ainv @ blocks.reshape(len(blocks), -1).T).T
    i = 0
    for (L, _), cnt in need:
        cut = torch.arange(-L, L + 1).abs() > mmax
        for _ in range(cnt):
            sl = slice(i, i + 2 * L + 1)
            xf = torch.einsum("eji,ej->ei", w[L], f[:, sl])
            xf[:, cut] = 0
            f[:, sl] = torch.einsum("eij,ej->ei", w[L], xf)
            i += 2 * L + 1
    return (A @ f.T).T.reshape(blocks.shape)


def main() -> None:
    from uniham.hamiltonian import Hamiltonian
    from uniham.model.data import discover, layout_for
    from uniham.model.predict import band_errors

    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--mmax", default="2,3,4")
    ap.add_argument("--cutoff", type=float, default=9.0)
    a = ap.parse_args()
    items = discover(a.data)[:a.n]
    layout = layout_for(items)
    A, need = projector(layout)
    Ainv = torch.linalg.inv(A)
    rows = []
    for it in items:
        ham = it.load()
        pos, cell = ham.atoms.positions, ham.atoms.cell.array
        index = {x: layout.element_index(b) for x, b in ham.basis.items()}
        sym = ham.atoms.get_chemical_symbols()
        keep = {}
        for k, blk in ham.H.items():
            d = pos[k[4]] + np.array(k[:3]) @ cell - pos[k[3]]
            if np.linalg.norm(d) <= a.cutoff:
                keep[k] = (blk, d)
        trunc = Hamiltonian(ham.atoms, ham.basis, {k: v[0] for k, v in keep.items()}, {k: ham.S[k] for k in keep},
                            ham.fermi_level, ham.n_electrons, False)
        off = [k for k in keep if not (k[:3] == (0, 0, 0) and k[3] == k[4])]
        u = layout.dim
        big = torch.zeros(len(off), u, u, dtype=torch.float64)
        mask = torch.zeros(len(off), u, u, dtype=torch.bool)
        for e, k in enumerate(off):
            ia, ib = index[sym[k[3]]], index[sym[k[4]]]
            big[e][np.ix_(ia, ib)] = torch.from_numpy(np.asarray(keep[k][0], dtype=np.float64))
            mask[e][np.ix_(ia, ib)] = True
        vec = torch.tensor(np.array([keep[k][1] for k in off]))
        row = {"id": it.id, "n_offsite_blocks": len(off)}
        for mmax in map(int, a.mmax.split(",")):
            proj = truncate_m(big, vec, layout, mmax, A, Ainv, need)
            mae = float(((proj - big).abs() * mask).sum() / mask.sum()) * 1000
            H = dict(trunc.H)
            for e, k in enumerate(off):
                ia, ib = index[sym[k[3]]], index[sym[k[4]]]
                H[k] = proj[e][np.ix_(ia, ib)].numpy()
            p = Hamiltonian(ham.atoms, ham.basis, H, trunc.S, ham.fermi_level, ham.n_electrons, False)
            be = band_errors(p, trunc)
            row[f"mmax{mmax}"] = {"h_mae_meV": mae, "band_max_meV": be["aligned_meV"],
                                  "band_mean_abs_meV": be["aligned_mean_abs_meV"]}
        rows.append(row)
    summary = {k: {q: float(np.mean([r[k][q] for r in rows])) for q in rows[0][k]} for k in rows[0] if k.startswith("mmax")}
    print(json.dumps({"data": a.data, "cutoff_A": a.cutoff, "layout": [list(x) for x in layout.counts],
                      "mean": summary, "structures": rows}, indent=1))


if __name__ == "__main__":
    main()

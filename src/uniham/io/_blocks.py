"""Split a sparse matrix given as (row, col, value, R) entries into per-atom-pair blocks."""
from __future__ import annotations

import numpy as np


def split_into_blocks(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, rvecs: np.ndarray,
                      offsets: np.ndarray, u: list[np.ndarray] | None = None) -> dict:
    """Blocks {(R1,R2,R3,i,j): (n_i, n_j)} from COO entries of the full orbital matrix.

    rows, cols: (nnz,) unit-cell orbital indices; rvecs: (nnz, 3) integer lattice vector of the
    column orbital; offsets: (n_atoms+1,) first orbital of each atom; u: optional per-atom
    orthogonal matrices applied as U_i B U_j^T (orbital-order conversion).
    """
    norb = int(offsets[-1])
    atom_of = np.searchsorted(offsets, np.arange(norb), side="right") - 1
    ia, ja = atom_of[rows], atom_of[cols]
    keys = np.column_stack([np.asarray(rvecs, dtype=np.int64), ia, ja])
    if len(keys) == 0:
        return {}
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    out: dict = {}
    for n, key in enumerate(uniq):
        sel = order[bounds[n]:bounds[n + 1]]
        i, j = int(key[3]), int(key[4])
        blk = np.zeros((offsets[i + 1] - offsets[i], offsets[j + 1] - offsets[j]))
        blk[rows[sel] - offsets[i], cols[sel] - offsets[j]] = vals[sel]
        if u is not None:
            blk = u[i] @ blk @ u[j].T
        out[tuple(int(x) for x in key)] = blk
    return out

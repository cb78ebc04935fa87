"""The sparse prediction file of large structures (written by :func:`uniham.model.inference.predict_large`).

File ``prediction.h5`` (format "uniham-sparse-2"; eV, Angstrom; only the canonical half of the off-site
blocks, H_ji(-R) = H_ij(R)^T gives the rest; H is zero beyond the edges, S beyond the overlap pairs):

    atoms/numbers (N,), atoms/positions (N, 3), atoms/cell (3, 3), atoms/pbc (3,)
    onsite/H (N, U, U) float32 [element rows/cols only, see norb]; onsite/S likewise
    edges/i, edges/j (E,) int32, edges/R (E, 3) int32, edges/offset (E + 1,) int64 into the flat values
    edges/H (sum of n_i * n_j,) float32, row-major blocks
    overlap/i, overlap/j, overlap/R, overlap/offset, overlap/S: the same for S on its own pairs
    attrs: format, basis_family, elements (symbol -> norb), checkpoint, timing, overlap_eps

Format "uniham-sparse-1" (uniham <= 0.1.1) kept S on the H edges (``edges/S``); it is still read.

:func:`read_prediction` turns it into a :class:`uniham.hamiltonian.Hamiltonian` (small and medium sizes).
"""
from __future__ import annotations

from uniham.errors import UnihamError

FORMAT = "uniham-sparse-2"
READABLE = ("uniham-sparse-1", FORMAT)


def read_prediction(path):
    """The :class:`uniham.hamiltonian.Hamiltonian` of a ``prediction.h5`` (both halves of the blocks)."""
    import h5py
    from ase import Atoms

    from uniham.dft.cp2k_basis import load_basis
    from uniham.hamiltonian import Hamiltonian

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UnihamError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        if f.attrs.get("format") not in READABLE:
            raise UnihamError(f"{path}: not a uniham sparse prediction (format {f.attrs.get('format')!r})")
        atoms = Atoms(numbers=f["atoms/numbers"][()], positions=f["atoms/positions"][()], cell=f["atoms/cell"][()],
                      pbc=f["atoms/pbc"][()])
        family = f.attrs["basis_family"]
        symbols = atoms.get_chemical_symbols()
        bases = {x: load_basis(x, family) for x in dict.fromkeys(symbols)}
        norb = {x: b.orbital_basis().dim for x, b in bases.items()}
        i, j, r, off = f["edges/i"][()], f["edges/j"][()], f["edges/R"][()], f["edges/offset"][()]
        hv = f["edges/H"][()].astype(float)
        if "overlap/S" in f:  # uniham-sparse-2: S on its own pairs
            si, sj, sr, soff = (f[f"overlap/{k}"][()] for k in ("i", "j", "R", "offset"))
            sv = f["overlap/S"][()].astype(float)
        elif "edges/S" in f:  # uniham-sparse-1: S on the H edges
            si, sj, sr, soff, sv = i, j, r, off, f["edges/S"][()].astype(float)
        else:
            sv = None
        oh = f["onsite/H"][()].astype(float)
        os_ = f["onsite/S"][()].astype(float) if "onsite/S" in f else None
    H, S = {}, ({} if sv is not None else None)
    for a, x in enumerate(symbols):
        m = norb[x]
        H[(0, 0, 0, a, a)] = oh[a, :m, :m]
        if S is not None:
            S[(0, 0, 0, a, a)] = os_[a, :m, :m]
    for e in range(len(i)):
        a, b = int(i[e]), int(j[e])
        shape = (norb[symbols[a]], norb[symbols[b]])
        key = (int(r[e, 0]), int(r[e, 1]), int(r[e, 2]), a, b)
        rkey = (-key[0], -key[1], -key[2], b, a)
        blk = hv[off[e]:off[e + 1]].reshape(shape)
        H[key], H[rkey] = blk, blk.T
    for e in range(len(si) if S is not None else 0):
        a, b = int(si[e]), int(sj[e])
        key = (int(sr[e, 0]), int(sr[e, 1]), int(sr[e, 2]), a, b)
        sb = sv[soff[e]:soff[e + 1]].reshape(norb[symbols[a]], norb[symbols[b]])
        S[key], S[(-key[0], -key[1], -key[2], b, a)] = sb, sb.T
    n_el = float(sum(bases[x].valence for x in symbols))
    return Hamiltonian(atoms, {x: b.orbital_basis() for x, b in bases.items()}, H, S, None, n_el, False)

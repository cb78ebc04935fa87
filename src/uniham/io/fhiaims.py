"""FHI-aims real-space matrices of aperiodic systems: ``rs_hamiltonian.out``, ``rs_overlap.out``,
``rs_indices.out``, ``basis-indices.out`` and ``geometry.in`` (``output_rs_matrices plain``).

Storage: for each basis row i, ``index_hamiltonian(1:2, cell, i)`` give the range of entries whose
``column_index_hamiltonian`` are the columns j <= i (one triangle; the other follows by symmetry).
H in Hartree (CODATA 2018 conversion). FHI-aims orders m = -l..l with a minus sign on odd m > 0,
converted to uniham's real harmonics here. Periodic and spin-polarized runs are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from uniham.basis import OrbitalBasis, code_to_uniham_basis
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.units import HARTREE_EV

NEEDED = ("rs_indices.out", "rs_hamiltonian.out", "rs_overlap.out", "basis-indices.out", "geometry.in")


def is_fhiaims(path: Path) -> bool:
    return path.is_dir() and all((path / f).exists() for f in NEEDED)


def _indices(path: Path) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    size = int(lines[0].split(":")[1])
    ncell = int(lines[1].split(":")[1])
    nbasis = int(lines[2].split(":")[1])
    pos = 3
    if not lines[pos].strip().startswith("cell_index"):
        raise UnihamError(f"{path}: unexpected layout")
    pos += 1
    if "not used" not in lines[pos - 1]:
        raise UnihamError(f"{path}: periodic FHI-aims matrices are not supported yet (aperiodic only)")
    idx = []
    for _ in range(2):
        pos += 1  # "index_hamiltonian(k,:,:)"
        rows = []
        for _ in range(ncell):
            rows.append([int(x) if "*" not in x else -1 for x in lines[pos].split()])
            pos += 1
        idx.append(np.array(rows))
    pos += 1  # column_index_hamiltonian
    cols = np.array([int(x) for x in lines[pos:pos + size]])
    return size, nbasis, idx[0][0], idx[1][0], cols


def _read_values(path: Path, size: int) -> np.ndarray:
    try:
        vals = np.array(path.read_text().split(), dtype=float)
    except ValueError as exc:
        raise UnihamError(f"malformed {path}: {exc}") from None
    if len(vals) < size - 1:
        raise UnihamError(f"{path}: {len(vals)} values, index file says {size}")
    return vals


def read_fhiaims(path) -> Hamiltonian:
    import ase.io

    path = Path(path)
    if (path / "rs_hamiltonian_up.out").exists():
        raise UnihamError(f"{path}: spin-polarized FHI-aims matrices are not supported yet")
    atoms = ase.io.read(str(path / "geometry.in"), format="aims")
    if atoms.pbc.any():
        raise UnihamError(f"{path}: periodic FHI-aims matrices are not supported yet (aperiodic only)")
    table = np.loadtxt(path / "basis-indices.out", skiprows=2, usecols=(0, 2, 3, 4, 5), dtype=int, ndmin=2)
    size, nbasis, first, last, cols = _indices(path / "rs_indices.out")
    if len(table) != nbasis:
        raise UnihamError(f"{path}: basis-indices.out lists {len(table)} functions, rs_indices.out {nbasis}")
    per_atom: list[list[int]] = [[] for _ in range(len(atoms))]
    for _, at, _, l, m in table:
        if m == -l:
            per_atom[at - 1].append(int(l))
    basis: dict[str, OrbitalBasis] = {}
    for sym, shells in zip(atoms.get_chemical_symbols(), per_atom):
        b = OrbitalBasis(tuple(shells))
        if basis.setdefault(sym, b) != b:
            raise UnihamError(f"{path}: atoms of {sym} have different bases; not supported")
    atom_order = table[:, 1] - 1
    if np.any(np.diff(atom_order) < 0):
        raise UnihamError(f"{path}: basis functions are not grouped by atom")
    offsets = np.concatenate([[0], np.cumsum([basis[s].dim for s in atoms.get_chemical_symbols()])]).astype(int)
    u = np.zeros((nbasis, nbasis))
    for i, s in enumerate(atoms.get_chemical_symbols()):
        u[offsets[i]:offsets[i + 1], offsets[i]:offsets[i + 1]] = code_to_uniham_basis("fhiaims", basis[s])

    def full(name: str, scale: float) -> np.ndarray:
        vals = _read_values(path / name, size)
        m = np.zeros((nbasis, nbasis))
        for i in range(nbasis):
            a, b = first[i], last[i]
            if a <= 0 or b < a:
                continue
            j = cols[a - 1:b] - 1
            m[i, j] = vals[a - 1:b]
            m[j, i] = vals[a - 1:b]
        return u @ (m * scale) @ u.T

    hm, sm = full("rs_hamiltonian.out", HARTREE_EV), full("rs_overlap.out", 1.0)
    H, S = {}, {}
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            si, sj = slice(offsets[i], offsets[i + 1]), slice(offsets[j], offsets[j + 1])
            if np.any(sm[si, sj]) or np.any(hm[si, sj]):
                H[(0, 0, 0, i, j)] = hm[si, sj].copy()
                S[(0, 0, 0, i, j)] = sm[si, sj].copy()
    ne = float(atoms.get_atomic_numbers().sum())  # all-electron code
    ham = Hamiltonian(atoms, basis, H, S, None, ne, False, {"source": {"format": "fhi-aims", "path": str(path)}})
    ham.validate()
    return ham

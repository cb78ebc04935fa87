"""The legacy DeepH folder (DeepH-pack / DeepH-E3 ``preprocess`` output, usually from OpenMX).

Files: ``lat.dat`` (3x3, lattice vectors as *columns*, Angstrom), ``site_positions.dat`` (3 x N,
Cartesian columns), ``element.dat`` (Z per atom), ``orbital_types.dat`` (l of each shell, one line
per atom), ``info.json`` (nsites, isorthogonal, isspinful, fermi_level in eV), ``rlat.dat``
(reciprocal vectors incl. 2 pi, columns), ``hamiltonians.h5``/``overlaps.h5`` with string keys
"[R1, R2, R3, i, j]" and 1-based atoms. Orbitals are in OpenMX order (p: x, y, z; d: z2, x2-y2,
xy, xz, yz); converted to uniham's at this boundary.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms

from uniham.basis import OrbitalBasis, code_to_uniham_basis
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.io._atomic import atomic_folder

NEEDED = ("lat.dat", "site_positions.dat", "element.dat", "orbital_types.dat", "info.json")


def is_deeph_legacy(path: Path) -> bool:
    return path.is_dir() and all((path / f).exists() for f in NEEDED)


def _load(path: Path, name: str, **kw) -> np.ndarray:
    try:
        return np.loadtxt(path / name, **kw)
    except (OSError, ValueError) as exc:
        raise UnihamError(f"cannot read {path / name}: {exc}") from None


def read_deeph_legacy(path) -> Hamiltonian:
    path = Path(path)
    info = json.loads((path / "info.json").read_text())
    if info.get("isspinful", False):
        raise UnihamError(f"{path}: spinful legacy DeepH data is not supported yet")
    lat = _load(path, "lat.dat", ndmin=2).T
    pos = _load(path, "site_positions.dat", ndmin=2).T
    z = _load(path, "element.dat", ndmin=1).astype(int)
    lines = [ln.split() for ln in (path / "orbital_types.dat").read_text().splitlines() if ln.strip()]
    if not (len(z) == len(pos) == len(lines)):
        raise UnihamError(f"{path}: element.dat, site_positions.dat and orbital_types.dat disagree on the atom count")
    atoms = Atoms(numbers=z, positions=pos, cell=lat, pbc=True)
    basis: dict[str, OrbitalBasis] = {}
    for sym, ls in zip(atoms.get_chemical_symbols(), lines):
        b = OrbitalBasis.from_ls(ls)
        if basis.setdefault(sym, b) != b:
            raise UnihamError(f"{path}: atoms of {sym} have different orbital types")
    u = [code_to_uniham_basis("openmx", basis[s]) for s in atoms.get_chemical_symbols()]

    def read(name):
        out = {}
        try:
            with h5py.File(path / name, "r") as f:
                for key, ds in f.items():
                    r1, r2, r3, i, j = json.loads(key)
                    out[(r1, r2, r3, i - 1, j - 1)] = u[i - 1] @ np.asarray(ds[()], dtype=float) @ u[j - 1].T
        except OSError as exc:
            raise UnihamError(f"cannot read {path / name}: {exc}") from None
        return out

    h = read("hamiltonians.h5")
    orthogonal = bool(info.get("isorthogonal", False))
    s = None if orthogonal else read("overlaps.h5")
    ham = Hamiltonian(atoms, basis, h, s, info.get("fermi_level"), info.get("nelectrons"), False,
                      {"source": {"format": "deeph-legacy", "path": str(path)}})
    ham.complete_hermitian()
    ham.validate()
    return ham


def write_deeph_legacy(ham: Hamiltonian, path) -> Path:
    """Write the legacy DeepH folder (OpenMX orbital order, 1-based string keys), atomically."""
    path = Path(path)
    with atomic_folder(path) as tmp:
        atoms = ham.atoms
        np.savetxt(tmp / "lat.dat", atoms.cell.array.T)
        np.savetxt(tmp / "rlat.dat", 2 * np.pi * atoms.cell.reciprocal().T)
        np.savetxt(tmp / "site_positions.dat", atoms.positions.T)
        np.savetxt(tmp / "element.dat", atoms.numbers, fmt="%d")
        with open(tmp / "orbital_types.dat", "w") as f:
            f.writelines("  ".join(str(l) for l in ham.basis[sym].shells) + "\n" for sym in atoms.get_chemical_symbols())
        info = {"nsites": len(atoms), "isorthogonal": ham.S is None, "isspinful": False, "fermi_level": ham.fermi_level}
        if ham.n_electrons is not None:
            info["nelectrons"] = ham.n_electrons
        (tmp / "info.json").write_text(json.dumps(info))
        u = [code_to_uniham_basis("openmx", ham.basis[s]) for s in atoms.get_chemical_symbols()]
        for name, blocks in (("hamiltonians.h5", ham.H), ("overlaps.h5", ham.S)):
            if blocks is None:
                continue
            with h5py.File(tmp / name, "w") as f:
                for (r1, r2, r3, i, j), blk in sorted(blocks.items()):
                    f[json.dumps([r1, r2, r3, i + 1, j + 1])] = u[i].T @ blk @ u[j]
    return path

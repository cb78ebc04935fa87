"""Structures: read anything ASE reads (or take ase.Atoms / pymatgen Structure) and validate it.

Periodicity follows ``atoms.pbc``: 3D crystals (all True), slabs/2D layers (two True) and molecules
(all False; a box is still needed by periodic engines, see :func:`ensure_box`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from uniham.errors import UnihamError

MIN_DISTANCE_ANG = 0.5


def read_structure(source, index: int | str = -1) -> Atoms:
    """Return a validated ``ase.Atoms`` from a path, an ``Atoms`` or a pymatgen ``Structure``/``Molecule``."""
    if isinstance(source, Atoms):
        atoms = source.copy()
    elif hasattr(source, "lattice") or type(source).__name__ in ("Structure", "Molecule"):
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(source)
    else:
        atoms = _read_file(Path(os.fspath(source)), index)
    validate_structure(atoms)
    return atoms


def _read_file(path: Path, index) -> Atoms:
    import ase.io

    if not path.exists():
        raise UnihamError(f"structure file not found: {path}")
    if path.is_dir():
        poscar = path / "POSCAR"
        if poscar.exists():
            path = poscar
        else:
            raise UnihamError(f"{path} is a folder without a POSCAR; give a structure file")
    if path.stat().st_size == 0:
        raise UnihamError(f"structure file is empty: {path}")
    try:
        atoms = ase.io.read(str(path), index=index)
    except UnihamError:
        raise
    except Exception as exc:  # ASE raises many types for malformed files
        text = str(exc).strip()
        if text:
            msg = text.splitlines()[0]
        else:  # e.g. a bare AssertionError from ASE's CIF parser: say what was expected
            kind = path.suffix.lstrip(".").upper() or "structure"
            msg = f"not a valid {kind} file (ASE's reader stopped with {type(exc).__name__})"
        raise UnihamError(f"cannot read structure {path}: {msg}") from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    return atoms


def validate_structure(atoms: Atoms) -> None:
    """Raise :class:`UnihamError` for empty structures, unknown elements, bad cells or clashing atoms."""
    if len(atoms) == 0:
        raise UnihamError("structure has no atoms")
    _check_occupancy(atoms)
    numbers = atoms.get_atomic_numbers()
    bad = [int(z) for z in numbers if z < 1 or z >= len(chemical_symbols)]
    if bad:
        raise UnihamError(f"unknown element(s) with atomic number {sorted(set(bad))}")
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        raise UnihamError("structure has non-finite atomic positions")
    pbc = atoms.pbc
    cell = atoms.cell.array
    if pbc.any():
        periodic = cell[pbc]
        if np.linalg.matrix_rank(periodic, tol=1e-6) < pbc.sum():
            raise UnihamError("cell is singular: the periodic lattice vectors are zero or linearly dependent")
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
            raise UnihamError("cell has zero volume")
    _check_distances(atoms)


def _check_occupancy(atoms: Atoms) -> None:
    """Refuse partially occupied or mixed sites (a CIF's ``_atom_site_occupancy`` < 1, which ASE reads as one full
    atom of one of the species): a Hamiltonian needs an ordered structure; build a supercell model of the
    disorder (e.g. pymatgen's OrderDisorderedStructureTransformation) first."""
    occ = atoms.info.get("occupancy")
    if not isinstance(occ, dict):
        return
    for site, species in occ.items():
        total = sum(float(v) for v in species.values())
        if len(species) > 1 or total < 1 - 1e-6:
            text = " + ".join(f"{x} {float(v):g}" for x, v in species.items())
            raise UnihamError(f"site {site} is partially occupied or disordered ({text}): give an ordered structure "
                              "(a supercell model of the disorder)")


def _check_distances(atoms: Atoms) -> None:
    from ase.neighborlist import neighbor_list

    if atoms.pbc.any() and abs(np.linalg.det(atoms.cell.array)) < 1e-6:
        # 2D/1D with unset non-periodic vectors: give them a length so neighbor lists work
        atoms = ensure_box(atoms)
    i, j, d = neighbor_list("ijd", atoms, MIN_DISTANCE_ANG)
    if len(d):
        k = int(np.argmin(d))
        a, b = int(i[k]), int(j[k])
        raise UnihamError(
            f"atoms {a} ({atoms[a].symbol}) and {b} ({atoms[b].symbol}) are {d[k]:.3f} A apart "
            f"(closer than {MIN_DISTANCE_ANG} A): overlapping atoms"
        )


def ensure_box(atoms: Atoms, vacuum: float = 10.0) -> Atoms:
    """Copy of ``atoms`` whose non-periodic directions have a cell vector (molecule/slab in a box)."""
    atoms = atoms.copy()
    cell = atoms.cell.array.copy()
    for ax in range(3):
        if not atoms.pbc[ax] and np.linalg.norm(cell[ax]) < 1e-6:
            extent = np.ptp(atoms.positions[:, ax]) if len(atoms) else 0.0
            cell[ax] = 0.0
            cell[ax, ax] = extent + vacuum
    atoms.set_cell(cell)
    return atoms

"""The DeepH-dock folder, uniham's interchange format.

Layout: ``POSCAR``, ``info.json`` (atoms_quantity, orbits_quantity, orthogonal_basis, spinful,
fermi_energy_eV, elements_orbital_map, plus uniham's provenance), ``hamiltonian.h5`` and
``overlap.h5`` each with ``atom_pairs`` (N,5) = [R1,R2,R3,i,j] (0-based atoms in POSCAR order),
flat ``entries`` (row-major blocks), ``chunk_boundaries`` (N+1) and ``chunk_shapes`` (N,2).
Energies in eV; orbitals in the Wikipedia real-harmonic order, which is uniham's (no conversion).
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from uniham.basis import OrbitalBasis
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.io._atomic import atomic_folder

H_FILE, S_FILE, INFO_FILE, POSCAR_FILE = "hamiltonian.h5", "overlap.h5", "info.json", "POSCAR"


def is_deeph_dock(path: Path) -> bool:
    return path.is_dir() and (path / INFO_FILE).exists() and (path / POSCAR_FILE).exists() and (path / H_FILE).exists()


def _read_blocks(path: Path) -> dict:
    try:
        with h5py.File(path, "r") as f:
            pairs = f["atom_pairs"][()]
            entries = f["entries"][()]
            bounds = f["chunk_boundaries"][()]
            shapes = f["chunk_shapes"][()]
    except (OSError, KeyError) as exc:
        raise UnihamError(f"cannot read {path}: {exc}") from None
    if entries.ndim != 1:
        raise UnihamError(f"{path}: entries has shape {entries.shape}; spinful/complex entries are not supported yet")
    if len(bounds) != len(pairs) + 1 or len(shapes) != len(pairs) or bounds[-1] != len(entries):
        raise UnihamError(f"{path}: atom_pairs, chunk_boundaries, chunk_shapes and entries disagree in length")
    out = {}
    for p, a, b, shp in zip(pairs, bounds[:-1], bounds[1:], shapes):
        out[tuple(int(x) for x in p[:5])] = entries[a:b].reshape(int(shp[0]), int(shp[1])).astype(float)
    return out


def read_deeph_dock(path) -> Hamiltonian:
    """Read a DeepH-dock folder into a :class:`Hamiltonian`."""
    import ase.io

    path = Path(path)
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnihamError(f"cannot read {path / INFO_FILE}: {exc}") from None
    if info.get("spinful", False):
        raise UnihamError(f"{path}: spinful (SOC / non-collinear) DeepH-dock data is not supported yet")
    try:
        atoms = ase.io.read(str(path / POSCAR_FILE), format="vasp")
    except Exception as exc:
        raise UnihamError(f"cannot read {path / POSCAR_FILE}: {exc}") from None
    if "pbc" in info:  # uniham extension: molecules and slabs keep their periodicity
        atoms.pbc = info["pbc"]
    emap = info.get("elements_orbital_map")
    if not emap:
        raise UnihamError(f"{path / INFO_FILE} lacks elements_orbital_map")
    basis = {el: OrbitalBasis.from_ls(ls) for el, ls in emap.items()}
    missing = set(atoms.get_chemical_symbols()) - set(basis)
    if missing:
        raise UnihamError(f"{path}: no orbital map for element(s) {sorted(missing)}")
    h = _read_blocks(path / H_FILE)
    orthogonal = bool(info.get("orthogonal_basis", False))
    s = None if orthogonal else _read_blocks(path / S_FILE) if (path / S_FILE).exists() else None
    if s is None and not orthogonal:
        raise UnihamError(f"{path}: overlap.h5 missing for a non-orthogonal basis")
    prov = info.get("uniham", {})
    prov.setdefault("source", {"format": "deeph-dock", "path": str(path)})
    ham = Hamiltonian(atoms, basis, h, s, info.get("fermi_energy_eV"), info.get("electrons_quantity", info.get("occupation")),
                      False, prov)
    ham.complete_hermitian()
    ham.validate()
    return ham


def _write_blocks(path: Path, blocks: dict, dtype=np.float64) -> None:
    keys = sorted(blocks)
    pairs = np.array(keys, dtype=np.int64).reshape(-1, 5)
    shapes = np.array([blocks[k].shape for k in keys], dtype=np.int64).reshape(-1, 2)
    bounds = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])]).astype(np.int64)
    entries = np.concatenate([blocks[k].ravel() for k in keys]) if keys else np.zeros(0)
    with h5py.File(path, "w") as f:
        f.create_dataset("atom_pairs", data=pairs)
        f.create_dataset("chunk_boundaries", data=bounds)
        f.create_dataset("chunk_shapes", data=shapes)
        f.create_dataset("entries", data=entries.astype(dtype))


def write_deeph_dock(ham: Hamiltonian, path, dtype=np.float64) -> Path:
    """Write ``ham`` as a DeepH-dock folder, atomically (a temp folder renamed into place).

    Atoms are written in their current order (DeepH-dock's POSCAR groups species; ASE's VASP writer
    groups consecutive runs, so any order survives the round trip).
    """
    import ase.io

    from uniham.structure import ensure_box

    path = Path(path)
    with atomic_folder(path) as tmp:
        ase.io.write(str(tmp / POSCAR_FILE), ensure_box(ham.atoms), format="vasp", direct=True)
        symbols = list(dict.fromkeys(ham.atoms.get_chemical_symbols()))
        info = {
            "atoms_quantity": len(ham.atoms),
            "orbits_quantity": ham.norb,
            "orthogonal_basis": ham.S is None,
            "spinful": False,
            # null, not NaN, when unknown (a zeroth-step H0 has none): NaN is not JSON
            "fermi_energy_eV": ham.fermi_level if ham.fermi_level is not None and np.isfinite(ham.fermi_level) else None,
            "elements_orbital_map": {el: list(ham.basis[el].shells) for el in symbols},
            "pbc": [bool(x) for x in ham.atoms.pbc],
        }
        if ham.n_electrons is not None:
            info["electrons_quantity"] = ham.n_electrons
        if ham.provenance:
            info["uniham"] = ham.provenance
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1, default=_json_default))
        _write_blocks(tmp / H_FILE, ham.H, dtype)
        if ham.S is not None:
            _write_blocks(tmp / S_FILE, ham.S, dtype)
    return path


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)

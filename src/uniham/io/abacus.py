"""ABACUS LCAO output: ``data-HR-sparse_SPIN0.csr`` / ``data-SR-sparse_SPIN0.csr`` + ``running_scf.log``.

The CSR files hold, per lattice vector R, the full (norb x norb) matrix in CSR form (values line,
column-index line, row-pointer line); H in Rydberg (converted with CODATA 2018), S dimensionless.
H may have blocks (R) that S lacks: they are kept. Structure, basis (L, number of zeta per species)
and E_F come from ``running_scf.log``. ABACUS orders each atom's orbitals by l, then zeta, then m
in the order 0, +1, -1, +2, -2, ... with the (-1)^m phase; converted to uniham's order here.
Only SPIN0 (spinless) data is read; nspin=2 or SOC runs are refused.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from ase import Atoms

from uniham.basis import OrbitalBasis, code_to_uniham_basis
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.io._blocks import split_into_blocks
from uniham.units import BOHR_ANG, RYDBERG_EV


def find_abacus_dir(path: Path) -> Path | None:
    """The folder holding data-HR-sparse_SPIN0.csr (path itself, or OUT.* inside it)."""
    if path.is_file():
        path = path.parent
    if (path / "data-HR-sparse_SPIN0.csr").exists():
        return path
    for sub in sorted(path.glob("OUT.*")):
        if (sub / "data-HR-sparse_SPIN0.csr").exists():
            return sub
    return None


def _parse_csr(path: Path) -> tuple[int, dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UnihamError(f"cannot read {path}: {exc}") from None
    try:
        dim = int(lines[1].split(":")[1])
        nmat = int(lines[2].split(":")[1])
        out, pos = {}, 3
        for _ in range(nmat):
            r1, r2, r3, nnz = (int(x) for x in lines[pos].split())
            pos += 1
            if nnz == 0:
                continue
            vals = np.array(lines[pos].split(), dtype=float)
            cols = np.array(lines[pos + 1].split(), dtype=np.int64)
            ptr = np.array(lines[pos + 2].split(), dtype=np.int64)
            pos += 3
            if len(vals) != nnz or len(cols) != nnz or len(ptr) != dim + 1:
                raise ValueError(f"block R=({r1},{r2},{r3}) is truncated")
            rows = np.repeat(np.arange(dim), np.diff(ptr))
            out[(r1, r2, r3)] = (rows, cols, vals)
    except (IndexError, ValueError) as exc:
        raise UnihamError(f"malformed ABACUS CSR file {path}: {exc}") from None
    return dim, out


def _parse_log(log: Path) -> tuple[Atoms, dict[str, OrbitalBasis], float | None, float | None]:
    text = log.read_text(errors="replace")
    m = re.search(r"lattice constant \(Bohr\)\s*=\s*(\S+)", text)
    if not m:
        raise UnihamError(f"{log}: no lattice constant found")
    alat = float(m.group(1)) * BOHR_ANG
    m = re.search(r"Lattice vectors: \(Cartesian coordinate: in unit of a_0\)\s*\n(.*)\n(.*)\n(.*)\n", text)
    cell = np.array([[float(x) for x in m.group(k).split()] for k in (1, 2, 3)]) * alat
    basis: dict[str, OrbitalBasis] = {}
    for block in re.split(r"READING ATOM TYPE", text)[1:]:
        label = re.search(r"atom label = (\S+)", block).group(1)
        shells = []
        for l, nz in re.findall(r"L=(\d+), number of zeta = (\d+)", block.split("READING ATOM TYPE")[0]):
            shells += [int(l)] * int(nz)
        basis[label] = OrbitalBasis(tuple(shells))
    symbols, pos, frac = [], [], None
    for kind, lab, x, y, z in re.findall(r"\n(tau[cd])_([A-Za-z]+)\d+\s+(\S+)\s+(\S+)\s+(\S+)", text):
        symbols.append(lab)
        pos.append([float(x), float(y), float(z)])
        frac = kind == "taud"
    if not symbols:
        raise UnihamError(f"{log}: no atomic positions found")
    pos = np.array(pos)
    atoms = Atoms(symbols=[re.sub(r"\d+$", "", s) for s in symbols], cell=cell, pbc=True)
    if frac:
        atoms.set_scaled_positions(pos)
    else:
        atoms.set_positions(pos * alat)
    efs = re.findall(r"EFERMI\s*=\s*(\S+)\s*eV", text)
    ef = float(efs[-1]) if efs else None
    ne = re.search(r"AUTOSET number of electrons:\s*=\s*(\S+)", text)
    if re.search(r"nspin\s*=\s*[24]", text) or "spin-orbit" in text.lower() and "lspinorb = 1" in text:
        raise UnihamError(f"{log}: spin-polarized / SOC ABACUS runs are not supported yet")
    return atoms, basis, ef, float(ne.group(1)) if ne else None


def read_abacus(path) -> Hamiltonian:
    path = Path(path)
    d = find_abacus_dir(path)
    if d is None:
        raise UnihamError(f"{path}: no data-HR-sparse_SPIN0.csr found (set out_mat_hs2 1 in ABACUS INPUT)")
    if (d / "data-HR-sparse_SPIN1.csr").exists():
        raise UnihamError(f"{d}: spin-polarized ABACUS data (SPIN1 present) is not supported yet")
    log = d / "running_scf.log"
    if not log.exists():
        raise UnihamError(f"{d}: running_scf.log is needed for the structure and basis")
    atoms, basis, ef, ne = _parse_log(log)
    missing = set(atoms.get_chemical_symbols()) - set(basis)
    if missing:
        raise UnihamError(f"{log}: no basis for {sorted(missing)}")
    offsets = np.concatenate([[0], np.cumsum([basis[s].dim for s in atoms.get_chemical_symbols()])]).astype(int)
    u = [code_to_uniham_basis("abacus", basis[s]) for s in atoms.get_chemical_symbols()]

    def blocks(name, scale):
        dim, mats = _parse_csr(d / name)
        if dim != offsets[-1]:
            raise UnihamError(f"{d / name}: dimension {dim}, basis from the log gives {offsets[-1]}")
        if not mats:
            return {}
        rows = np.concatenate([m[0] for m in mats.values()])
        cols = np.concatenate([m[1] for m in mats.values()])
        vals = np.concatenate([m[2] for m in mats.values()]) * scale
        rv = np.concatenate([np.tile(r, (len(m[0]), 1)) for r, m in mats.items()])
        return split_into_blocks(rows, cols, vals, rv, offsets, u)

    h = blocks("data-HR-sparse_SPIN0.csr", RYDBERG_EV)
    s = blocks("data-SR-sparse_SPIN0.csr", 1.0)
    ham = Hamiltonian(atoms, basis, h, s, ef, ne, False, {"source": {"format": "abacus", "path": str(d)}})
    ham.validate()
    return ham


def read_abacus_eigenvalues(d) -> tuple[np.ndarray, np.ndarray]:
    """ABACUS's own printout: (k_frac (nk,3), eigenvalues (nk, nbands) eV) from istate.info + kpoints."""
    d = Path(d)
    text = (d / "istate.info").read_text()
    blocks = re.split(r"BAND\s+Energy\(ev\).*\n", text)[1:]
    eigs = [[float(ln.split()[1]) for ln in b.strip().splitlines() if ln.strip()] for b in blocks]
    klines = (d / "kpoints").read_text().splitlines()
    start = next(i for i, ln in enumerate(klines) if "DIRECT_X" in ln) + 1
    k = np.array([[float(x) for x in ln.split()[1:4]] for ln in klines[start:start + len(eigs)]])
    return k, np.array(eigs)

"""SIESTA ``.HSX`` / ``.TSHS`` files, read with sisl and converted to uniham blocks.

Care points: sisl shifts H by -E_F when the file stores E_F (we add it back: uniham keeps absolute
energies); Intel-Fortran builds write the logical "true" as -1, which sisl's HSX dtype lookup does
not accept (handled by a subclass); SIESTA orders m = -l..l with the Condon-Shortley phase (-1)^m,
converted to uniham's signs here. Spin-polarized, non-collinear and spin-orbit files are refused.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from uniham.basis import OrbitalBasis, code_to_uniham_basis
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.io._blocks import split_into_blocks


def _sile(path: Path):
    import sisl
    from sisl.io.siesta import _siesta, hsxSileSiesta

    class _HSX(hsxSileSiesta):
        @property
        def _stored_dtype(self):  # Intel Fortran writes .true. as -1
            return np.float64 if _siesta.read_hsx_is_dp(self.file) else np.float32

    if path.suffix.upper() == ".HSX":
        return _HSX(str(path))
    return sisl.get_sile(str(path))


def _orbital_ls_from_orb_indx(path: Path, no: int) -> list[int] | None:
    """l of each unit-cell orbital from a sibling <label>.ORB_INDX, if present."""
    cands = list(path.parent.glob(path.stem + ".ORB_INDX")) or list(path.parent.glob("*.ORB_INDX"))
    if not cands:
        return None
    ls = []
    for line in cands[0].read_text().splitlines()[3:3 + no]:
        parts = line.split()
        ls.append(int(parts[6]))
    return ls if len(ls) == no else None


def _shells(ls: list[int]) -> list[int]:
    shells, k = [], 0
    while k < len(ls):
        shells.append(ls[k])
        k += 2 * ls[k] + 1
    return shells


def read_siesta(path) -> Hamiltonian:
    path = Path(path)
    try:
        sile = _sile(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = sile.read_hamiltonian()
    except UnihamError:
        raise
    except Exception as exc:
        raise UnihamError(f"cannot read SIESTA file {path}: {type(exc).__name__}: {exc}") from None
    if not h.spin.is_unpolarized:
        kind = "spin-orbit" if h.spin.is_spinorbit else "non-collinear" if h.spin.is_noncolinear else "spin-polarized"
        raise UnihamError(f"{path}: {kind} SIESTA Hamiltonians are not supported yet (spinless only)")
    try:
        ef = float(sile.read_fermi_level())
    except Exception:
        ef = None
    geom = h.geometry
    atoms = geom.to.ase()
    atoms.pbc = True
    _fix_species(path, atoms)
    no = geom.no
    per_atom = []
    for ia in range(geom.na):
        per_atom.append([getattr(o, "l", None) for o in geom.atoms[ia].orbitals])
    if any(l is None or l < 0 for a in per_atom for l in a):
        flat = _orbital_ls_from_orb_indx(path, no)
        if flat is None:
            raise UnihamError(f"{path}: orbital angular momenta unknown (put the .ORB_INDX file next to it)")
        off = geom.firsto
        per_atom = [flat[off[ia]:off[ia + 1]] for ia in range(geom.na)]
    basis: dict[str, OrbitalBasis] = {}
    for sym, ls in zip(atoms.get_chemical_symbols(), per_atom):
        b = OrbitalBasis.from_ls(_shells([int(l) for l in ls]))
        if basis.setdefault(sym, b) != b:
            raise UnihamError(f"{path}: atoms of {sym} have different bases; not supported")
    u = [code_to_uniham_basis("siesta", basis[s]) for s in atoms.get_chemical_symbols()]
    # sisl has shifted H by -E_F where the file stores it; restore absolute energies
    shift = ef if (ef is not None and _sisl_shifted(path, sile)) else 0.0
    hcsr = h.tocsr(0).tocoo()
    scsr = h.tocsr(h.S_idx).tocoo()
    H = _blocks(hcsr, geom, u, no)
    S = _blocks(scsr, geom, u, no)
    if shift:
        for key, s in S.items():
            H[key] = H.get(key, np.zeros_like(s)) + shift * s
    ham = Hamiltonian(atoms, basis, H, S, ef, None, False, {"source": {"format": "siesta", "path": str(path)}})
    ham.validate()
    return ham


def _fix_species(path: Path, atoms) -> None:
    """TSHS files carry no atomic numbers: take them from a sibling .XV file (SIESTA's own)."""
    if path.suffix.upper() != ".TSHS":
        return
    xv = path.with_suffix(".XV")
    if not xv.exists():
        raise UnihamError(f"{path}: a .TSHS file stores no chemical species; put {xv.name} next to it")
    lines = [ln.split() for ln in xv.read_text().splitlines()[4:] if ln.strip()]
    z = [int(p[1]) for p in lines]
    if len(z) != len(atoms):
        raise UnihamError(f"{xv} lists {len(z)} atoms, {path.name} has {len(atoms)}")
    atoms.set_atomic_numbers(z)


def _sisl_shifted(path: Path, sile) -> bool:
    if path.suffix.upper() == ".HSX":
        return int(sile.version) >= 1
    return True  # TSHS: sisl shifts by the stored E_F


def _blocks(coo, geom, u, no) -> dict:
    isc, jo = np.divmod(coo.col, no)
    return split_into_blocks(coo.row, jo, coo.data, geom.lattice.sc_off[isc], np.asarray(geom.firsto), u)


def read_siesta_eigenvalues(eig_path, kp_path, cell_ang: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """SIESTA's own printout: (k_frac (nk,3), eigenvalues (nk, nbands) eV, E_F eV) from .EIG and .KP."""
    from uniham.units import BOHR_ANG

    tokens = Path(eig_path).read_text().split()
    ef = float(tokens[0])
    nb, nspin, nk = int(tokens[1]), int(tokens[2]), int(tokens[3])
    vals, pos = [], 4
    for _ in range(nk):
        pos += 1  # k index
        vals.append([float(x) for x in tokens[pos:pos + nb * nspin]])
        pos += nb * nspin
    kp = np.loadtxt(kp_path, skiprows=1)
    kcart = kp[:, 1:4] / BOHR_ANG  # 1/Angstrom (SIESTA writes 1/Bohr)
    kfrac = kcart @ np.asarray(cell_ang).T / (2 * np.pi)
    return kfrac, np.array(vals), ef

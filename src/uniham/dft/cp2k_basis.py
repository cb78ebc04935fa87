"""CP2K basis sets and GTH pseudopotentials: one basis definition for both engines.

uniham's basis for an element is a CP2K basis definition (default ``DZVP-MOLOPT-SR-GTH`` from
``BASIS_MOLOPT``). CP2K uses it in the DFT; PySCF evaluates overlap integrals with the very same
exponents and contraction coefficients, so S(R) of any structure is available without running CP2K
(prediction needs exactly that).

CP2K basis file format (one element block)::

    Si DZVP-MOLOPT-SR-GTH DZVP-MOLOPT-SR-GTH-q4     <- symbol, names (aliases)
     1                                              <- number of sets
     2 0 2 4 2 2 1                                  <- n, lmin, lmax, nexp, nshell(lmin..lmax)
      1.2567  0.2277 -1.0257 ...                    <- exponent (Bohr^-2), one column per shell

CP2K's atomic-orbital order: sets in file order; in a set, l = lmin..lmax; for each l its shells in
column order; each shell's 2l+1 real solid harmonics ordered m = -l..l (p: y, z, x), which is
uniham's convention (:mod:`uniham.basis`), so the CP2K -> uniham map is the identity.
PySCF's p order is (x, y, z); :func:`overlap_blocks` converts.

The data directory is ``$CP2K_DATA_DIR``, else the one of the Debian/Ubuntu package
(``/usr/share/cp2k``), else ``<conda prefix>/share/cp2k/data``.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from uniham.basis import OrbitalBasis, code_to_uniham
from uniham.errors import UnihamError

# CP2K 2023 converts Angstrom to Bohr with this (CODATA 2006) value; overlaps evaluated with it agree
# with CP2K's own S(R) to ~1e-9 instead of ~3e-9.
CP2K_BOHR_ANG = 0.52917720859

DEFAULT_BASIS = "DZVP-MOLOPT-SR-GTH"
DEFAULT_BASIS_FILE = "BASIS_MOLOPT"
DEFAULT_POTENTIAL_FILE = "GTH_POTENTIALS"


def data_dir() -> Path:
    """CP2K's data directory (basis and potential files)."""
    candidates = []
    if os.environ.get("CP2K_DATA_DIR"):
        candidates.append(Path(os.environ["CP2K_DATA_DIR"]))
    candidates += [Path("/usr/share/cp2k"), Path(sys.prefix) / "share" / "cp2k" / "data",
                   Path(os.environ.get("CONDA_PREFIX", "/nonexistent")) / "share" / "cp2k" / "data"]
    for c in candidates:
        if (c / DEFAULT_BASIS_FILE).is_file():
            return c
    raise UnihamError("CP2K data directory not found (looked for BASIS_MOLOPT in "
                      + ", ".join(map(str, candidates)) + "): install CP2K (Debian/Ubuntu: "
                      "`apt-get install cp2k`; conda: `conda install -c conda-forge cp2k`) or set CP2K_DATA_DIR")


@dataclass(frozen=True)
class GTOShell:
    """One contracted shell: angular momentum, exponents (Bohr^-2) and coefficients (unnormalized)."""

    l: int
    exponents: tuple[float, ...]
    coefficients: tuple[float, ...]


@dataclass(frozen=True)
class Cp2kBasis:
    """One element's CP2K basis: shells in CP2K's AO order, the names it is known by, its valence."""

    symbol: str
    names: tuple[str, ...]
    shells: tuple[GTOShell, ...]
    text: str  # the block as in the file (provenance)

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def valence(self) -> int | None:
        """Valence charge from a '-qN' alias (the matching GTH potential), None if not stated."""
        for n in self.names:
            m = re.search(r"-q(\d+)$", n)
            if m:
                return int(m.group(1))
        return None

    def orbital_basis(self) -> OrbitalBasis:
        return OrbitalBasis(tuple(s.l for s in self.shells))

    def pyscf_basis(self) -> list:
        """PySCF's basis format [[l, [exp, coef], ...], ...], one entry per shell, in CP2K order."""
        return [[s.l] + [[e, c] for e, c in zip(s.exponents, s.coefficients)] for s in self.shells]


def _blocks(path: Path):
    """Yield (header tokens, body lines, raw text) for every element block of a CP2K basis file."""
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    i = 0
    while i < len(lines):
        tok = lines[i].split()
        if tok and tok[0][0].isalpha():
            start = i
            nset = int(lines[i + 1].split()[0])
            j = i + 2
            body = []
            for _ in range(nset):
                tok_h = lines[j].split()  # trailing labels ("6s 7s ...") in some files
                head = [int(x) for x in tok_h[:4]]
                head += [int(x) for x in tok_h[4:4 + head[2] - head[1] + 1]]
                nexp = head[3]
                ncol = 1 + sum(head[4:])
                body.append((head, [list(map(float, lines[j + 1 + e].split()[:ncol])) for e in range(nexp)]))
                j += 1 + nexp
            yield tok, body, "\n".join(lines[start:j])
            i = j
        else:
            i += 1


@cache
def _basis_index(path: str) -> dict:
    index = {}
    for tok, body, text in _blocks(Path(path)):
        sym, names = tok[0].capitalize(), tuple(tok[1:])
        shells = []
        for head, rows in body:
            lmin, lmax = head[1], head[2]
            nshell = head[4:4 + lmax - lmin + 1]
            arr = np.array(rows)
            col = 1
            for l, ns in zip(range(lmin, lmax + 1), nshell):
                for _ in range(ns):
                    shells.append(GTOShell(l, tuple(arr[:, 0]), tuple(arr[:, col])))
                    col += 1
        b = Cp2kBasis(sym, names, tuple(shells), text)
        for n in names:
            index.setdefault((sym, n.upper()), b)
    return index


def load_basis(symbol: str, name: str = DEFAULT_BASIS, basis_file: str = DEFAULT_BASIS_FILE) -> Cp2kBasis:
    """The CP2K basis ``name`` of element ``symbol`` from ``basis_file`` (in the data directory)."""
    path = Path(basis_file) if os.path.isabs(basis_file) else data_dir() / basis_file
    if not path.is_file():
        raise UnihamError(f"CP2K basis file {path} not found")
    try:
        return _basis_index(str(path))[(symbol.capitalize(), name.upper())]
    except KeyError:
        raise UnihamError(f"no basis {name} for {symbol} in {path}") from None


def potential_name(basis: Cp2kBasis, xc: str = "PBE") -> str:
    """GTH pseudopotential matching the basis' valence, e.g. GTH-PBE-q4 (checked in GTH_POTENTIALS)."""
    q = basis.valence
    if q is None:
        raise UnihamError(f"basis {basis.name} of {basis.symbol} states no valence (-qN alias): "
                          "cannot pick its GTH pseudopotential")
    name = f"GTH-{xc.upper()}-q{q}"
    if name.upper() not in _potential_names(str(data_dir() / DEFAULT_POTENTIAL_FILE)).get(basis.symbol, ()):
        raise UnihamError(f"no pseudopotential {name} for {basis.symbol} in {DEFAULT_POTENTIAL_FILE}")
    return name


def _potential_names(path: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for (sym, _), names in _potentials(path).items():
        out.setdefault(sym, set()).update(names[1])
    return out


@cache
def _potentials(path: str) -> dict[tuple[str, str], tuple[float, set[str]]]:
    """{(symbol, first name): (smallest GTH radius in Bohr, all names)} of a GTH_POTENTIALS file.

    Block: ``Sym NAMES``, electrons per l, ``rloc nexp C1..``, ``nprj``, then per projector
    ``r_l n_l h_11 ...`` followed by n_l - 1 continuation lines of the h matrix.
    """
    lines = [ln.split("#")[0] for ln in Path(path).read_text().splitlines()]
    out, i = {}, 0
    while i < len(lines):
        tok = lines[i].split()
        if len(tok) >= 2 and tok[0][0].isalpha() and tok[1].upper().startswith("GTH"):
            try:
                radii = [float(lines[i + 2].split()[0])]
                nprj, j = int(lines[i + 3].split()[0]), i + 4
                for _ in range(nprj):
                    t = lines[j].split()
                    radii.append(float(t[0]))
                    j += max(1, int(t[1]))
            except (IndexError, ValueError):
                i += 1
                continue
            out[(tok[0].capitalize(), tok[1].upper())] = (min(radii), {t.upper() for t in tok[1:]})
            i = j
        else:
            i += 1
    return out


def potential_radius(symbol: str, name: str) -> float:
    """Smallest radius (Bohr) of GTH pseudopotential ``name`` (local or projector): its hardness."""
    for (sym, _), (r, names) in _potentials(str(data_dir() / DEFAULT_POTENTIAL_FILE)).items():
        if sym == symbol.capitalize() and name.upper() in names:
            return r
    raise UnihamError(f"no pseudopotential {name} for {symbol} in {DEFAULT_POTENTIAL_FILE}")


def elements_with_basis(name: str = DEFAULT_BASIS, basis_file: str = DEFAULT_BASIS_FILE) -> list[str]:
    """Symbols that have basis ``name`` and a matching GTH-PBE pseudopotential."""
    out = []
    for (sym, n), b in _basis_index(str(data_dir() / basis_file)).items():
        if n == name.upper() and sym not in out:
            try:
                potential_name(b)
            except UnihamError:
                continue
            out.append(sym)
    return out


def pyscf_mole(symbols, positions_ang: np.ndarray, bases: dict[str, Cp2kBasis]):
    """PySCF Mole (no pseudopotential; for integrals only) with the CP2K bases, AOs in CP2K shell order.

    Coordinates are converted with CP2K's Bohr constant. Returns (mole, per-atom AO offsets).
    """
    from pyscf import gto

    mol = gto.Mole()
    mol.atom = [(s, tuple(p / CP2K_BOHR_ANG)) for s, p in zip(symbols, np.asarray(positions_ang))]
    mol.unit = "Bohr"
    mol.basis = {s: bases[s].pyscf_basis() for s in set(symbols)}
    mol.cart = False
    mol.verbose = 0
    mol.spin = int(sum(gto.charge(s) for s in symbols)) % 2
    mol.build()
    offsets = [0]
    slices = mol.aoslice_by_atom()  # (once: it is O(atoms) itself)
    for a, s in enumerate(symbols):
        ls = [int(mol.bas_angular(b)) for b in range(*slices[a][:2])]
        if ls != [sh.l for sh in bases[s].shells]:
            raise UnihamError(f"PySCF reordered the shells of {s} ({ls}); cannot map to CP2K order")
        offsets.append(int(slices[a][3]))
    return mol, np.array(offsets)


# S from integrals is cheap: keep it to 1e-7 per primitive pair. At 1e-5 (CP2K's EPS_PGF_ORB at
# EPS_DEFAULT 1e-10) a rattled Bi2 cell's S(k) has an eigenvalue of -2e-4; at 1e-7 and 1e-9, +5.6e-4.
OVERLAP_EPS = 1e-7


def min_exponent(basis: Cp2kBasis) -> float:
    """The most diffuse primitive exponent of a basis (Bohr^-2): it sets how far the basis reaches."""
    return float(min(e for sh in basis.pyscf_basis() for e, *_ in sh[1:]))


def overlap_range(bases: dict[str, Cp2kBasis], eps: float = OVERLAP_EPS) -> dict[tuple[str, str], float]:
    """Distance (Angstrom) per element pair beyond which every primitive overlap is below ``eps``.

    Two Gaussians with exponents a, b at distance d overlap as exp(-a b / (a + b) d^2) (times a
    normalisation <= 1); the pair's most diffuse exponents set the range (eps 1e-7: Si-Si 10.2 A,
    Y-Y 14.7 A, Cs-Cs 18.4 A; eps 1e-5: 8.6, 12.5, 15.5 A). A Hamiltonian's H may stop earlier (store or
    model cutoff): S must not, or S(k) stops being positive definite (a Y cell with S cut at 10 A has an
    eigenvalue of -0.03)."""
    amin = {x: min_exponent(b) for x, b in bases.items()}
    out = {}
    for x, a in amin.items():
        for y, b in amin.items():
            out[(x, y)] = float(np.sqrt(np.log(1 / eps) * (a + b) / (a * b))) * CP2K_BOHR_ANG
    return out


def overlap_pairs(atoms, bases: dict[str, Cp2kBasis], eps: float = OVERLAP_EPS
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Off-site pairs within their :func:`overlap_range`: ``i``, ``j`` (E,) and lattice shift ``R`` (E, 3),
    sorted by (i, j, R); both directions are present. Images only along periodic directions (a box is
    given to molecules); positions and cell in Angstrom. Vectorized, linear in the number of atoms."""
    from ase.neighborlist import primitive_neighbor_list

    from uniham.structure import ensure_box

    box = ensure_box(atoms)
    if not len(box):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    symbols = box.get_chemical_symbols()
    kinds = list(dict.fromkeys(symbols))
    rng = overlap_range({x: bases[x] for x in kinds}, eps)
    table = np.array([[rng[(x, y)] for y in kinds] for x in kinds])
    code = np.array([kinds.index(x) for x in symbols])
    i, j, shift, d = primitive_neighbor_list("ijSd", box.pbc, box.cell.array, box.positions, float(table.max()),
                                             self_interaction=False)
    keep = d <= table[code[i], code[j]]
    i, j, shift = i[keep], j[keep], shift[keep].astype(np.int64)
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), shift[order]


def overlap_keys(atoms, bases: dict[str, Cp2kBasis], eps: float = OVERLAP_EPS) -> list[tuple]:
    """Every (R1, R2, R3, i, j) whose atoms lie within their pair's :func:`overlap_range` (on-site included)."""
    i, j, shift = overlap_pairs(atoms, bases, eps)
    keys = {(0, 0, 0, a, a) for a in range(len(atoms))}
    keys.update((int(r[0]), int(r[1]), int(r[2]), int(a), int(b)) for a, b, r in zip(i, j, shift))
    return sorted(keys)


def overlap_over_range(atoms, bases: dict[str, Cp2kBasis], also=()) -> dict:
    """S_ij(R) blocks (uniham order) on every pair within :func:`overlap_range` plus the keys ``also``
    (e.g. H's, so that S is defined wherever H is). A Hamiltonian's H may stop at a shorter cutoff; S must
    not, or S(k) loses positive definiteness."""
    keys = sorted(set(also) | set(overlap_keys(atoms, bases)))
    return overlap_blocks(atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array, bases, keys)


def overlap_blocks(symbols, positions_ang: np.ndarray, cell_ang: np.ndarray, bases: dict[str, Cp2kBasis],
                   keys) -> dict:
    """S_ij(R) = <phi_i(r - tau_i)|phi_j(r - tau_j - R)> in uniham order for the given (R1,R2,R3,i,j) keys.

    ``positions_ang`` (n_atoms, 3) and ``cell_ang`` (3, 3, rows = lattice vectors) in Angstrom.
    One PySCF ``intor_cross`` per lattice vector R between the home cell and the cell shifted by R.
    """
    from pyscf import gto
    from pyscf.gto.mole import PTR_COORD

    mol, offsets = pyscf_mole(symbols, positions_ang, bases)
    shifted = mol.copy()
    ptr = shifted._atm[:, PTR_COORD]
    home = mol.atom_coords()  # Bohr
    lattice = np.asarray(cell_ang) / CP2K_BOHR_ANG
    u = {s: _pyscf_to_uniham(bases[s]) for s in set(symbols)}
    by_r: dict = {}
    for k in keys:
        by_r.setdefault(tuple(k[:3]), []).append(k)
    out = {}
    for r, ks in by_r.items():
        coords = home + np.asarray(r) @ lattice
        for a in range(mol.natm):
            shifted._env[ptr[a]:ptr[a] + 3] = coords[a]
        s = gto.intor_cross("int1e_ovlp", mol, shifted)
        for key in ks:
            i, j = key[3], key[4]
            blk = s[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]]
            out[key] = u[symbols[i]] @ blk @ u[symbols[j]].T
    return out


def _pyscf_to_uniham(basis: Cp2kBasis) -> np.ndarray:
    ob = basis.orbital_basis()
    u = np.zeros((ob.dim, ob.dim))
    for sl, l in zip(ob.slices(), ob.shells):
        u[sl, sl] = code_to_uniham("pyscf", l)
    return u

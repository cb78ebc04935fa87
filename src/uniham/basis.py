"""Atomic-orbital bases: shells, the one orbital order uniham uses, and converters from other codes.

The uniham convention (used by every file we write and by the network):

* An atom's orbitals are its shells in the order given (e.g. ``"2s2p1d"`` = s, s, p, p, d), each
  shell expanded into ``2l+1`` real spherical harmonics ordered m = -l, ..., +l.
* The real spherical harmonics are the "Wikipedia" ones (no Condon-Shortley phase):
  l=1: (y, z, x); l=2: (xy, yz, 3z^2-r^2, xz, x^2-y^2); l=3: (y(3x^2-y^2), xyz, y(5z^2-r^2),
  z(5z^2-3r^2), x(5z^2-r^2), z(x^2-y^2), x(x^2-3y^2)), all with positive prefactors.
  This is the order of CP2K, of e3nn (for l=1: y, z, x) and of the DeepH-dock interchange format.
* Under a rotation (or improper rotation) ``Q`` acting on positions, r -> Q r, a block transforms as
  ``H'_ij = D_i(Q) H_ij D_j(Q)^T`` with ``Y(Q r) = D(Q) Y(r)`` (see :func:`wigner_d`).

Each code's own order is converted at the reader/engine boundary with :func:`code_to_uniham`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import sph_harm_y

from uniham.errors import UnihamError

SHELL_LETTERS = "spdfghi"


@dataclass(frozen=True)
class OrbitalBasis:
    """The shells of one atom, e.g. ``OrbitalBasis.parse("2s2p1d")``.

    ``shells`` is the tuple of angular momenta in storage order, e.g. (0, 0, 1, 1, 2).
    """

    shells: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> OrbitalBasis:
        """Parse "2s2p1d" (counts may be omitted: "spd")."""
        tokens = re.findall(r"(\d*)([a-zA-Z])", text.strip())
        if not tokens or "".join(n + c for n, c in tokens) != text.strip():
            raise UnihamError(f"cannot parse orbital basis {text!r} (expected e.g. '2s2p1d')")
        shells: list[int] = []
        for count, letter in tokens:
            if letter.lower() not in SHELL_LETTERS:
                raise UnihamError(f"unknown shell letter {letter!r} in basis {text!r}")
            shells += [SHELL_LETTERS.index(letter.lower())] * int(count or 1)
        return cls(tuple(shells))

    @classmethod
    def from_ls(cls, ls) -> OrbitalBasis:
        return cls(tuple(int(l) for l in ls))

    @property
    def dim(self) -> int:
        """Number of orbitals, sum of 2l+1."""
        return sum(2 * l + 1 for l in self.shells)

    @property
    def lmax(self) -> int:
        return max(self.shells) if self.shells else 0

    def slices(self) -> list[slice]:
        """One slice per shell into the atom's orbital vector."""
        out, start = [], 0
        for l in self.shells:
            out.append(slice(start, start + 2 * l + 1))
            start += 2 * l + 1
        return out

    def orbital_l(self) -> np.ndarray:
        """(dim,) angular momentum of every orbital."""
        return np.concatenate([[l] * (2 * l + 1) for l in self.shells]).astype(int) if self.shells else np.zeros(0, int)

    def orbital_m(self) -> np.ndarray:
        """(dim,) magnetic quantum number of every orbital (uniham order m=-l..l)."""
        return np.concatenate([np.arange(-l, l + 1) for l in self.shells]).astype(int) if self.shells else np.zeros(0, int)

    def _runs(self) -> list[tuple[int, int]]:
        """Consecutive runs of equal l as (l, count)."""
        from itertools import groupby

        return [(l, len(list(g))) for l, g in groupby(self.shells)]

    @property
    def irreps(self) -> str:
        """e3nn-style irreps string, parity (-1)^l: "2x0e+2x1o+1x2e"."""
        return "+".join(f"{n}x{l}{'e' if l % 2 == 0 else 'o'}" for l, n in self._runs())

    def __str__(self) -> str:
        return "".join(f"{n}{SHELL_LETTERS[l]}" for l, n in self._runs())


# --------------------------------------------------------------------------- real harmonics

def real_spherical_harmonics(l: int, xyz: np.ndarray) -> np.ndarray:
    """Real spherical harmonics of degree ``l`` in uniham order, shape (..., 2l+1).

    ``xyz``: (..., 3) directions (normalized here). Y_{l,m>0} = sqrt2 (-1)^m Re Y_l^m,
    Y_{l,m<0} = sqrt2 (-1)^m Im Y_l^{|m|}, Y_{l,0} = Y_l^0, with the complex Y_l^m of SciPy (which
    carry the Condon-Shortley phase, cancelled here), so that l=1 is (y, z, x) with positive signs.
    """
    xyz = np.asarray(xyz, dtype=float)
    r = np.linalg.norm(xyz, axis=-1)
    theta = np.arccos(np.clip(xyz[..., 2] / r, -1.0, 1.0))
    phi = np.arctan2(xyz[..., 1], xyz[..., 0])
    out = np.empty(xyz.shape[:-1] + (2 * l + 1,))
    for m in range(-l, l + 1):
        y = sph_harm_y(l, abs(m), theta, phi)
        if m > 0:
            out[..., m + l] = np.sqrt(2) * (-1) ** m * y.real
        elif m < 0:
            out[..., m + l] = np.sqrt(2) * (-1) ** m * y.imag
        else:
            out[..., l] = y.real
    return out


@lru_cache(maxsize=16)
def _sample_points(l: int) -> np.ndarray:
    rng = np.random.default_rng(1234 + l)
    return rng.normal(size=(4 * (2 * l + 1) + 8, 3))


def wigner_d(l: int, q: np.ndarray) -> np.ndarray:
    """Real (2l+1)x(2l+1) matrix D with Y_l(Q r) = D Y_l(r), for any orthogonal 3x3 ``q``.

    Improper rotations are allowed: inversion gives (-1)^l times the identity.
    """
    q = np.asarray(q, dtype=float)
    pts = _sample_points(l)
    y0 = real_spherical_harmonics(l, pts)  # (n, 2l+1)
    y1 = real_spherical_harmonics(l, pts @ q.T)
    d, *_ = np.linalg.lstsq(y0, y1, rcond=None)  # y1 = y0 @ d  ->  D = d^T
    return d.T


def wigner_d_basis(basis: OrbitalBasis, q: np.ndarray) -> np.ndarray:
    """Block-diagonal D over all shells of an atom, shape (dim, dim)."""
    out = np.zeros((basis.dim, basis.dim))
    cache: dict[int, np.ndarray] = {}
    for l, sl in zip(basis.shells, basis.slices()):
        if l not in cache:
            cache[l] = wigner_d(l, q)
        out[sl, sl] = cache[l]
    return out


# --------------------------------------------------------------------------- other codes' orders

def _abacus_like_order(l: int) -> list[int]:
    """m order 0, +1, -1, +2, -2, ... (OpenMX for l>=3 and ABACUS for all l)."""
    order = [0]
    for m in range(1, l + 1):
        order += [m, -m]
    return order


def _code_m_order(code: str, l: int) -> tuple[list[int], list[int]]:
    """(m of each orbital in the code's order, sign relative to uniham's real harmonic)."""
    ms = list(range(-l, l + 1))
    if code in ("uniham", "cp2k", "deeph_dock"):
        return ms, [1] * len(ms)
    if code == "pyscf":
        # PySCF's p shell is (px, py, pz); d and higher are m = -l..l, same signs as uniham.
        return ([1, -1, 0] if l == 1 else ms), [1] * len(ms)
    if code == "openmx":  # also the legacy DeepH folders written from OpenMX
        if l == 1:
            return [1, -1, 0], [1, 1, 1]  # px, py, pz
        if l == 2:
            return [0, 2, -2, 1, -1], [1] * 5  # d3z2-r2, dx2-y2, dxy, dxz, dyz
        return _abacus_like_order(l), [1] * (2 * l + 1)
    if code == "siesta":
        # m = -l..l with the Condon-Shortley phase (-1)^m
        return ms, [(-1) ** abs(m) for m in ms]
    if code == "abacus":
        order = _abacus_like_order(l)
        return order, [(-1) ** abs(m) for m in order]
    if code == "fhiaims":
        # FHI-aims orders m = -l..l (basis-indices.out lists m); odd m > 0 carry a minus sign
        return ms, [-1 if (m > 0 and m % 2 == 1) else 1 for m in ms]
    raise UnihamError(f"unknown orbital convention {code!r}")


def code_to_uniham(code: str, l: int) -> np.ndarray:
    """Orthogonal U (2l+1, 2l+1) with ``v_uniham = U @ v_code`` for one shell.

    A block transforms as ``H_uniham = U_i H_code U_j^T``.
    """
    ms, signs = _code_m_order(code, l)
    u = np.zeros((2 * l + 1, 2 * l + 1))
    for col, (m, s) in enumerate(zip(ms, signs)):
        u[m + l, col] = s
    return u


def code_to_uniham_basis(code: str, basis: OrbitalBasis) -> np.ndarray:
    """Block-diagonal U over all shells of one atom, shape (dim, dim)."""
    out = np.zeros((basis.dim, basis.dim))
    for l, sl in zip(basis.shells, basis.slices()):
        out[sl, sl] = code_to_uniham(code, l)
    return out

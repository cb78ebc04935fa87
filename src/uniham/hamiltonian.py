"""The Hamiltonian object: sparse real-space blocks H_ij(R), S_ij(R) and their Bloch sums.

Conventions (DeepH / DeepH-dock):

* ``H_ij(R) = <phi_i(r - tau_i) | H | phi_j(r - tau_j - R)>`` with R an integer lattice vector
  (R1, R2, R3) in units of the cell vectors, i, j 0-based atom indices in the home cell.
* Bloch sum with fractional k in the reciprocal basis, lattice gauge (no atomic positions):
  ``H(k) = sum_R H(R) exp(2 pi i k.R)``.  Hermiticity means ``H_ji(-R) = H_ij(R)^T``.
* Energies in eV; S dimensionless; orbital order within an atom is uniham's (see :mod:`uniham.basis`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from ase import Atoms

from uniham.basis import OrbitalBasis
from uniham.errors import UnihamError

Key = tuple[int, int, int, int, int]  # (R1, R2, R3, i, j)

# Below this many orbitals a k-point's dense solve runs on one BLAS thread: threads gain nothing for such
# matrices, and on a loaded machine their spinning costs up to 45x (Si2, 26 orbitals, 200 k next to two
# CP2K runs on 2 cores: 28 s with numpy's default threads, 0.6 s with one; bench/dense_threads.py).
SMALL_DENSE = 1000
# many-k Bloch sums (Hamiltonian.eigenvalues): the stacked H(R)/S(R) may take this much memory, a batch of
# H(k), S(k) and their products this much
STACK_BYTES = 512 * 2 ** 20
BATCH_BYTES = 256 * 2 ** 20


def dense_loop_threads(norb: int):
    """Context for a loop of dense per-k solves: one BLAS thread below :data:`SMALL_DENSE` orbitals."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1 if norb < SMALL_DENSE else None, user_api="blas")


@dataclass
class Hamiltonian:
    """Real-space Hamiltonian and overlap blocks of one structure.

    atoms: the structure (Angstrom). basis: OrbitalBasis per chemical symbol.
    H: {(R1,R2,R3,i,j): (n_i, n_j) array, eV}. S: its own keys (usually those of H; may reach further, as S from basis integrals does), None = orthogonal basis.
    """

    atoms: Atoms
    basis: dict[str, OrbitalBasis]
    H: dict[Key, np.ndarray]
    S: dict[Key, np.ndarray] | None
    fermi_level: float | None = None
    n_electrons: float | None = None
    spinful: bool = False
    provenance: dict = field(default_factory=dict)

    # ----------------------------------------------------------------- orbitals
    def atom_basis(self, i: int) -> OrbitalBasis:
        return self.basis[self.atoms[i].symbol]

    @property
    def orbital_offsets(self) -> np.ndarray:
        """(n_atoms+1,) start of each atom's orbitals in the full matrix."""
        sizes = [self.atom_basis(i).dim for i in range(len(self.atoms))]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    @property
    def norb(self) -> int:
        return int(self.orbital_offsets[-1])

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Shapes of every block against the basis; raises UnihamError."""
        off = self.orbital_offsets
        n_atoms = len(self.atoms)
        for name, blocks in (("H", self.H), ("S", self.S or {})):
            for key, blk in blocks.items():
                i, j = key[3], key[4]
                if not (0 <= i < n_atoms and 0 <= j < n_atoms):
                    raise UnihamError(f"{name} block {key} names an atom outside 0..{n_atoms - 1}")
                want = (off[i + 1] - off[i], off[j + 1] - off[j])
                if blk.shape != want:
                    raise UnihamError(f"{name} block {key} has shape {blk.shape}, basis says {want}")
                if not np.all(np.isfinite(blk)):
                    raise UnihamError(f"{name} block {key} contains NaN or infinite values")
        onsite = {k[3] for k in self.H if k[:3] == (0, 0, 0) and k[3] == k[4]}
        if self.H and len(onsite) < n_atoms:
            lone = sorted(set(range(n_atoms)) - onsite)
            named = 1 + max(max(k[3], k[4]) for k in self.H)
            raise UnihamError(f"the structure has {n_atoms} atoms but the Hamiltonian has no on-site block for atom(s) "
                              f"{', '.join(map(str, lone[:5]))}{' …' if len(lone) > 5 else ''} (its blocks name "
                              f"{named} atoms): the structure does not match the Hamiltonian")

    def hermiticity_error(self, which: str = "H") -> float:
        """max |M_ij(R) - M_ji(-R)^T| over all stored blocks (a missing partner counts as zero)."""
        blocks = self.H if which == "H" else (self.S or {})
        err = 0.0
        for (r1, r2, r3, i, j), blk in blocks.items():
            partner = blocks.get((-r1, -r2, -r3, j, i))
            other = np.zeros_like(blk) if partner is None else partner.T
            err = max(err, float(np.max(np.abs(blk - other), initial=0.0)))
        return err

    def complete_hermitian(self) -> None:
        """Add M_ji(-R) = M_ij(R)^T wherever only one of the pair is stored (half-stored files)."""
        for blocks in (self.H, self.S if self.S is not None else {}):
            for (r1, r2, r3, i, j), blk in list(blocks.items()):
                blocks.setdefault((-r1, -r2, -r3, j, i), blk.T.copy())
        self.invalidate_cache()

    # ----------------------------------------------------------------- real space -> k space
    def _pattern(self, which: str) -> dict:
        """Flattened entries and the sparsity pattern of M(k), built once per matrix and cached.

        rs (nR, 3) lattice vectors; ridx, vals (nnz,) R index and value of every stored entry;
        inv (nnz,) position of the entry's (row, col) in the pattern; flat, indices, indptr the
        pattern as row-major flat indices and as CSR structure.
        """
        cache = self.__dict__.setdefault("_cache", {})
        if which in cache:
            return cache[which]
        blocks = self.H if which == "H" else self.S
        off, n = self.orbital_offsets, self.norb
        rs = sorted({key[:3] for key in blocks})
        rpos = {r: m for m, r in enumerate(rs)}
        lin, vals, ridx = [], [], []
        for key, blk in blocks.items():
            i, j = key[3], key[4]
            rr, cc = np.meshgrid(np.arange(off[i], off[i + 1]), np.arange(off[j], off[j + 1]), indexing="ij")
            lin.append((rr * n + cc).ravel())
            vals.append(np.asarray(blk, dtype=float).ravel())
            ridx.append(np.full(blk.size, rpos[key[:3]]))
        lin = np.concatenate(lin) if lin else np.zeros(0, int)
        flat, inv = np.unique(lin, return_inverse=True)
        rows = flat // n
        cache[which] = {
            "rs": np.array(rs, dtype=float).reshape(-1, 3),
            "ridx": np.concatenate(ridx) if ridx else np.zeros(0, int),
            "vals": np.concatenate(vals) if vals else np.zeros(0),
            "inv": inv.ravel(), "flat": flat, "indices": flat % n,
            "indptr": np.searchsorted(rows, np.arange(n + 1)),
        }
        return cache[which]

    def invalidate_cache(self) -> None:
        """Forget the cached sparsity pattern (call after editing H or S in place)."""
        self.__dict__.pop("_cache", None)

    def _bloch(self, which: str, k, sparse: bool):
        k = np.asarray(k, dtype=float).reshape(3)
        n = self.norb
        if which == "S" and self.S is None:
            eye = sp.identity(n, dtype=complex, format="csr")
            return eye if sparse else eye.toarray()
        p = self._pattern(which)
        w = p["vals"] * np.exp(2j * np.pi * (p["rs"] @ k))[p["ridx"]]
        # sum the entries that land on the same (row, col) from different R
        data = np.bincount(p["inv"], w.real, len(p["flat"])) + 1j * np.bincount(p["inv"], w.imag, len(p["flat"]))
        if sparse:
            return sp.csr_matrix((data, p["indices"], p["indptr"]), shape=(n, n))
        out = np.zeros(n * n, dtype=complex)
        out[p["flat"]] = data
        return out.reshape(n, n)

    def Hk(self, k, sparse: bool = False):
        """H(k) = sum_R H(R) e^{2 pi i k.R}; k fractional (3,). (norb, norb) complex, eV."""
        return self._bloch("H", k, sparse)

    def Sk(self, k, sparse: bool = False):
        """S(k) = sum_R S(R) e^{2 pi i k.R}; identity for an orthogonal basis."""
        return self._bloch("S", k, sparse)

    def eigh(self, k, vectors: bool = False):
        """Solve H(k) c = e S(k) c. Returns eigenvalues (norb,) in eV (and eigenvectors)."""
        h = self.Hk(k)
        s = self.Sk(k)
        h = 0.5 * (h + h.conj().T)
        s = 0.5 * (s + s.conj().T)
        try:
            return scipy.linalg.eigh(h, s, eigvals_only=not vectors)
        except np.linalg.LinAlgError:
            raise UnihamError(f"overlap S(k) is not positive definite at k={list(np.round(k, 6))}") from None

    def eigenvalues(self, kpts, progress: bool = False) -> np.ndarray:
        """(nk, norb) eigenvalues in eV for fractional k-points (nk, 3), float64.

        Many k at once: H(k), S(k) of a batch of k as real matrix products of the phases with the stacked
        H(R), S(R) (:meth:`_stack`), then batched Cholesky and Hermitian eigenvalues (what LAPACK's zhegv does
        per k). Matrices whose stack would not fit :data:`STACK_BYTES` go one k at a time."""
        from tqdm import tqdm

        kpts = np.atleast_2d(np.asarray(kpts, dtype=float))
        n = self.norb
        if self._stack("H") is None or (self.S is not None and self._stack("S") is None):
            it = tqdm(kpts, desc="diagonalizing", unit="k", disable=not progress, leave=False)
            with dense_loop_threads(n):
                return np.array([self.eigh(k) for k in it])
        batch = max(1, int(BATCH_BYTES // (16 * n * n * 3)))
        out = np.empty((len(kpts), n))
        bar = tqdm(total=len(kpts), desc="diagonalizing", unit="k", disable=not progress, leave=False)
        with dense_loop_threads(n):
            self._eigenvalues_batched(kpts, batch, out, bar)
        bar.close()
        return out

    def _eigenvalues_batched(self, kpts: np.ndarray, batch: int, out: np.ndarray, bar) -> None:
        for b0 in range(0, len(kpts), batch):
            ks = kpts[b0:b0 + batch]
            h = self._bloch_many("H", ks)
            h = 0.5 * (h + np.conj(np.swapaxes(h, 1, 2)))
            if self.S is None:
                out[b0:b0 + len(ks)] = np.linalg.eigvalsh(h)
            else:
                s = self._bloch_many("S", ks)
                s = 0.5 * (s + np.conj(np.swapaxes(s, 1, 2)))
                try:
                    linv = np.linalg.inv(np.linalg.cholesky(s))
                except np.linalg.LinAlgError:  # name the k-point as the one-k path does (LAPACK's own check)
                    for k in ks:
                        self.eigh(k)
                    raise UnihamError("overlap S(k) is not positive definite at one of the k-points "
                                      f"{ks.round(6).tolist()[:3]}…") from None
                out[b0:b0 + len(ks)] = np.linalg.eigvalsh(linv @ h @ np.conj(np.swapaxes(linv, 1, 2)))
            bar.update(len(ks))

    def _stack(self, which: str) -> np.ndarray | None:
        """(nR, nnz) real: the stored entries of M(R) on M's pattern, one row per lattice vector R (cached);
        None when it would exceed :data:`STACK_BYTES`."""
        cache = self.__dict__.setdefault("_cache", {})
        key = "stack_" + which
        if key not in cache:
            p = self._pattern(which)
            nr, nnz = len(p["rs"]), len(p["flat"])
            cache[key] = None if 8 * nr * nnz > STACK_BYTES else \
                np.bincount(p["ridx"] * nnz + p["inv"], p["vals"], nr * nnz).reshape(nr, nnz)
        return cache[key]

    def _bloch_many(self, which: str, kpts: np.ndarray) -> np.ndarray:
        """(nk, norb, norb) complex M(k) for fractional k (nk, 3): cos and sin of the phases times the stack."""
        p, st, n = self._pattern(which), self._stack(which), self.norb
        theta = 2 * np.pi * (kpts @ p["rs"].T)
        vals = np.cos(theta) @ st + 1j * (np.sin(theta) @ st)
        out = np.zeros((len(kpts), n * n), dtype=complex)
        out[:, p["flat"]] = vals
        return out.reshape(len(kpts), n, n)

    # ----------------------------------------------------------------- transforms
    def transformed(self, u_per_atom: list[np.ndarray]) -> Hamiltonian:
        """Blocks U_i M_ij U_j^T for per-atom orthogonal matrices (basis change / rotation)."""
        def tr(blocks):
            return {key: u_per_atom[key[3]] @ b @ u_per_atom[key[4]].T for key, b in blocks.items()}

        return Hamiltonian(self.atoms.copy(), dict(self.basis), tr(self.H), None if self.S is None else tr(self.S),
                           self.fermi_level, self.n_electrons, self.spinful, dict(self.provenance))

    def shifted(self, delta_ev: float) -> Hamiltonian:
        """H + delta*S: the same physics with the energy zero moved by -delta (gauge shift)."""
        if self.S is None:
            raise UnihamError("cannot shift the energy zero of an orthogonal-basis Hamiltonian without S")
        h = {k: v.copy() for k, v in self.H.items()}
        for key, s in self.S.items():
            h[key] = h.get(key, np.zeros_like(s)) + delta_ev * s
        ef = None if self.fermi_level is None else self.fermi_level + delta_ev
        return Hamiltonian(self.atoms.copy(), dict(self.basis), h, self.S, ef, self.n_electrons,
                           self.spinful, dict(self.provenance))

    def max_abs_difference(self, other: Hamiltonian, which: str = "H") -> float:
        """max over all blocks |self - other|; a block missing on one side counts as zero."""
        a = self.H if which == "H" else (self.S or {})
        b = other.H if which == "H" else (other.S or {})
        err = 0.0
        for key in set(a) | set(b):
            x, y = a.get(key), b.get(key)
            if x is None:
                x = np.zeros_like(y)
            if y is None:
                y = np.zeros_like(x)
            if x.shape != y.shape:
                return float("inf")
            err = max(err, float(np.max(np.abs(x - y), initial=0.0)))
        return err

    def summary(self) -> str:
        rs = {k[:3] for k in self.H}
        return (f"{self.atoms.get_chemical_formula()}: {len(self.atoms)} atoms, {self.norb} orbitals, "
                f"{len(self.H)} H blocks over {len(rs)} lattice vectors, "
                f"E_F = {f'{self.fermi_level:.4f}' if self.fermi_level is not None else 'unknown'} eV")

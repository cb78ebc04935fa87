"""Eigenvalues of large Hamiltonians: sparse H(k), S(k) and shift-invert Lanczos near an energy.

H(k) c = e S(k) c is solved for the N eigenvalues closest to ``sigma`` (E_F by default) with ARPACK's
Lanczos (``scipy.sparse.linalg.eigsh``) on (H - sigma S)^{-1} S, the inverse applied through one sparse
direct factorization per k-point:

* ``"pardiso"``: Intel MKL PARDISO through ``pypardiso`` (real matrices: Gamma and other real k), when
  installed (``pip install "uniham[sparse]"``); measured fastest here, see ``bench/eigensolvers.py``;
* ``"superlu"``: SciPy's SuperLU (any k, complex), always available.

Ill-conditioned S: directions of S's near-null space have generalized eigenvalues far from any sigma,
so the shift-invert spectrum near sigma is not polluted by them; the dense solver
(:func:`generalized_eigh`) projects them out explicitly (DeepH's treatment), dropping S eigenvalues below
``min_overlap_eig`` times the largest.

Supercells: :func:`supercell_matrices` assembles the sparse H, S of an (n1, n2, n3) supercell of a
Hamiltonian at a supercell k without building the supercell's blocks; atoms are ordered cell-major
(cell (c1, c2, c3) in C order, then the primitive cell's atoms). At the supercell's Gamma point its
eigenvalues are the primitive cell's at k = (m1/n1, m2/n2, m3/n3): an exact check at any size.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh, splu

from uniham.errors import UnihamError


def supercell_matrices(ham, reps, k=(0.0, 0.0, 0.0)) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Sparse (n_cells * norb)^2 H and S of the ``reps`` supercell at fractional supercell k (eV)."""
    reps = np.array([int(x) for x in reps])
    if reps.shape != (3,) or reps.min() < 1:
        raise UnihamError(f"supercell repetitions {reps.tolist()}: expected three positive integers")
    if np.any((reps > 1) & ~ham.atoms.pbc):
        raise UnihamError("cannot repeat along a non-periodic direction")
    k = np.asarray(k, float)
    real = bool(np.all(np.abs(k * 2 - np.rint(k * 2)) < 1e-12))  # k = 0 or 1/2: real phases, real matrices
    n0, ncell = ham.norb, int(np.prod(reps))
    cells = np.array(np.meshgrid(*[np.arange(n) for n in reps], indexing="ij")).reshape(3, -1).T  # (ncell, 3)
    out = []
    for which in ("H", "S"):
        if which == "S" and ham.S is None:
            out.append(sp.identity(n0 * ncell, dtype=float if real else complex, format="csr"))
            continue
        p = ham._pattern(which)
        flat = p["flat"][p["inv"]]
        rows, cols = flat // n0, flat % n0
        r_int = np.rint(p["rs"][p["ridx"]]).astype(np.int64)  # (nnz, 3)
        vals = p["vals"]
        parts = []
        step = max(1, 2_000_000 // max(1, len(vals)))  # cells per batch: bounded temporaries
        for c0 in range(0, ncell, step):
            cc = cells[c0:c0 + step]
            tgt = cc[:, None, :] + r_int[None, :, :]  # (nc, nnz, 3)
            wrap, rsup = np.mod(tgt, reps), np.floor_divide(tgt, reps)
            cidx = np.ravel_multi_index(wrap.reshape(-1, 3).T, reps).reshape(len(cc), -1)
            phase = np.exp(2j * np.pi * (rsup @ k))
            v = (vals[None, :] * (phase.real if real else phase)).ravel()
            r = (np.arange(len(cc))[:, None] * n0 + rows[None, :]).ravel()
            c = (cidx * n0 + cols[None, :]).ravel()
            blk = sp.csr_matrix((v, (r, c)), shape=(len(cc) * n0, n0 * ncell))
            blk.sum_duplicates()
            parts.append(blk)
        out.append(sp.vstack(parts, format="csr"))
    return out[0], out[1]


def _is_real(m: sp.spmatrix, tol: float = 1e-12) -> bool:
    return not np.iscomplexobj(m.data) or np.abs(m.data.imag).max(initial=0.0) <= tol * np.abs(m.data).max(initial=1.0)


def available_solvers() -> list[str]:
    out = ["superlu"]
    try:
        import pypardiso  # noqa: F401

        out.insert(0, "pardiso")
    except ImportError:
        pass
    return out


class _PardisoFactor:
    """MKL PARDISO LDL^T of a real symmetric indefinite matrix (mtype -2; mtype 2: Cholesky of an SPD one),
    upper triangle, factorized once; each solve is one phase-33 call with the index arrays cached
    (pypardiso's own ``solve`` re-hashes the whole matrix on every call, which dominated the Lanczos time).
    Measured on a 968-atom h-BN SZV supercell (3,872 orbitals): factorization 1.8 s vs SuperLU 10.1 s,
    one solve 0.015 s vs 0.031 s."""

    def __init__(self, a: sp.csr_matrix, mtype: int = -2) -> None:
        import ctypes

        import pypardiso

        self.ctypes = ctypes
        up = sp.triu(a, format="csr")
        up.sum_duplicates()
        up.sort_indices()
        self.a = up
        self.ps = pypardiso.PyPardisoSolver(mtype=mtype)
        # explicit parameters (iparm[0] = 1): METIS ordering, no automatic iterative refinement (PARDISO's
        # default ran two refinement steps per solve: 4x slower solves, same 1e-13 accuracy here), and for
        # indefinite matrices scaling + weighted matching, which keep pivots from being perturbed
        ip = self.ps.iparm
        ip[0], ip[1], ip[7], ip[9], ip[34] = 1, 2, 0, 13 if mtype == -2 else 8, 0
        if mtype == -2:
            ip[10], ip[12] = 1, 1
        self.ps.factorize(up)  # analysis + numerical factorization (phase 12)
        self.ia = (up.indptr + 1).astype(np.int32)
        self.ja = (up.indices + 1).astype(np.int32)

    def solve(self, b: np.ndarray, phase: int = 33) -> np.ndarray:
        """x = A^{-1} b; for an SPD factor (mtype 2) phase 331 applies L^{-1} P and 333 P^T L^{-T} alone."""
        if np.iscomplexobj(b):
            return (self.solve(np.ascontiguousarray(b.real), phase)
                    + 1j * self.solve(np.ascontiguousarray(b.imag), phase))
        ct, ps = self.ctypes, self.ps
        b = np.asfortranarray(b, dtype=np.float64)
        x = np.zeros_like(b)
        err = ct.c_int32(0)
        i32, f64 = ct.POINTER(ct.c_int32), ct.POINTER(ct.c_double)
        ps._mkl_pardiso(ps.pt.ctypes.data_as(ct.POINTER(ps._pt_type[0])), ct.byref(ct.c_int32(1)),
                        ct.byref(ct.c_int32(1)), ct.byref(ct.c_int32(ps.mtype)), ct.byref(ct.c_int32(phase)),
                        ct.byref(ct.c_int32(self.a.shape[0])), self.a.data.ctypes.data_as(f64),
                        self.ia.ctypes.data_as(i32), self.ja.ctypes.data_as(i32), ps.perm.ctypes.data_as(i32),
                        ct.byref(ct.c_int32(1 if b.ndim == 1 else b.shape[1])), ps.iparm.ctypes.data_as(i32),
                        ct.byref(ct.c_int32(ps.msglvl)), b.ctypes.data_as(f64), x.ctypes.data_as(f64),
                        ct.byref(err))
        if err.value != 0:
            raise UnihamError(f"PARDISO solve failed (error {err.value})")
        return x

    def __del__(self) -> None:
        try:
            self.ps.free_memory(everything=True)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _factorize(a: sp.csr_matrix, solver: str):
    """x = solve(b) for the sparse matrix a."""
    if solver == "pardiso":
        return _PardisoFactor(a.real if np.iscomplexobj(a.data) else a).solve
    lu = splu(a.tocsc())
    return lu.solve


def eigs_near(h: sp.spmatrix, s: sp.spmatrix, n: int, sigma: float, solver: str = "auto",
              vectors: bool = False, tol: float = 1e-10):
    """The ``n`` eigenvalues (eV, sorted) of H c = e S c closest to ``sigma`` (eV) by shift-invert Lanczos.

    solver: "auto" (PARDISO when installed and H, S are real, else SuperLU), "pardiso" or "superlu".
    Returns (eigenvalues, info) or (eigenvalues, vectors, info); info has the solver, factorization and
    Lanczos times (s).
    """
    dim = h.shape[0]
    if n >= dim - 1:
        raise UnihamError(f"{n} eigenvalues asked of a {dim}-dimensional problem: use the dense solver")
    real = _is_real(h) and _is_real(s)
    if solver == "auto":
        solver = "pardiso" if real and "pardiso" in available_solvers() else "superlu"
    if solver == "pardiso" and (not real or "pardiso" not in available_solvers()):
        raise UnihamError("PARDISO needs real H, S (Gamma or real k) and pypardiso (pip install pypardiso)")
    if solver not in ("pardiso", "superlu"):
        raise UnihamError(f"unknown sparse solver {solver!r}: choose auto, pardiso or superlu")
    if real:
        h, s = h.real.tocsr(), s.real.tocsr()
    t0 = time.perf_counter()
    solve = _factorize((h - sigma * s).tocsr(), solver)
    t1 = time.perf_counter()
    op = LinearOperator(h.shape, matvec=solve, dtype=h.dtype)
    try:
        # a generous Krylov space: exactly degenerate multiplets (perfect supercells) need room
        res = eigsh(h, k=n, M=s, sigma=sigma, which="LM", OPinv=op, tol=tol, return_eigenvectors=vectors,
                    ncv=min(dim, max(2 * n + 1, n + 40)))
    except Exception as exc:  # noqa: BLE001 - ARPACK raises several types
        raise UnihamError(f"shift-invert Lanczos failed near {sigma} eV: {exc}") from None
    t2 = time.perf_counter()
    info = {"solver": solver, "dim": dim, "nnz_H": int(h.nnz), "factorize_s": t1 - t0, "lanczos_s": t2 - t1,
            "sigma_eV": float(sigma)}
    if vectors:
        e, v = res
        order = np.argsort(e)
        return e[order], v[:, order], info
    return np.sort(res), info


def generalized_eigh(h: np.ndarray, s: np.ndarray, min_overlap_eig: float = 1e-7) -> np.ndarray:
    """Dense eigenvalues of H c = e S c; near-singular directions of S (eigenvalue < min_overlap_eig
    times the largest) are projected out, so fewer eigenvalues may come back."""
    h = 0.5 * (h + h.conj().T)
    s = 0.5 * (s + s.conj().T)
    lam, u = np.linalg.eigh(s)
    if lam[0] < -min_overlap_eig * lam[-1]:
        raise UnihamError(f"overlap matrix has a negative eigenvalue ({lam[0]:.3e}): not a valid S")
    keep = lam > min_overlap_eig * lam[-1]
    x = u[:, keep] / np.sqrt(lam[keep])
    return scipy.linalg.eigvalsh(x.conj().T @ h @ x)


def sparse_band_energies(ham, kpts, n: int, sigma: float, solver: str = "auto", procs: int = 1,
                         progress: bool = True) -> tuple[np.ndarray, list[dict]]:
    """(nk, n) eigenvalues nearest ``sigma`` along fractional k-points, k-points over ``procs`` processes."""
    from tqdm import tqdm

    kpts = np.atleast_2d(np.asarray(kpts, float))
    if procs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(procs, initializer=_init_worker, initargs=(ham, n, sigma, solver)) as ex:
            res = list(tqdm(ex.map(_worker, list(kpts)), total=len(kpts), desc="sparse eigensolver", unit="k",
                            disable=not progress, leave=False))
    else:
        _init_worker(ham, n, sigma, solver)
        res = [_worker(k) for k in tqdm(kpts, desc="sparse eigensolver", unit="k", disable=not progress, leave=False)]
    return np.array([r[0] for r in res]), [r[1] for r in res]


def window_gap(eigs: np.ndarray, fermi: float) -> dict:
    """Gap between the highest eigenvalue <= E_F and the lowest above it, over all k and all computed
    bands (sparse results hold the N bands nearest an energy, not fixed band indices, so band-crossing
    tests do not apply; a metal shows a gap of the order of the k-spacing)."""
    eigs = np.asarray(eigs)
    below, above = eigs[eigs <= fermi], eigs[eigs > fermi]
    if not below.size or not above.size:
        return {"gap_eV": None, "vbm_eV": None, "cbm_eV": None, "direct_gap_eV": None}
    vbm, cbm = float(below.max()), float(above.min())
    return {"gap_eV": cbm - vbm, "vbm_eV": vbm, "cbm_eV": cbm, "direct_gap_eV": None}


_STATE: dict = {}


def _init_worker(ham, n, sigma, solver) -> None:
    _STATE.update(ham=ham, n=n, sigma=sigma, solver=solver)


def _worker(k):
    ham = _STATE["ham"]
    return eigs_near(ham.Hk(k, sparse=True), ham.Sk(k, sparse=True), _STATE["n"], _STATE["sigma"], _STATE["solver"])

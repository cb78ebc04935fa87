"""Density of states of large systems by the kernel polynomial method (linear scaling in size).

For the generalized problem H c = e S c the DOS is rho(E) = sum_n delta(E - e_n) = Tr delta(E - S^{-1} H)
(a trace is similarity invariant, so the non-orthogonal basis needs only S^{-1} applied to vectors: one
sparse Cholesky/LDL^T factorization of S, done once). With S^{-1} H mapped into [-1, 1] by its spectral
bounds (a, b: e = a x + b), the Chebyshev moments mu_m = Tr T_m(x) are estimated stochastically with R
random +-1 vectors (error ~ 1/sqrt(R * norb)), damped by the Jackson kernel (resolution ~ pi a / M) and
summed on an energy grid. Cost: M * R sparse products H v and solves S^{-1} w; memory: a few vectors.

Output: states/eV for the whole structure, spin-degenerate (factor 2), like the k-mesh DOS.

Stochastic error: f(S^{-1} H) is not Hermitian in a non-orthogonal basis and its +-1 trace estimator has
a large variance when S is ill-conditioned (measured: the occupied count of a predicted 64-atom Si cell,
S condition ~ 700, off by 10 % with 8 vectors). With PARDISO the recursion runs on the Hermitian
L^{-1} P H P^T L^{-T} (Cholesky P S P^T = L L^T, the two triangular halves applied separately): same
spectrum, orthonormal-basis variance ~ 1/sqrt(R * norb). Without it (complex k, no MKL) the oblique form
S^{-1} H is used. The exact trace (``vectors=None``) is there for checks.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh, splu

from uniham.errors import UnihamError


def _s_solver(s: sp.spmatrix):
    try:
        from uniham.properties.eigensolvers import _PardisoFactor, available_solvers

        if "pardiso" in available_solvers() and not np.iscomplexobj(s.data):
            return _PardisoFactor(s.tocsr()).solve
    except ImportError:
        pass
    return splu(s.tocsc()).solve


def _cholesky(s: sp.spmatrix):
    """PARDISO Cholesky of a real SPD S (forward/backward halves usable apart), or None."""
    try:
        from uniham.properties.eigensolvers import _PardisoFactor, available_solvers
    except ImportError:
        return None
    if "pardiso" not in available_solvers() or np.iscomplexobj(s.data):
        return None
    return _PardisoFactor(s.tocsr(), mtype=2)


def spectral_bounds(h: sp.spmatrix, s: sp.spmatrix, solve_s, pad: float = 0.02) -> tuple[float, float]:
    """(e_min, e_max) of H c = e S c, padded by ``pad`` of the width (Lanczos, loose tolerance)."""
    minv = LinearOperator(h.shape, matvec=solve_s, dtype=h.dtype)
    kw = {"k": 1, "M": s, "Minv": minv, "tol": 1e-4, "return_eigenvectors": False}
    try:
        hi = float(np.max(eigsh(h, which="LA", **kw)))
        lo = float(np.min(eigsh(h, which="SA", **kw)))
    except Exception as exc:  # noqa: BLE001 - ARPACK raises several types
        raise UnihamError(f"could not bound the spectrum for KPM: {exc}") from None
    w = hi - lo
    return lo - pad * w, hi + pad * w


def kpm_moments(h: sp.spmatrix, s: sp.spmatrix, bounds: tuple[float, float], moments: int, vectors: int | None,
                seed: int = 0, progress: bool = True, per_vector: bool = False) -> np.ndarray:
    """Chebyshev moments mu_m ~ Tr T_m((S^{-1} H - b) / a), m < ``moments``.

    vectors: number of random +-1 vectors (stochastic trace), or None for the exact trace over all unit
    vectors (small systems: tests).
    """
    from tqdm import tqdm

    h, s = h.tocsr(), s.tocsr()
    lo, hi = bounds
    a, b = (hi - lo) / 2, (hi + lo) / 2
    n = h.shape[0]
    rng = np.random.default_rng(seed)
    dt = np.complex128 if np.iscomplexobj(h.data) or np.iscomplexobj(s.data) else np.float64
    block = n if vectors is None else vectors
    each = np.zeros((block, moments))
    chol = _cholesky(s)
    if chol is not None:
        # the Hermitian form L^{-1} P H P^T L^{-T} (P S P^T = L L^T): same spectrum, low-variance trace
        def apply(v):
            w = chol.solve(np.asfortranarray(v), 333)
            return (chol.solve(np.asfortranarray(h @ w), 331).reshape(v.shape) - b * v) / a
    else:
        solve_s = _s_solver(s)

        def apply(v):
            return (np.asarray(solve_s(h @ v)).reshape(v.shape) - b * v) / a

    # all starting vectors at once as columns: one multi-right-hand-side solve per step
    chunk = min(block, 64)
    bar = tqdm(total=moments * block, desc="KPM moments", unit="step", disable=not progress, leave=False)
    for c0 in range(0, block, chunk):
        nc = min(chunk, block - c0)
        if vectors is None:
            r = np.zeros((n, nc), dt)
            r[np.arange(c0, c0 + nc), np.arange(nc)] = 1.0
        else:
            r = rng.choice([-1.0, 1.0], size=(n, nc)).astype(dt)
        v0, v1 = r, apply(r)
        each[c0:c0 + nc, 0] = np.real(np.sum(r.conj() * v0, axis=0))
        each[c0:c0 + nc, 1] = np.real(np.sum(r.conj() * v1, axis=0))
        for m in range(2, moments):
            v0, v1 = v1, 2 * apply(v1) - v0
            each[c0:c0 + nc, m] = np.real(np.sum(r.conj() * v1, axis=0))
        bar.update(moments * nc)
    bar.close()
    if per_vector:
        return each
    return each.sum(axis=0) / (1 if vectors is None else vectors)


def dos_from_moments(mu: np.ndarray, bounds: tuple[float, float], energies: np.ndarray) -> np.ndarray:
    """Jackson-damped Chebyshev series of the DOS (states/eV, spin factor 2) on ``energies`` (eV)."""
    moments = len(mu)
    lo, hi = bounds
    a, b = (hi - lo) / 2, (hi + lo) / 2
    m = np.arange(moments)
    jackson = ((moments - m + 1) * np.cos(np.pi * m / (moments + 1))
               + np.sin(np.pi * m / (moments + 1)) / np.tan(np.pi / (moments + 1))) / (moments + 1)
    x = (np.asarray(energies, float) - b) / a
    # the ends of the padded bounds hold no state; a grid point on a bound can land a rounding inside (|x| = 1 - 1e-16),
    # where 1/sqrt(1 - x^2) would put thousands of states/eV on it
    inside = np.abs(x) < 1 - 1e-9
    dos = np.zeros(len(x))
    xi = x[inside]
    t_prev, t_cur = np.ones_like(xi), xi.copy()
    acc = jackson[0] * mu[0] * t_prev + 2 * jackson[1] * mu[1] * t_cur
    for k in range(2, moments):
        t_prev, t_cur = t_cur, 2 * xi * t_cur - t_prev
        acc += 2 * jackson[k] * mu[k] * t_cur
    dos[inside] = 2.0 * acc / (np.pi * np.sqrt(1 - xi**2) * a)  # spin factor 2; dx/dE = 1/a
    return dos


def kpm_dos(h: sp.spmatrix, s: sp.spmatrix, energies: np.ndarray, moments: int = 512, vectors: int | None = 16,
            seed: int = 0, progress: bool = True, bounds: tuple[float, float] | None = None) -> dict:
    """KPM DOS (states/eV, spin factor 2) of H c = e S c on ``energies`` (eV).

    Returns {"dos_per_eV", "bounds_eV", "moments", "vectors", "seconds", "resolution_eV"}.
    """
    if moments < 2 or (vectors is not None and vectors < 1):
        raise UnihamError("KPM needs at least 2 moments and 1 random vector")
    t0 = time.perf_counter()
    if bounds is None:
        bounds = spectral_bounds(h.tocsr(), s.tocsr(), _s_solver(s.tocsr()))
    mu = kpm_moments(h, s, bounds, moments, vectors, seed, progress)
    return {"dos_per_eV": dos_from_moments(mu, bounds, energies), "bounds_eV": list(bounds), "moments": moments,
            "vectors": vectors, "seconds": time.perf_counter() - t0,
            "resolution_eV": float(np.pi * (bounds[1] - bounds[0]) / 2 / moments), "mu": mu}


def kpm_fermi_level(h: sp.spmatrix, s: sp.spmatrix, n_electrons: float, moments: int = 1024, vectors: int = 16,
                    progress: bool = True) -> tuple[float, float]:
    """E_F (eV) of ``n_electrons`` from the KPM-integrated DOS; returns (E_F, resolution_eV).

    The stochastic count has an absolute error that grows like sqrt(norb / R) (tens of electrons for
    thousands of atoms), far more than one state, so "where the count reaches N" alone lands inside a band.
    Instead: among the energies whose count is within 3 standard errors of N (the spread over the random
    vectors), the lowest-DOS point is taken; if the DOS there is gap-like (< 2 % of the mean DOS in that
    window) E_F is the centre of that gap, else (a metal) where the mean count equals N.
    """
    h, s = h.tocsr(), s.tocsr()
    bounds = spectral_bounds(h, s, _s_solver(s))
    en = np.linspace(bounds[0], bounds[1], 20 * moments)
    each = kpm_moments(h, s, bounds, moments, vectors, progress=progress, per_vector=True)
    de = en[1] - en[0]
    cums = np.array([np.cumsum(dos_from_moments(m, bounds, en)) * de for m in each])  # (R, nE)
    cum, err = cums.mean(axis=0), cums.std(axis=0, ddof=1) / np.sqrt(len(cums))
    dos = np.gradient(cum, de)
    resolution = float(np.pi * (bounds[1] - bounds[0]) / 2 / moments)
    if cum[-1] < n_electrons:
        raise UnihamError(f"{n_electrons} electrons do not fit in the {cum[-1]:.0f} states of the basis")
    window = np.abs(cum - n_electrons) <= 3 * err + 0.5
    if not window.any():
        window[np.argmin(np.abs(cum - n_electrons))] = True
    idx = np.nonzero(window)[0]
    k = idx[np.argmin(dos[idx])]
    if dos[k] < 0.02 * max(dos[idx].mean(), 1e-12) or dos[k] < 1e-3:
        low = dos < max(2 * dos[k], 1e-3)
        lo = hi = k
        while lo > 0 and low[lo - 1]:
            lo -= 1
        while hi < len(en) - 1 and low[hi + 1]:
            hi += 1
        return float(0.5 * (en[lo] + en[hi])), resolution
    return float(np.interp(n_electrons, cum, en)), resolution

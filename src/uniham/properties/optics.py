"""Independent-particle electric susceptibility chi(omega) from a Hamiltonian in a non-orthogonal basis.

Conventions (all documented here, where they live):

* **Gauge of the Bloch sums.** uniham's H(k) uses lattice phases e^{2 pi i k.R} (DeepH). Optical matrix
  elements need the *atomic* gauge, in which every entry carries the phase of the vector between the two
  orbitals' centres, d = R + tau_j - tau_i (Cartesian, Angstrom):
  M^a_ij(K) = sum_R M_ij(R) e^{i K.d}, K = 2 pi k @ reciprocal (Angstrom^-1, Cartesian). Same eigenvalues;
  dM^a/dK_alpha = sum_R i d_alpha M_ij(R) e^{i K.d} is then the velocity of the tight-binding model.
* **Non-orthogonal basis.** Velocities are matrix elements of dH~/dK for the Loewdin-orthonormalised
  Hamiltonian H~ = S^{-1/2} H S^{-1/2}; d(S^{-1/2}) follows from dS exactly (divided differences in the
  eigenbasis of S). This makes the model one Hermitian family H~(K) in an orthonormal basis, for which the
  f-sum rule below is exact. Intra-atomic dipoles beyond the two-centre picture are not included.
* **Susceptibility** (SI, dimensionless; eps_r = 1 + chi), length gauge, interband only (no Drude term for
  metals), spin-degenerate bands (factor 2):

      chi_ab(w) = (2 e^2 / (eps0 V N_k)) sum_k sum_{n != m} (f_n - f_m) r^a_nm r^b_mn / (e_m - e_n - hbar w - i0)
      r_nm = i <n| dH~/dK |m> / (e_m - e_n)

  The delta function i pi delta(x) is broadened to a Gaussian of width sigma ("broadening", eV) and its
  principal-value partner to (sqrt 2/sigma) Dawson(x / (sqrt 2 sigma)) -- a causal pair, so Re and Im obey
  Kramers-Kronig exactly in the continuum. e^2/eps0 = 4 pi 14.3996 eV Angstrom.
* **Checks** returned with every result: the f-sum rule for insulators,
  int_0^inf hbar w Im chi_aa dw = (pi e^2 / (eps0 V N_k)) sum_k sum_n f_n <n| d^2 H~/dK_a^2 |n>
  (left: all transitions, whatever the plotted window; right: finite differences of H~(K); the two agree
  as the k-mesh converges, since the identity uses sum_k d^2 E_band/dK^2 = 0), and the Kramers-Kronig
  transform of Im chi against Re chi on the window.
"""
from __future__ import annotations

import numpy as np
from scipy.special import dawsn, expit

from uniham.errors import UnihamError

E2_OVER_EPS0 = 4 * np.pi * 14.399645  # e^2 / eps0 in eV * Angstrom
AXES = "xyz"


class AtomicGaugeBloch:
    """H^a(K), S^a(K) and their Cartesian K-derivatives for one Hamiltonian (dense, small cells)."""

    def __init__(self, ham) -> None:
        self.ham = ham
        self.n = ham.norb
        off = ham.orbital_offsets
        orb_atom = np.repeat(np.arange(len(ham.atoms)), np.diff(off))
        pos, cell = ham.atoms.positions, ham.atoms.cell.array
        self.recip = 2 * np.pi * ham.atoms.cell.reciprocal()
        self.parts = {}
        for which in ("H", "S"):
            if which == "S" and ham.S is None:
                continue
            p = ham._pattern(which)
            flat = p["flat"][p["inv"]]
            rows, cols = flat // self.n, flat % self.n
            d = p["rs"][p["ridx"]] @ cell + pos[orb_atom[cols]] - pos[orb_atom[rows]]
            self.parts[which] = (flat, p["vals"], d)

    def cart(self, kfrac) -> np.ndarray:
        return np.asarray(kfrac, float) @ self.recip

    def matrices_many(self, kfrac: np.ndarray, which: str, order: int = 1) -> np.ndarray:
        """(1 + 3·order, nk, n, n) complex: M(K) and dM/dK_x,y,z for many fractional k at once, as matrix
        products of the lattice phases with the stacked blocks (:meth:`uniham.hamiltonian.Hamiltonian._stack`)
        times the atomic phases e^{iK·(τ_j - τ_i)}."""
        n, kfrac = self.n, np.atleast_2d(np.asarray(kfrac, float))
        nk = len(kfrac)
        if which not in self.parts:
            out = np.zeros((1 + 3 * order, nk, n, n), complex)
            out[0] = np.eye(n)
            return out
        ham = self.ham
        p, st = ham._pattern(which), ham._stack(which)
        theta = 2 * np.pi * (kfrac @ p["rs"].T)                        # (nk, nR): K·(R·A)
        c, sn = np.cos(theta), np.sin(theta)
        lat = [c @ st + 1j * (sn @ st)]                               # Σ_R M(R) e^{iK·RA}, on the pattern
        if order:
            ra = p["rs"] @ self.ham.atoms.cell.array                   # (nR, 3) Cartesian R
            lat += [1j * (c @ (st * ra[:, a, None]) + 1j * (sn @ (st * ra[:, a, None]))) for a in range(3)]
        off = ham.orbital_offsets
        orb_atom = np.repeat(np.arange(len(ham.atoms)), np.diff(off))
        pos = ham.atoms.positions
        flat = p["flat"]
        dtau = pos[orb_atom[flat % n]] - pos[orb_atom[flat // n]]      # (nnz, 3) τ_j - τ_i
        K = self.cart(kfrac)
        ph = np.exp(1j * (K @ dtau.T))                                 # (nk, nnz)
        vals = [ph * lat[0]] + [ph * (lat[1 + a] + 1j * dtau[:, a] * lat[0]) for a in range(3 if order else 0)]
        out = np.zeros((len(vals), nk, n * n), complex)
        for m, v in enumerate(vals):
            out[m][:, flat] = v
        out = out.reshape(len(vals), nk, n, n)
        out[0] = 0.5 * (out[0] + np.conj(np.swapaxes(out[0], -1, -2)))
        return out

    def lowdin_many(self, kfrac: np.ndarray) -> np.ndarray:
        """(nk, n, n) H~(K) = S^{-1/2} H S^{-1/2} for many fractional k."""
        h = self.matrices_many(kfrac, "H", 0)[0]
        s = self.matrices_many(kfrac, "S", 0)[0]
        lam, u = np.linalg.eigh(s)
        x = (u / np.sqrt(lam)[:, None, :]) @ np.conj(np.swapaxes(u, -1, -2))
        return x @ h @ x


def velocities(bloch: AtomicGaugeBloch, kfrac, min_eig: float = 1e-7):
    """Eigenvalues e (n,) eV, Loewdin eigenvectors u (n, n) and <n|dH~/dK_a|m> (3, n, n) eV*Angstrom at one
    fractional k (:func:`velocities_many` on one point)."""
    e, u, v = velocities_many(bloch, np.atleast_2d(np.asarray(kfrac, float)), min_eig)
    return e[0], u[0], v[0]


def velocities_many(bloch: AtomicGaugeBloch, kfrac: np.ndarray, min_eig: float = 1e-7):
    """:func:`velocities` for many fractional k at once: e (nk, n), u (nk, n, n), v (nk, 3, n, n)."""
    h, *dh = bloch.matrices_many(kfrac, "H")
    s, *ds = bloch.matrices_many(kfrac, "S")
    lam, us = np.linalg.eigh(s)
    if lam[:, 0].min() < min_eig:
        raise UnihamError(f"overlap S(k) is near-singular (smallest eigenvalue {lam[:, 0].min():.2e}); optics needs "
                          "a well-conditioned basis")
    r = lam ** -0.5
    diff = lam[:, :, None] - lam[:, None, :]
    same = np.abs(diff) < 1e-12 * lam.max(axis=1)[:, None, None]
    f = np.where(same, -0.5 * lam[:, :, None] ** -1.5, (r[:, :, None] - r[:, None, :]) / np.where(same, 1.0, diff))
    ush = np.conj(np.swapaxes(us, -1, -2))
    x = (us * r[:, None, :]) @ ush
    dx = [us @ ((ush @ d @ us) * f) @ ush for d in ds]
    ht = x @ h @ x
    e, u = np.linalg.eigh(0.5 * (ht + np.conj(np.swapaxes(ht, -1, -2))))
    uh = np.conj(np.swapaxes(u, -1, -2))
    v = np.stack([uh @ (x @ dh[a] @ x + dx[a] @ h @ x + x @ h @ dx[a]) @ u for a in range(3)], axis=1)
    return e, u, v


def curvature_many(bloch: AtomicGaugeBloch, kfrac: np.ndarray, u: np.ndarray, step: float = 2e-3) -> np.ndarray:
    """(nk, 3, n) <n| d^2 H~/dK_a^2 |n> (eV·Å²) by central finite differences of H~(K), for many k."""
    kfrac = np.atleast_2d(kfrac)
    to_frac = np.linalg.inv(bloch.recip)  # Cartesian K step -> fractional k step
    mid = bloch.lowdin_many(kfrac)
    out = np.empty((len(kfrac), 3, u.shape[-1]))
    for a in range(3):
        dk = np.zeros(3)
        dk[a] = step
        m = (bloch.lowdin_many(kfrac + dk @ to_frac) - 2 * mid + bloch.lowdin_many(kfrac - dk @ to_frac)) / step**2
        out[:, a] = np.real(np.einsum("kin,kij,kjn->kn", u.conj(), m, u))
    return out


def velocity_fd(bloch: AtomicGaugeBloch, kfrac, u: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """<n| dH~/dK_a |m> (3, n, n) from central finite differences of H~(K): the independent check."""
    to_frac = np.linalg.inv(bloch.recip)  # Cartesian K step -> fractional k step
    steps = step * np.eye(3) @ to_frac
    m = (bloch.lowdin_many(kfrac + steps) - bloch.lowdin_many(kfrac - steps)) / (2 * step)
    return u.conj().T @ m @ u


class TransitionLines:
    """Σ_transitions W_c · [L(ΔE − ω) and its anti-resonant partner] on the ω grid, for every component c.

    A line per transition costs n_ω special functions; instead each transition's weight is shared between
    the two nearest nodes of an energy grid (linear interpolation), and the line shapes are evaluated once
    per node at the end. Nodes are σ/40 apart up to ω_max + 12σ (interpolation error of the Gaussian and
    Dawson lines ~ (δ/σ)²/8 ≈ 1e-4 of a line) and σ/4 beyond, where only the smooth ~1/(ΔE − ω) tail of the
    dispersive part reaches the window. ``exact``: one line per transition (the reference)."""

    def __init__(self, omega: np.ndarray, sigma: float, components, exact: bool = False) -> None:
        self.omega, self.sigma, self.exact = omega, sigma, exact
        self.fine_top = float(omega.max()) + 12 * sigma
        self.fine = np.arange(0.0, self.fine_top + sigma / 40, sigma / 40)
        self.coarse_step = sigma / 4
        self.hist = {c: np.zeros(len(self.fine), complex) for c in components}
        self.far: dict[int, dict] = {}   # coarse node index -> {c: weight}
        self.direct = {c: np.zeros(len(omega), complex) for c in components}

    def add(self, de: np.ndarray, weights: dict) -> None:
        """Transitions of energies ``de`` (npairs,) eV > 0 with complex weights {c: (npairs,)}."""
        if self.exact:
            res = line_shape(de[:, None] - self.omega[None, :], self.sigma)
            anti = np.conj(line_shape(de[:, None] + self.omega[None, :], self.sigma))
            for c, w in weights.items():
                self.direct[c] += w @ res + np.conj(w) @ anti
            return
        near = de < self.fine_top
        self._bin(self.hist, de[near] / (self.sigma / 40), {c: w[near] for c, w in weights.items()}, len(self.fine))
        if (~near).any():
            x = (de[~near] - self.fine_top) / self.coarse_step
            top = int(np.floor(x.max())) + 2
            for c, w in weights.items():
                h = self.far.setdefault(c, np.zeros(0, complex))
                if len(h) < top:
                    h = self.far[c] = np.concatenate([h, np.zeros(top - len(h), complex)])
            self._bin(self.far, x, {c: w[~near] for c, w in weights.items()}, None)

    @staticmethod
    def _bin(hist: dict, x: np.ndarray, weights: dict, n: int | None) -> None:
        i = np.floor(x).astype(int)
        t = x - i
        for c, w in weights.items():
            size = n or len(hist[c])
            i0 = np.minimum(i, size - 1)
            hist[c] += np.bincount(i0, (1 - t) * w.real, size) + 1j * np.bincount(i0, (1 - t) * w.imag, size)
            i1 = np.minimum(i + 1, size - 1)
            hist[c] += np.bincount(i1, t * w.real, size) + 1j * np.bincount(i1, t * w.imag, size)

    def nodes(self, c: str) -> tuple[np.ndarray, np.ndarray]:
        """(energies, weights) of every non-empty node of component ``c`` (all transitions, binned)."""
        nodes, hh = self.fine, self.hist[c]
        far = self.far.get(c)
        if far is not None and len(far):
            nodes = np.concatenate([nodes, self.fine_top + self.coarse_step * np.arange(len(far))])
            hh = np.concatenate([hh, far])
        keep = np.abs(hh) > 0
        return nodes[keep], hh[keep]

    def absorption_beyond(self, c: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(ω', Im of the summed lines) on a grid of the window's step from 0 past the highest transition
        (+ 8σ): the whole absorption spectrum, for a Kramers-Kronig check that needs no truncated tail.
        None with exact lines (no histogram)."""
        if self.exact:
            return None
        nodes, w = self.nodes(c)
        step = float(np.min(np.diff(self.omega))) if len(self.omega) > 1 else self.sigma / 4
        top = max(float(nodes.max(initial=0.0)), float(self.omega.max())) + 8 * self.sigma
        grid = np.arange(0.0, top + step, step)
        im = np.zeros(len(grid))
        g = lambda x: np.exp(-0.5 * (x / self.sigma) ** 2) / (self.sigma * np.sqrt(2 * np.pi))  # noqa: E731
        for b0 in range(0, len(nodes), 2048):
            nd, ww = nodes[b0:b0 + 2048], w[b0:b0 + 2048]
            im += np.pi * (ww.real @ g(nd[:, None] - grid[None, :]) - ww.real @ g(nd[:, None] + grid[None, :]))
        return grid, im

    def chi(self) -> dict:
        """{c: (n_ω,) complex} the summed lines (before the prefactor)."""
        if self.exact:
            return self.direct
        out = {}
        for c in self.hist:
            nodes, hh = self.nodes(c)
            acc = np.zeros(len(self.omega), complex)
            for b0 in range(0, len(nodes), 4096):
                nd, w = nodes[b0:b0 + 4096], hh[b0:b0 + 4096]
                acc += w @ line_shape(nd[:, None] - self.omega[None, :], self.sigma)
                acc += np.conj(w) @ np.conj(line_shape(nd[:, None] + self.omega[None, :], self.sigma))
            out[c] = acc
        return out


def line_shape(x: np.ndarray, sigma: float) -> np.ndarray:
    """Broadened 1/(x - i0) = P(1/x) + i pi delta(x): Dawson + i Gaussian (a Kramers-Kronig pair)."""
    g = np.exp(-0.5 * (x / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return np.sqrt(2) / sigma * dawsn(x / (np.sqrt(2) * sigma)) + 1j * np.pi * g


def susceptibility(ham, kmesh, omega: np.ndarray, broadening: float = 0.1, fermi: float | None = None,
                   kT: float = 0.01, components=("xx", "yy", "zz"), progress: bool = True,
                   sum_rule: bool = True, exact_lines: bool = False) -> dict:
    """chi_ab(omega) on a Gamma-centred k-mesh; see the module docstring for conventions.

    omega: (nw,) photon energies hbar*w in eV (>= 0). Returns omega, chi {ab: complex (nw,)}, eps (1 + chi),
    fermi_eV, the f-sum rule per diagonal component (insulators), the Kramers-Kronig residual and
    ``n_eff``: the number of electrons per cell the f-sum integral corresponds to with the free-electron
    mass (what a complete basis would give; a localized basis gives less). Line shapes are summed through
    :class:`TransitionLines` (binned transition energies; ``exact_lines``: one line per transition).
    """
    from tqdm import tqdm

    omega = np.asarray(omega, float)
    if np.any(omega < 0):
        raise UnihamError("photon energies must be >= 0 eV")
    if broadening <= 0:
        raise UnihamError("broadening must be > 0 eV")
    kmesh = tuple(int(x) for x in kmesh)
    kpts, vol = _optics_mesh(ham, kmesh)
    nk = len(kpts)
    gap = None
    if fermi is None:
        fermi, gap = _optics_fermi(ham, kpts, progress)
    bloch = AtomicGaugeBloch(ham)
    lines = TransitionLines(omega, broadening, components, exact=exact_lines)
    acc = {"fsum_lhs": np.zeros(3), "fsum_rhs": np.zeros(3), "gapped": True}
    batch = max(1, int(2e8 // (16 * 20 * ham.norb ** 2)))  # ~20 (n, n) complex arrays per k in flight
    bar = tqdm(total=nk, desc="optics", unit="k", disable=not progress, leave=False)
    for b0 in range(0, nk, batch):
        kb = kpts[b0:b0 + batch]
        es, us, vs = velocities_many(bloch, kb)
        curv = curvature_many(bloch, kb, us) if sum_rule else None
        for i in range(len(kb)):
            _add_transitions(lines, acc, es[i], vs[i], None if curv is None else curv[i], fermi, kT, components)
        bar.update(len(kb))
    bar.close()
    pref = 2 * E2_OVER_EPS0 / (vol * nk)
    chi = {c: pref * x for c, x in lines.chi().items()}
    out = {"omega_eV": omega, "chi": chi, "eps": {c: (1.0 if c[0] == c[1] else 0.0) + x for c, x in chi.items()},
           "fermi_eV": float(fermi), "kmesh": list(kmesh), "n_k": nk, "broadening_eV": broadening,
           "volume_A3": vol, "insulating": acc["gapped"], "gap_eV": gap["gap_eV"] if gap else None}
    if sum_rule:
        out["f_sum_rule"] = _f_sum_rules(omega, chi, acc, vol, nk, components)
    out["kramers_kronig"] = {}
    for c in components:
        if c[0] == c[1]:
            full = lines.absorption_beyond(c)
            out["kramers_kronig"][c] = kk_residual(omega, chi[c], None if full is None else (full[0], pref * full[1]))
    return out


def _optics_mesh(ham, kmesh: tuple) -> tuple[np.ndarray, float]:
    """(the distinct fractional k of a Gamma-centred mesh, only along periodic directions; the cell volume A^3)."""
    grids = [np.arange(n) / n for n in kmesh]
    kpts = np.array(np.meshgrid(*grids, indexing="ij")).reshape(3, -1).T * ham.atoms.pbc
    vol = abs(ham.atoms.cell.volume)
    if vol < 1e-6:
        raise UnihamError("optics needs a periodic cell with a volume")
    return np.unique(np.round(kpts, 12), axis=0), vol


def _optics_fermi(ham, kpts: np.ndarray, progress: bool) -> tuple[float, dict]:
    """(E_F, the gap) from a pre-pass over the mesh; an insulator's E_F mid-gap (occupations exactly 0 or 1)."""
    from uniham.properties.bands import resolve_fermi
    from uniham.properties.electrons import band_gap

    eigs = ham.eigenvalues(kpts, progress=progress)
    fermi = resolve_fermi(ham, eigs=eigs)[0]
    gap = band_gap(eigs, fermi)
    if gap["gap_eV"] > 0:
        fermi = 0.5 * (gap["vbm_eV"] + gap["cbm_eV"])
    return fermi, gap


def _add_transitions(lines, acc: dict, e: np.ndarray, v: np.ndarray, curv, fermi: float, kT: float, components) -> None:
    """One k's interband transitions (eigenvalues e (n,), velocities v (3, n, n)) into ``lines``, and its f-sum
    terms (``curv``: <n|d^2 H~/dK_a^2|n> (3, n), or None) and occupations into ``acc``."""
    comps = [(AXES.index(c[0]), AXES.index(c[1])) for c in components]
    f = expit(-(e - fermi) / kT)
    if np.any((f > 1e-9) & (f < 1 - 1e-9)):
        acc["gapped"] = False
    de = e[None, :] - e[:, None]  # e_m - e_n
    df = f[:, None] - f[None, :]  # f_n - f_m
    n_idx, m_idx = np.nonzero((df > 1e-10) & (np.abs(de) > 1e-8))
    dem = de[n_idx, m_idx]
    w = df[n_idx, m_idx]
    r = 1j * v[:, n_idx, m_idx] / dem  # r_nm (3, npairs), Angstrom
    # pair (n, m) with f_n > f_m and its reverse (m, n): r^a_mn r^b_nm = conj(r^a_nm) conj(r^b_mn)
    lines.add(dem, {c: w * r[a] * np.conj(r[b]) for c, (a, b) in zip(components, comps)})
    if curv is not None:
        acc["fsum_lhs"] += np.sum(w * np.abs(r) ** 2 * dem, axis=1)  # the exact int_0^inf of the broadened lines
        acc["fsum_rhs"] += curv @ f


def _f_sum_rules(omega: np.ndarray, chi: dict, acc: dict, vol: float, nk: int, components) -> dict:
    """Per diagonal component: the f-sum over all transitions against the expected (the occupied bands' inverse
    effective masses), the part inside the omega window, and n_eff; valid for insulators."""
    # hbar^2 / m_e = 7.619964 eV Angstrom^2: n_eff = (2 m eps0 V / (pi e^2 hbar^2)) int E Im chi dE
    rhs = np.pi * E2_OVER_EPS0 / (vol * nk) * acc["fsum_rhs"]
    lhs_all = 2 * E2_OVER_EPS0 / (vol * nk) * np.pi * acc["fsum_lhs"]
    rules = {}
    for c in components:
        if c[0] != c[1]:
            continue
        a = AXES.index(c[0])
        window = float(np.trapezoid(omega * chi[c].imag, omega))
        rules[c] = {"all_transitions_eV": float(lhs_all[a]), "expected_eV": float(rhs[a]),
                    "relative_error": float(abs(lhs_all[a] - rhs[a]) / abs(rhs[a])) if rhs[a] else None,
                    "in_window_eV": window, "fraction_in_window": float(window / lhs_all[a]) if lhs_all[a] else None,
                    "n_eff": float(2 * vol * lhs_all[a] / (np.pi * E2_OVER_EPS0 * 7.619964)),
                    "valid": acc["gapped"]}
    return rules


def kramers_kronig_real(omega: np.ndarray, im: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """Re chi(w) = (2/pi) P int_0^wmax w' Im chi(w') / (w'^2 - w^2) dw' on the grid (singularity subtracted),
    at the grid indices ``at`` (default: every point)."""
    omega = np.asarray(omega, float)
    wmax = omega[-1]
    idx = np.arange(len(omega)) if at is None else np.asarray(at)
    out = np.zeros(len(idx))
    g = omega * im
    for o, i in enumerate(idx):
        w = omega[i]
        den = omega**2 - w**2
        num = g - g[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            integrand = np.where(np.abs(den) > 0, num / den, 0.0)
        if 0 < i < len(omega) - 1:  # the removable point: derivative of g over 2w
            integrand[i] = (g[i + 1] - g[i - 1]) / (omega[i + 1] - omega[i - 1]) / (2 * w)
        if w == 0:
            pv = -1.0 / wmax
        elif w == wmax:
            pv = 0.0  # log-divergent edge: the point is outside the window kk_residual compares
        else:
            pv = np.log(abs((wmax - w) / (wmax + w))) / (2 * w)
        out[o] = 2 / np.pi * (np.trapezoid(integrand, omega) + g[i] * pv)
    return out


def kk_residual(omega: np.ndarray, chi: np.ndarray, full: tuple | None = None) -> dict:
    """Max |Re chi - KK[Im chi]| over the lower half of the window, relative to max |Re chi|. ``full``:
    (ω', Im chi(ω')) of the whole absorption spectrum on a grid with the window's step, which then gives the
    transform (the window alone lacks the tail of transitions above it, a residual of percents; "tail": whether
    it was included)."""
    half = omega <= 0.5 * omega[-1]
    if full is not None and np.allclose(full[0][:len(omega)], omega, atol=1e-9):
        re_kk = kramers_kronig_real(full[0], full[1], np.nonzero(half)[0])
    else:
        full = None
        re_kk = kramers_kronig_real(omega, chi.imag)[half]
    err = np.abs(re_kk - chi.real[half])
    return {"max_abs": float(err.max()), "relative_to_max_re": float(err.max() / np.abs(chi.real).max()),
            "window_eV": [float(omega[0]), float(omega[half][-1])], "tail": full is not None}


def plot_eps(result: dict, path, emax: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = result["omega_eV"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    # components equal to 1e-3 (cubic crystals: xx = yy = zz) are drawn once, their labels joined
    groups: list[tuple[list[str], np.ndarray]] = []
    for c, e in result["eps"].items():
        for names, ref in groups:
            if np.allclose(e, ref, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(ref).max()))):
                names.append(c)
                break
        else:
            groups.append(([c], e))
    for n, (names, e) in enumerate(groups):
        lab = "=".join(names)
        ax.plot(w, e.real, color=f"C{n}", label=f"Re ε_{lab}")
        ax.plot(w, e.imag, "--", color=f"C{n}", label=f"Im ε_{lab}")
    ax.axhline(0, color="k", lw=0.5)
    if emax:
        ax.set_xlim(w[0], min(emax, w[-1]))
    ax.set_xlabel("photon energy ħω (eV)")
    ax.set_ylabel("ε_r(ω) = 1 + χ(ω)")
    mesh = "×".join(map(str, result["kmesh"])) if isinstance(result["kmesh"], (list, tuple)) else result["kmesh"]
    ax.set_title(f"independent-particle ε(ω), {mesh} k, σ = {result['broadening_eV']} eV", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)

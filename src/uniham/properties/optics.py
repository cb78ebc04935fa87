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
from uniham.hamiltonian import dense_loop_threads

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

    def matrices(self, K, which: str, order: int = 1) -> list[np.ndarray]:
        """[M(K), dM/dK_x, dM/dK_y, dM/dK_z] (order 1) or just [M(K)] (order 0); (n, n) complex each."""
        if which not in self.parts:
            eye = np.eye(self.n, dtype=complex)
            return [eye] + [np.zeros_like(eye)] * (3 if order else 0)
        flat, vals, d = self.parts[which]
        w = vals * np.exp(1j * (d @ K))
        out = [w] + ([1j * d[:, a] * w for a in range(3)] if order else [])
        res = []
        for x in out:
            m = np.bincount(flat, x.real, self.n * self.n) + 1j * np.bincount(flat, x.imag, self.n * self.n)
            m = m.reshape(self.n, self.n)
            res.append(0.5 * (m + m.conj().T) if x is w else m)
        return res

    def lowdin(self, K) -> np.ndarray:
        """H~(K) = S^{-1/2} H S^{-1/2} (n, n)."""
        h = self.matrices(K, "H", 0)[0]
        s = self.matrices(K, "S", 0)[0]
        lam, u = np.linalg.eigh(s)
        x = (u / np.sqrt(lam)) @ u.conj().T
        return x @ h @ x


def _inv_sqrt_and_derivative(s: np.ndarray, ds: list[np.ndarray], min_eig: float):
    lam, u = np.linalg.eigh(s)
    if lam[0] < min_eig:
        raise UnihamError(f"overlap S(k) is near-singular (smallest eigenvalue {lam[0]:.2e}); optics needs a "
                          f"well-conditioned basis")
    r = lam ** -0.5
    diff = lam[:, None] - lam[None, :]
    same = np.abs(diff) < 1e-12 * lam.max()
    f = np.where(same, -0.5 * lam[:, None] ** -1.5, (r[:, None] - r[None, :]) / np.where(same, 1.0, diff))
    x = (u * r) @ u.conj().T
    dx = [u @ ((u.conj().T @ d @ u) * f) @ u.conj().T for d in ds]
    return x, dx


def velocities(bloch: AtomicGaugeBloch, kfrac, min_eig: float = 1e-7):
    """Eigenvalues e (n,) eV, Loewdin eigenvectors u (n, n) and <n|dH~/dK_a|m> (3, n, n) eV*Angstrom."""
    K = bloch.cart(kfrac)
    h, *dh = bloch.matrices(K, "H")
    s, *ds = bloch.matrices(K, "S")
    x, dx = _inv_sqrt_and_derivative(s, ds, min_eig)
    ht = x @ h @ x
    e, u = np.linalg.eigh(0.5 * (ht + ht.conj().T))
    dht = [x @ dh[a] @ x + dx[a] @ h @ x + x @ h @ dx[a] for a in range(3)]
    v = np.array([u.conj().T @ m @ u for m in dht])
    return e, u, v


def curvature_fd(bloch: AtomicGaugeBloch, kfrac, u: np.ndarray, axis: int, step: float = 2e-3) -> np.ndarray:
    """<n| d^2 H~/dK_axis^2 |n> (n,) by central finite differences of H~(K) (eV * Angstrom^2)."""
    K = bloch.cart(kfrac)
    dk = np.zeros(3)
    dk[axis] = step
    m = (bloch.lowdin(K + dk) - 2 * bloch.lowdin(K) + bloch.lowdin(K - dk)) / step**2
    return np.real(np.einsum("in,ij,jn->n", u.conj(), m, u))


def velocity_fd(bloch: AtomicGaugeBloch, kfrac, u: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """<n| dH~/dK_a |m> (3, n, n) from central finite differences of H~(K): the independent check."""
    K = bloch.cart(kfrac)
    out = []
    for a in range(3):
        dk = np.zeros(3)
        dk[a] = step
        m = (bloch.lowdin(K + dk) - bloch.lowdin(K - dk)) / (2 * step)
        out.append(u.conj().T @ m @ u)
    return np.array(out)


def line_shape(x: np.ndarray, sigma: float) -> np.ndarray:
    """Broadened 1/(x - i0) = P(1/x) + i pi delta(x): Dawson + i Gaussian (a Kramers-Kronig pair)."""
    g = np.exp(-0.5 * (x / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return np.sqrt(2) / sigma * dawsn(x / (np.sqrt(2) * sigma)) + 1j * np.pi * g


def susceptibility(ham, kmesh, omega: np.ndarray, broadening: float = 0.1, fermi: float | None = None,
                   kT: float = 0.01, components=("xx", "yy", "zz"), progress: bool = True,
                   sum_rule: bool = True) -> dict:
    """chi_ab(omega) on a Gamma-centred k-mesh; see the module docstring for conventions.

    omega: (nw,) photon energies hbar*w in eV (>= 0). Returns omega, chi {ab: complex (nw,)}, eps (1 + chi),
    fermi_eV, the f-sum rule per diagonal component (insulators), the Kramers-Kronig residual and
    ``n_eff``: the number of electrons per cell the f-sum integral corresponds to with the free-electron
    mass (what a complete basis would give; a localized basis gives less).
    """
    from tqdm import tqdm

    from uniham.properties.bands import resolve_fermi
    from uniham.properties.electrons import band_gap

    omega = np.asarray(omega, float)
    if np.any(omega < 0):
        raise UnihamError("photon energies must be >= 0 eV")
    if broadening <= 0:
        raise UnihamError("broadening must be > 0 eV")
    comps = [(AXES.index(c[0]), AXES.index(c[1])) for c in components]
    kmesh = tuple(int(x) for x in kmesh)
    grids = [np.arange(n) / n for n in kmesh]
    kpts = np.array(np.meshgrid(*grids, indexing="ij")).reshape(3, -1).T
    kpts = kpts * ham.atoms.pbc
    kpts = np.unique(np.round(kpts, 12), axis=0)
    nk = len(kpts)
    vol = abs(ham.atoms.cell.volume)
    if vol < 1e-6:
        raise UnihamError("optics needs a periodic cell with a volume")
    bloch = AtomicGaugeBloch(ham)
    gap = None
    if fermi is None:  # a pre-pass over the mesh only when E_F must be found
        eigs = ham.eigenvalues(kpts, progress=progress)
        fermi = resolve_fermi(ham, eigs=eigs)[0]
        gap = band_gap(eigs, fermi)
        if gap["gap_eV"] > 0:  # an insulator: E_F mid-gap, occupations exactly 0 or 1
            fermi = 0.5 * (gap["vbm_eV"] + gap["cbm_eV"])
    chi = {c: np.zeros(len(omega), complex) for c in components}
    fsum_rhs = np.zeros(3)
    fsum_lhs = np.zeros(3)
    gapped = True
    with dense_loop_threads(ham.norb):  # small dense solves per k: one BLAS thread
        for k in tqdm(kpts, desc="optics", unit="k", disable=not progress, leave=False):
            e, u, v = velocities(bloch, k)
            f = expit(-(e - fermi) / kT)
            if np.any((f > 1e-9) & (f < 1 - 1e-9)):
                gapped = False
            de = e[None, :] - e[:, None]  # e_m - e_n
            df = f[:, None] - f[None, :]  # f_n - f_m
            pair = (df > 1e-10) & (np.abs(de) > 1e-8)
            n_idx, m_idx = np.nonzero(pair)
            dem = de[n_idx, m_idx]
            w = df[n_idx, m_idx]
            r = 1j * v[:, n_idx, m_idx] / dem  # r_nm (3, npairs), Angstrom
            res = line_shape(dem[:, None] - omega[None, :], broadening)  # (npairs, nw)
            anti = np.conj(line_shape(dem[:, None] + omega[None, :], broadening))
            for c, (a, b) in zip(components, comps):
                # pair (n, m) with f_n > f_m and its reverse (m, n): r^a_mn r^b_nm = conj(r^a_nm) conj(r^b_mn)
                prod = r[a] * np.conj(r[b])  # r^a_nm r^b_mn
                chi[c] += (w * prod) @ res + (w * np.conj(prod)) @ anti
            if sum_rule:
                for a in range(3):
                    fsum_lhs[a] += np.sum(w * np.abs(r[a]) ** 2 * dem)  # the exact int_0^inf of the broadened lines
                    fsum_rhs[a] += np.sum(f * curvature_fd(bloch, k, u, a))
    pref = 2 * E2_OVER_EPS0 / (vol * nk)
    chi = {c: pref * x for c, x in chi.items()}
    out = {"omega_eV": omega, "chi": chi, "eps": {c: (1.0 if c[0] == c[1] else 0.0) + x for c, x in chi.items()},
           "fermi_eV": float(fermi), "kmesh": list(kmesh), "n_k": nk, "broadening_eV": broadening,
           "volume_A3": vol, "insulating": gapped, "gap_eV": gap["gap_eV"] if gap else None}
    if sum_rule:
        # hbar^2 / m_e = 7.619964 eV Angstrom^2: n_eff = (2 m eps0 V / (pi e^2 hbar^2)) int E Im chi dE
        rhs = np.pi * E2_OVER_EPS0 / (vol * nk) * fsum_rhs
        lhs_all = pref * np.pi * fsum_lhs
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
                        "valid": gapped}
        out["f_sum_rule"] = rules
    out["kramers_kronig"] = {c: kk_residual(omega, chi[c]) for c in components if c[0] == c[1]}
    return out


def kramers_kronig_real(omega: np.ndarray, im: np.ndarray) -> np.ndarray:
    """Re chi(w) = (2/pi) P int_0^wmax w' Im chi(w') / (w'^2 - w^2) dw' on the grid (singularity subtracted)."""
    omega = np.asarray(omega, float)
    wmax = omega[-1]
    out = np.zeros(len(omega))
    g = omega * im
    for i, w in enumerate(omega):
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
        out[i] = 2 / np.pi * (np.trapezoid(integrand, omega) + g[i] * pv)
    return out


def kk_residual(omega: np.ndarray, chi: np.ndarray) -> dict:
    """Max |Re chi - KK[Im chi]| over the lower half of the grid (the upper half lacks the tail)."""
    re_kk = kramers_kronig_real(omega, chi.imag)
    half = omega <= 0.5 * omega[-1]
    err = np.abs(re_kk[half] - chi.real[half])
    return {"max_abs": float(err.max()), "relative_to_max_re": float(err.max() / np.abs(chi.real).max()),
            "window_eV": [float(omega[0]), float(omega[half][-1])]}


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

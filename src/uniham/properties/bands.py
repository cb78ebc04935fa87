"""Band structures and densities of states from any :class:`~uniham.hamiltonian.Hamiltonian`."""
from __future__ import annotations

import numpy as np

from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.properties.electrons import band_gap, fermi_level, is_gapped
from uniham.properties.kpath import auto_mesh, monkhorst_pack


def mesh_eigenvalues(ham: Hamiltonian, mesh=None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues on a Gamma-centred mesh: (kpts (nk,3), eigs (nk,nb) eV), every mesh point.

    Time reversal: with real H(R), S(R) (uniham's spinless blocks) H(-k) = H(k)*, so ε(-k) = ε(k) and only one
    k of each pair {k, -k mod 1} is solved (about half the mesh)."""
    mesh = tuple(int(x) for x in (mesh or auto_mesh(ham.atoms)))
    k = monkhorst_pack(mesh)
    blocks = list(ham.H.values()) + list((ham.S or {}).values())
    if not all(np.isrealobj(b) for b in blocks):
        return k, ham.eigenvalues(k, progress=progress)
    n = np.asarray(mesh)
    idx = np.rint(k * n).astype(int)  # monkhorst_pack's order is C order of idx
    rep = np.minimum(np.ravel_multi_index(idx.T, mesh), np.ravel_multi_index(np.mod(-idx, n).T, mesh))
    solve, inv = np.unique(rep, return_inverse=True)
    return k, ham.eigenvalues(k[solve], progress=progress)[inv.ravel()]


def resolve_fermi(ham: Hamiltonian, mesh=None, progress: bool = False,
                  eigs: np.ndarray | None = None) -> tuple[float | None, str]:
    """(E_F eV, how): the one E_F convention of ``bands``, ``dos``, ``optics``, ``evaluate`` and the band metric.

    With the electron count known, the mesh is solved: a gapped filling (even count, band N/2 below band N/2+1
    everywhere) gets its valence-band maximum ("electron counting"); a partly filled one (a metal, an open
    shell) gets the DFT code's own E_F when the file carries one (the Hamiltonian is that code's), else the
    level of electron counting on the mesh (Fermi-Dirac, 10 meV). Without an electron count: the file's value.
    ``eigs``: (nk, nb) eigenvalues on an evenly weighted mesh already at hand (else one is solved).
    """
    if ham.n_electrons:
        if eigs is None:
            eigs = mesh_eigenvalues(ham, mesh, progress)[1]
        if not is_gapped(eigs, ham.n_electrons) and ham.fermi_level is not None and np.isfinite(ham.fermi_level):
            return float(ham.fermi_level), "the DFT code's own (partly filled: a metal or an open shell)"
        return fermi_level(eigs, np.ones(len(eigs)), ham.n_electrons), "electron counting"
    if ham.fermi_level is not None:
        return float(ham.fermi_level), "from file"
    return None, "unknown"


def bands_result(ham: Hamiltonian, kpts: np.ndarray, labels: list, fermi: float | None, progress: bool = False) -> dict:
    eigs = ham.eigenvalues(kpts, progress=progress)
    out = {
        "kpoints_frac": np.asarray(kpts).tolist(),
        "labels": labels,
        "energies_eV": eigs.tolist(),
        "fermi_level_eV": fermi,
    }
    if fermi is not None:
        out["gap"] = band_gap(eigs, fermi)
    return out


def gaussian_dos(eigs: np.ndarray, weights: np.ndarray, energies: np.ndarray, sigma: float) -> np.ndarray:
    """DOS (states/eV per cell, spin-degenerate factor 2) with Gaussian broadening sigma (eV).

    On an evenly spaced ``energies`` grid the levels are binned (linear interpolation) on a 4× finer grid and
    convolved with the Gaussian once (FFT): equal to the sum of one Gaussian per level to 1e-5 of the peak at a
    step of σ/10 (4e-4 at σ/2), at a cost independent of the number of k. Other grids (or a step > σ): one
    Gaussian per level."""
    from scipy.signal import fftconvolve

    if sigma <= 0:
        raise UnihamError("broadening must be positive")
    w = np.asarray(weights, float) / np.sum(weights)
    energies = np.asarray(energies, float)
    norm = 2.0 / (np.sqrt(2 * np.pi) * sigma)
    step = np.diff(energies)
    if len(energies) < 3 or np.ptp(step) > 1e-9 * abs(step[0]) or step[0] > sigma:
        out = np.zeros_like(energies, dtype=float)
        for wk, ek in zip(w, eigs):
            out += wk * norm * np.exp(-0.5 * ((energies[:, None] - ek[None, :]) / sigma) ** 2).sum(axis=1)
        return out
    h, pad = step[0] / 4, int(np.ceil(8 * sigma / (step[0] / 4)))
    x = (np.asarray(eigs, float) - energies[0]) / h + pad            # fine-grid coordinate of every level
    wl = np.broadcast_to(w[:, None], x.shape).ravel()
    x = x.ravel()
    n_fine = 4 * (len(energies) - 1) + 1 + 2 * pad
    keep = (x >= 0) & (x < n_fine - 1)
    i, t = np.floor(x[keep]).astype(int), x[keep] - np.floor(x[keep])
    hist = np.bincount(i, (1 - t) * wl[keep], n_fine) + np.bincount(i + 1, t * wl[keep], n_fine)
    kern = norm * np.exp(-0.5 * (h * np.arange(-pad, pad + 1) / sigma) ** 2)
    return fftconvolve(hist, kern, mode="same")[pad:pad + 4 * (len(energies) - 1) + 1:4]


def plot_bands(result: dict, kpts_cart: np.ndarray, path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dx = np.linalg.norm(np.diff(kpts_cart, axis=0), axis=1)
    idx = [i for i, _ in result["labels"]]
    for a, b in zip(idx[:-1], idx[1:]):
        if b == a + 1 and a < len(dx):  # path break ("U|K"): no distance between the two points
            dx[a] = 0.0
    x = np.concatenate([[0], np.cumsum(dx)])
    e = np.array(result["energies_eV"])
    ef = result["fermi_level_eV"]
    ref = ef if ef is not None else 0.0
    if len(e) == 1:  # a molecule: its levels (no k-dependence), occupied ones below E_F in a darker colour
        fig, ax = plt.subplots(figsize=(3, 4.5))
        for lev in e[0] - ref:
            ax.hlines(lev, 0, 1, color="C0" if lev <= 0 else "C1", lw=1.5)
        ax.axhline(0.0, color="k", ls="--", lw=0.8)
        ax.set_xticks([])
        ax.set_ylim(-6, 6) if ef is not None else None
        ax.set_ylabel("E − E_F (eV)" if ef is not None else "E (eV)")
        ax.set_title((title + " " if title else "") + "levels", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=150)
        plt.close(fig)
        return
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(x, e - ref, color="C0", lw=1.2)
    for idx, lab in result["labels"]:
        ax.axvline(x[idx], color="0.7", lw=0.8)
    ticks = {}
    for idx, lab in result["labels"]:
        ticks.setdefault(x[idx], []).append("Γ" if lab == "G" else lab)
    ax.set_xticks(list(ticks), ["|".join(dict.fromkeys(v)) for v in ticks.values()])
    ax.axhline(0.0, color="k", ls="--", lw=0.8)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-6, 6) if ef is not None else None
    ax.set_ylabel("E − E_F (eV)" if ef is not None else "E (eV)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_dos(energies: np.ndarray, dos: np.ndarray, fermi: float | None, path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = fermi if fermi is not None else 0.0
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(energies - ref, dos, color="C1")
    ax.fill_between(energies - ref, dos, where=energies <= ref, color="C1", alpha=0.3)
    ax.axvline(0, color="k", ls="--", lw=0.8)
    ax.set_xlabel("E − E_F (eV)" if fermi is not None else "E (eV)")
    ax.set_ylabel("DOS (states / eV / cell)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)

"""Fermi level by electron counting, band gaps. Spinless: every band holds 2 electrons."""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from uniham.errors import UnihamError


def is_gapped(eigs: np.ndarray, n_electrons: float) -> bool:
    """Whether ``n_electrons`` fill whole bands with a gap: an even count, band N/2 entirely below band N/2+1
    on these k (eigs (nk, nb), eV; the rule :func:`fermi_level` puts E_F at the valence-band maximum by)."""
    nocc = n_electrons / 2
    if abs(nocc - round(nocc)) > 1e-8 or not 0 < round(nocc) <= eigs.shape[1]:
        return False
    nv = int(round(nocc))
    return nv == eigs.shape[1] or bool(eigs[:, nv].min() > eigs[:, nv - 1].max() + 1e-6)


def fermi_level(eigs: np.ndarray, weights: np.ndarray, n_electrons: float, smearing: float = 0.01) -> float:
    """E_F (eV) such that sum_k w_k sum_n 2 f((e_nk - E_F)/sigma) = N.

    eigs: (nk, nb) eV; weights: (nk,) summing to 1. For a gapped filling (an even electron count
    and the N/2-th band entirely below the next) E_F is put at the valence band maximum.
    """
    eigs = np.asarray(eigs)
    w = np.asarray(weights) / np.sum(weights)
    if n_electrons <= 0 or n_electrons > 2 * eigs.shape[1]:
        raise UnihamError(f"cannot place {n_electrons} electrons in {eigs.shape[1]} bands")
    nocc = n_electrons / 2
    if abs(nocc - round(nocc)) < 1e-8:
        nv = int(round(nocc))
        vbm = eigs[:, nv - 1].max()
        if nv == eigs.shape[1] or eigs[:, nv].min() > vbm + 1e-6:
            return float(vbm)

    def count(ef):
        return 2 * np.sum(w[:, None] * expit(-(eigs - ef) / smearing))

    lo, hi = eigs.min() - 10 * smearing - 1, eigs.max() + 10 * smearing + 1
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if count(mid) < n_electrons:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return float(0.5 * (lo + hi))


def band_gap(eigs: np.ndarray, fermi: float) -> dict:
    """Gap around E_F: {'gap_eV', 'vbm_eV', 'cbm_eV', 'direct_gap_eV'}; gap 0 for metals."""
    eigs = np.asarray(eigs)
    below = np.where(eigs <= fermi + 1e-6, eigs, -np.inf)
    above = np.where(eigs > fermi + 1e-6, eigs, np.inf)
    vbm, cbm = below.max(), above.min()
    crossing = np.any((eigs.min(axis=0) < fermi - 1e-4) & (eigs.max(axis=0) > fermi + 1e-4))
    gap = 0.0 if crossing or not np.isfinite(vbm) or not np.isfinite(cbm) else float(cbm - vbm)
    direct = float(np.min(above.min(axis=1) - below.max(axis=1))) if gap > 0 else 0.0
    return {"gap_eV": gap, "vbm_eV": float(vbm), "cbm_eV": float(cbm), "direct_gap_eV": direct}

"""The one band metric by which uniham judges a predicted Hamiltonian against the DFT one.

Per structure: the bands of both at Γ and 7 fixed random k (:data:`METRIC_KPOINTS`, fractional; the random
ones are zeroed along non-periodic directions), compared band by band (sorted eigenvalues of H(k)c = εS(k)c
in float64) over the DFT bands within E_ref ± 2 eV, where E_ref is the DFT Fermi level, or for a gapped
structure its valence-band maximum (on these k); the metric is the mean |E_pred - E_DFT - s| with s the
median of E_pred - E_DFT over those bands (the energy zero, which a local model cannot know, does not
count; s is reported). Over a set of structures: the median and the 90th percentile of the per-structure
values (:func:`summarize`). Used by ``uniham evaluate``, the model card and the reports.
"""
from __future__ import annotations

import numpy as np

WINDOW_EV = 2.0
METRIC_KPOINTS = np.vstack([np.zeros(3), np.random.default_rng(20261206).uniform(-0.5, 0.5, (7, 3))])
GAP_EV = 0.05  # a structure is gapped when its lowest empty level lies this far above its highest filled one


def reference_energy(eigs: np.ndarray, n_electrons: float | None, fermi: float | None) -> tuple[float, str]:
    """(E_ref eV, "vbm" or "fermi"): the valence-band maximum on these k for a gapped structure (an even
    electron count whose band n/2 lies GAP_EV above band n/2 - 1 at every k), else the Fermi level ``fermi``
    (the converged DFT's own electron count), else the mid-point of the highest filled and lowest empty band."""
    if n_electrons:
        n_occ = n_electrons / 2
        if float(n_occ).is_integer() and 0 < n_occ < eigs.shape[1]:
            vbm, cbm = eigs[:, int(n_occ) - 1].max(), eigs[:, int(n_occ)].min()
            if cbm - vbm > GAP_EV:
                return float(vbm), "vbm"
    if fermi is not None and np.isfinite(fermi):
        return float(fermi), "fermi"
    n = int(np.ceil((n_electrons or 0) / 2))
    return float(0.5 * (eigs[:, max(n - 1, 0)].max() + eigs[:, min(n, eigs.shape[1] - 1)].min())), "mid"


def band_metric(pred, ref, window: float = WINDOW_EV) -> dict:
    """The per-structure band error of ``pred`` against ``ref`` (both :class:`uniham.hamiltonian.Hamiltonian`
    of the same atoms and basis): {"band_mae_meV", "shift_meV" (the median s), "n_bands", "e_ref_eV", "e_ref"}."""
    ks = METRIC_KPOINTS * np.asarray(ref.atoms.pbc, float)
    er, ep = ref.eigenvalues(ks), pred.eigenvalues(ks)
    nb = min(er.shape[1], ep.shape[1])
    er, ep = er[:, :nb], ep[:, :nb]
    e0, how = reference_energy(er, ref.n_electrons, ref.fermi_level)
    sel = np.abs(er - e0) <= window
    if not sel.any():
        return {"band_mae_meV": float("nan"), "shift_meV": float("nan"), "n_bands": 0, "e_ref_eV": e0, "e_ref": how}
    d = ep[sel] - er[sel]
    s = float(np.median(d))
    return {"band_mae_meV": float(1e3 * np.abs(d - s).mean()), "shift_meV": 1e3 * s, "n_bands": int(sel.sum()),
            "e_ref_eV": e0, "e_ref": how}


def summarize(values) -> dict:
    """Median and 90th percentile (meV) of per-structure band errors (NaN, structures without bands in the
    window, left out and counted)."""
    v = np.asarray([x for x in values], float)
    ok = v[np.isfinite(v)]
    if not ok.size:
        return {"median_meV": float("nan"), "p90_meV": float("nan"), "n": 0, "n_without_bands": int(v.size)}
    return {"median_meV": float(np.median(ok)), "p90_meV": float(np.percentile(ok, 90)), "n": int(ok.size),
            "n_without_bands": int(v.size - ok.size)}

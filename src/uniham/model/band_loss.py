"""A band-aware loss: the model's block errors seen through the DFT eigenvectors near E_F.

For every training structure one k-point (fixed, from a hash of its id) is solved once, in float64, with
the DFT Hamiltonian: H(k) C = S(k) C diag(ε), C S-orthonormal. The bands with |ε - E_ref| <= window
(E_ref as in :mod:`uniham.properties.band_metric`; at most :data:`MAX_BANDS`, the nearest) keep their
eigenvectors C_w (norb, n_w), stored per atom in the universal layout. In training, the residual blocks
δH = H_pred - H_DFT on the graph give W(k) = C_w^† δH(k) C_w (Bloch sum over the edges with
e^{2πi k·R}), whose diagonal is the first-order shift of each band and whose off-diagonal couples them
(NextHAM's reciprocal-space terms within the window). The loss is the mean |diag W - its mean| (the energy
zero is left to the real-space loss) plus the mean |off-diagonal W|, in eV. Only the blocks on the graph
enter: for a ΔH model δH = ΔH_pred - ΔH is exactly the error of H0 + ΔH_pred there.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from uniham.errors import UnihamError

MAX_BANDS = 16
WINDOW_EV = 2.0


def band_kpoint(sid: str, pbc) -> np.ndarray:
    """The fixed fractional k-point (3,) of a structure: uniform in [-1/2, 1/2)^3 from sha256 of its id, zero along
    non-periodic directions."""
    h = hashlib.sha256(f"band-k:{sid}".encode()).digest()
    u = np.frombuffer(h[:12], dtype=np.uint32) / 2.0 ** 32 - 0.5
    return u * np.asarray(pbc, float)


def band_sample(ref, graph: dict, layout, sid: str, window: float = WINDOW_EV) -> dict:
    """{"band_k" (3,), "band_c" (N, U, MAX_BANDS) complex64, "band_m" (MAX_BANDS,) bool} of the DFT Hamiltonian
    ``ref`` (with S) on the atoms of ``graph``."""
    from scipy.linalg import eigh

    from uniham.properties.band_metric import reference_energy

    if ref.S is None or not ref.S:
        raise UnihamError(f"{sid}: the band loss needs the overlap S")
    k = band_kpoint(sid, ref.atoms.pbc)
    eps, vec = eigh(ref.Hk(k), ref.Sk(k))
    e0, _ = reference_energy(eps[None], ref.n_electrons, ref.fermi_level)
    near = np.argsort(np.abs(eps - e0))[:MAX_BANDS]
    near = np.sort(near[np.abs(eps[near] - e0) <= window])
    symbols = ref.atoms.get_chemical_symbols()
    dims = [ref.basis[x].dim for x in symbols]
    offs = np.concatenate([[0], np.cumsum(dims)])
    c = np.zeros((len(symbols), layout.dim, MAX_BANDS), np.complex64)
    for a, x in enumerate(symbols):
        c[a, layout.element_index(ref.basis[x]), :len(near)] = vec[offs[a]:offs[a + 1], near]
    m = np.zeros(MAX_BANDS, bool)
    m[:len(near)] = True
    return {"band_k": torch.tensor(k, dtype=graph["vec"].dtype), "band_c": torch.from_numpy(c),
            "band_m": torch.from_numpy(m)}


def window_matrix(rs: torch.Tensor, re: torch.Tensor, batch: dict) -> torch.Tensor:
    """W (B, MAX_BANDS, MAX_BANDS) complex, eV: C_w^† δH(k) C_w per structure from the residual blocks rs (N, U, U),
    re (E, U, U) of ``batch`` (its diagonal: the first-order band shifts; padded bands are zero)."""
    c = batch["band_c"]  # (N, U, W)
    i, j = batch["edge_index"]
    nb = batch["n_structures"]
    kdot = (batch["band_k"].view(nb, 3)[batch["edge_batch"]] * batch["shift"].to(batch["band_k"].dtype)).sum(1)
    phase = torch.polar(torch.ones_like(kdot), 2 * np.pi * kdot).to(c.dtype)
    ws = torch.einsum("nuw,nuv,nvx->nwx", c.conj(), rs.to(c.dtype), c)
    we = torch.einsum("euw,euv,evx->ewx", c[i].conj(), re.to(c.dtype), c[j]) * phase[:, None, None]
    w = torch.zeros((nb,) + ws.shape[1:], dtype=c.dtype, device=c.device)
    return w.index_add(0, batch["batch"], ws).index_add(0, batch["edge_batch"], we)


def band_residual(rs: torch.Tensor, re: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(band term, coupling term), eV: mean |diag W - mean diag W| and mean |off-diagonal W| over the window
    bands of every structure of ``batch`` (:func:`window_matrix`)."""
    w = window_matrix(rs, re, batch)
    nb = batch["n_structures"]
    m = batch["band_m"].view(nb, -1).to(rs.dtype)
    diag = w.diagonal(dim1=1, dim2=2).real
    n = m.sum(1).clamp_min(1)
    shift = (diag * m).sum(1) / n
    band = ((diag - shift[:, None]).abs() * m).sum() / m.sum().clamp_min(1)
    pair = m[:, :, None] * m[:, None, :] * (1 - torch.eye(m.shape[1], dtype=m.dtype, device=m.device))
    coupling = (w.abs() * pair).sum() / pair.sum().clamp_min(1)
    return band, coupling

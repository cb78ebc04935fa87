"""The conditioning of the overlap S(k), and the guard that keeps a learned correction off its near-null space.

With a diffuse basis (DZVP-MOLOPT-SR in close-packed metals) S(k) has eigenvalues s ≪ 1: combinations c of
basis functions that nearly cancel as functions. A Hamiltonian computed from those same functions (the SCF H,
the zeroth-step H⁽⁰⁾) nearly cancels on them too, c†Hc ≈ s·ε, so H c = ε S c stays well posed. A learned
correction δ does not know which combinations vanish: c†δc/s moves levels by ~|δ|/s, and a 1 meV error at
s = 1e-4 becomes 10 eV (uniham-v1 on hcp Al: bands 9.2 eV off where H⁽⁰⁾ alone is 8 meV off).

The guard replaces δ(k) by F(k) δ(k) F(k) with F = S (S + τ)⁻¹, the matrix of S's eigenvectors with
eigenvalues s/(s + τ): δ is kept where s ≫ τ and fades where s ≪ τ, where H⁽⁰⁾ (made of the same integrals)
is left alone. F is analytic in k for τ > 0, so the guarded δ(R) decays with |R| and comes back to real space
exactly on a Γ-centred k-mesh whose supercell is at least ``mesh_length`` Å along every periodic axis (an FFT
over the mesh, each lattice-vector class mapped onto its shortest images, Wigner–Seitz weights for ties). So
the written H(R) gives the guarded bands in any code. Applied with the exact SCF correction H − H⁽⁰⁾ it changes
bands by a median 1.9 meV (τ = 0.01, 98 test structures of db1_dh; docs/zeroth_step.md has the measurements).
Conventions: blocks keyed (R1, R2, R3, i, j) = ⟨φ_i(0)|M|φ_j(R)⟩, M(k) = Σ_R M(R) e^{2πi k·R}, eV.
"""
from __future__ import annotations

import itertools

import numpy as np

from uniham.hamiltonian import Hamiltonian, Key

GUARD_TAU = 0.01        # chosen on the validation split of db1_dh (docs/zeroth_step.md)
MESH_LENGTH_A = 20.0    # supercell edge of the mesh: guarded blocks reach ~half of it
DROP_EV = 1e-6          # guarded blocks smaller than this everywhere are not kept
MAX_DENSE_ORBITALS = 4000  # beyond this a dense eigendecomposition of S(k) per mesh point is not worth it


def guard_mesh(atoms, mesh_length: float = MESH_LENGTH_A) -> np.ndarray:
    """(3,) int: Γ-centred mesh N_a = ceil(mesh_length / |a_a|) along periodic axes, 1 along the others."""
    lengths = np.linalg.norm(np.asarray(atoms.cell), axis=1)
    return np.where(np.asarray(atoms.pbc), np.maximum(1, np.ceil(mesh_length / lengths)), 1).astype(int)


def guarded_correction(ham: Hamiltonian, delta: dict[Key, np.ndarray], tau: float = GUARD_TAU,
                       mesh_length: float = MESH_LENGTH_A) -> dict[Key, np.ndarray]:
    """The correction ``delta`` (blocks, eV) kept off the near-null space of ``ham.S``: the real-space blocks
    of F δ(k) F with F = S(k)(S(k) + τ)⁻¹ (module docstring). ``ham`` supplies atoms, basis and S over its full
    range (its H is not used). τ = 0 returns ``delta`` unchanged. The result usually has more blocks than
    ``delta`` (F spreads it a little); blocks below :data:`DROP_EV` everywhere are left out."""
    if tau <= 0 or ham.S is None or not delta:
        return dict(delta)
    if tau > 1:
        raise ValueError(f"tau = {tau} is not a small overlap eigenvalue (use 0 < tau <= 1)")
    mesh = guard_mesh(ham.atoms, mesh_length)
    ks = np.array(list(itertools.product(*[np.arange(n) / n for n in mesh])), float)
    g = _guarded_on_mesh(ham, delta, ks, tau)
    # class value (1/N_k) Σ_k e^{-2πi k·c} G(k) for every lattice vector class c = R mod N (numpy's forward FFT)
    g = np.fft.fftn(g.reshape(*mesh, ham.norb, ham.norb), axes=(0, 1, 2)).real / len(ks)
    return _minimal_images(ham, g, mesh)


def _guarded_on_mesh(ham: Hamiltonian, delta: dict, ks: np.ndarray, tau: float) -> np.ndarray:
    """(nk, n, n) complex F δ(k) F on the k-points ``ks``, in batches."""
    n = ham.norb
    d_ham = Hamiltonian(ham.atoms, ham.basis, delta, None, None, None, False)
    out = np.empty((len(ks), n, n), complex)
    batch = max(1, int(2e8 // (16 * n * n)))
    for b in range(0, len(ks), batch):
        kb = ks[b:b + batch]
        s_k = ham._bloch_many("S", kb)
        s, u = np.linalg.eigh(0.5 * (s_k + np.conj(np.swapaxes(s_k, 1, 2))))
        f = (u * (s / (s + tau))[:, None, :]) @ np.conj(np.swapaxes(u, 1, 2))
        out[b:b + len(kb)] = f @ d_ham._bloch_many("H", kb) @ f
    return out


def _minimal_images(ham: Hamiltonian, g: np.ndarray, mesh: np.ndarray) -> dict[Key, np.ndarray]:
    """Blocks (R, i, j) from the class values ``g`` (N1, N2, N3, n, n): each class c goes to the R ≡ c (mod N)
    with the shortest |r_j + R·A − r_i|, shared equally between images tied within 1e-4 Å."""
    atoms, off = ham.atoms, ham.orbital_offsets
    cell, pos = np.asarray(atoms.cell), atoms.positions
    ranges = [range(-int(m), int(m) + 1) if p else range(1) for m, p in zip(mesh, atoms.pbc)]
    rs = np.array(list(itertools.product(*ranges)), int)                       # (nR, 3)
    cls = np.ravel_multi_index(tuple(np.mod(rs, mesh).T), tuple(mesh))         # (nR,)
    dist = np.linalg.norm(pos[None, None, :, :] + (rs @ cell)[:, None, None, :] - pos[None, :, None, :], axis=-1)
    dmin = np.full((int(np.prod(mesh)),) + dist.shape[1:], np.inf)
    np.minimum.at(dmin, cls, dist)
    chosen = dist <= dmin[cls] + 1e-4                                           # (nR, nat, nat)
    ties = np.zeros_like(dmin)
    np.add.at(ties, cls, chosen)
    flat = g.reshape(-1, ham.norb, ham.norb)
    out = {}
    for m, i, j in zip(*np.nonzero(chosen)):
        blk = flat[cls[m], off[i]:off[i + 1], off[j]:off[j + 1]] / ties[cls[m], i, j]
        if np.abs(blk).max() >= DROP_EV:
            out[(*map(int, rs[m]), int(i), int(j))] = blk
    return out


def guarded_hamiltonian(h0: Hamiltonian, delta: dict[Key, np.ndarray], tau: float = GUARD_TAU,
                        mesh_length: float = MESH_LENGTH_A) -> tuple[dict[Key, np.ndarray], dict]:
    """(H⁽⁰⁾ + guarded δ blocks, a record of what was done): the guard of :func:`guarded_correction` where the
    structure is small enough for dense S(k) (≤ :data:`MAX_DENSE_ORBITALS` orbitals), else H⁽⁰⁾ + δ as is."""
    record = {"tau": tau, "mesh_length_A": mesh_length, "applied": False}
    if 0 < tau and h0.norb <= MAX_DENSE_ORBITALS:
        delta = guarded_correction(h0, delta, tau, mesh_length)
        record |= {"applied": True, "mesh": guard_mesh(h0.atoms, mesh_length).tolist()}
    elif tau > 0:
        record["skipped"] = f"{h0.norb} orbitals > {MAX_DENSE_ORBITALS}: no dense S(k) per mesh point"
    H = dict(h0.H)
    for k, v in delta.items():
        H[k] = H[k] + v if k in H else v
    return H, record


def overlap_min_eigenvalue(ham: Hamiltonian, kpts) -> float:
    """The smallest eigenvalue of S(k) over the fractional k-points ``kpts`` (nk, 3): how close the basis is to
    linear dependence there (1 for an orthogonal basis)."""
    if ham.S is None:
        return 1.0
    s_k = ham._bloch_many("S", np.atleast_2d(np.asarray(kpts, float)))
    return float(np.linalg.eigvalsh(0.5 * (s_k + np.conj(np.swapaxes(s_k, 1, 2)))).min())

"""Graphs of structures and their Hamiltonian targets, in the network's universal layout.

Nodes are atoms (on-site blocks H_ii(0)); edges are the directed pairs (i, j, R) with
0 < |tau_j + R - tau_i| <= r_ij (off-site blocks H_ij(R)), found with ASE's linear-scaling cell-list
neighbour search, periodic images included; crystals, slabs and molecules alike (non-periodic axes
have no images). Every edge has its reverse (j, i, -R), whose index is stored for symmetrization.

The edge range r_ij (:class:`EdgeRange`) is one cutoff for every pair, or per element pair: the distance at
which the pair's most diffuse basis functions overlap by ``eps`` (never below the cutoff). H reaches as far as
its basis does: with DZVP-MOLOPT-SR an 8 A graph leaves db1's bands off by a median 3.5 eV, the pair range at
overlap 1e-5 by 3.4 meV (max 26 meV; ``bench/results/model_range/model_range_db1.json``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from uniham.dft.cp2k_basis import CP2K_BOHR_ANG
from uniham.model.layout import Layout

N_Z = 87  # per-element tables: Z = 0..86 (as the network's embedding)


@dataclass(frozen=True)
class EdgeRange:
    """How far edges reach (Angstrom): ``cutoff`` for every pair when ``eps`` is 0, else per element pair

        r_ij = max(cutoff, bohr * sqrt(ln(1/eps) * (1/a_i + 1/a_j)))

    with a_i the most diffuse primitive exponent of element i's basis (Bohr^-2, ``inv_alpha`` = 1/a per Z,
    0 where the basis has no such element): the distance where the two most diffuse Gaussians overlap by
    ``eps`` (:func:`uniham.dft.cp2k_basis.overlap_range`). DZVP-MOLOPT-SR at 1e-5: Si-Si 8.6 A, Y-Y 12.5 A,
    Cs-Cs 15.5 A. The network's envelope and radial basis stretch with r_ij (:class:`uniham.model.net.HamiltonianNet`).
    """

    cutoff: float
    eps: float = 0.0
    inv_alpha: tuple[float, ...] = ()  # (N_Z,) Bohr^2

    @classmethod
    def for_basis(cls, cutoff: float, eps: float, family: str | None = None) -> EdgeRange:
        """The range of every element of a CP2K basis family (default DZVP-MOLOPT-SR-GTH); ``eps`` 0: fixed."""
        if eps <= 0:
            return cls(float(cutoff))
        return cls(float(cutoff), float(eps), tuple(float(x) for x in inverse_exponents(family)))

    def pair(self, zi: np.ndarray, zj: np.ndarray) -> np.ndarray:
        """r_ij (Angstrom) for atomic numbers zi, zj (same shape)."""
        zi, zj = np.asarray(zi), np.asarray(zj)
        if self.eps <= 0:
            return np.full(np.broadcast(zi, zj).shape, self.cutoff)
        ia = np.asarray(self.inv_alpha)
        return np.maximum(self.cutoff, CP2K_BOHR_ANG * np.sqrt(np.log(1 / self.eps) * (ia[zi] + ia[zj])))

    def max_for(self, numbers) -> float:
        """The longest range among the element pairs of ``numbers``."""
        z = np.unique(np.asarray(numbers, dtype=np.int64))
        return float(self.pair(z[:, None], z[None, :]).max()) if len(z) else self.cutoff


def inverse_exponents(family: str | None = None) -> np.ndarray:
    """(N_Z,) 1 / (most diffuse exponent) per Z (Bohr^2) of a CP2K basis family; 0 for absent elements."""
    from ase.data import atomic_numbers

    from uniham.dft.cp2k_basis import DEFAULT_BASIS, elements_with_basis, load_basis, min_exponent

    family = family or DEFAULT_BASIS
    out = np.zeros(N_Z)
    for x in elements_with_basis(family):
        z = atomic_numbers[x]
        if z < N_Z:
            out[z] = 1.0 / min_exponent(load_basis(x, family))
    return out


def neighbor_graph(atoms: Atoms, cutoff: float | EdgeRange) -> dict[str, np.ndarray]:
    """{"i", "j" (E,), "shift" (E, 3) int, "vec" (E, 3) A, "reverse" (E,)} sorted by (i, j, shift).

    ``cutoff``: one distance (A) for every pair, or an :class:`EdgeRange` (per element pair)."""
    from ase.neighborlist import primitive_neighbor_list

    rng = cutoff if isinstance(cutoff, EdgeRange) else EdgeRange(float(cutoff))
    cell = atoms.cell.array
    if not atoms.pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
        from uniham.structure import ensure_box

        cell = ensure_box(atoms).cell.array
    i, j, shift, d = primitive_neighbor_list("ijSd", atoms.pbc, cell, atoms.positions, rng.max_for(atoms.numbers),
                                             self_interaction=False)
    if rng.eps > 0:
        keep = d <= rng.pair(atoms.numbers[i], atoms.numbers[j])
        i, j, shift = i[keep], j[keep], shift[keep]
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))
    i, j, shift = i[order], j[order], shift[order].astype(np.int64)
    vec = atoms.positions[j] + shift @ cell - atoms.positions[i]
    return {"i": i, "j": j, "shift": shift, "vec": vec, "reverse": reverse_index(i, j, shift, len(atoms))}


def reverse_index(i: np.ndarray, j: np.ndarray, shift: np.ndarray, n: int) -> np.ndarray:
    """Index of the edge (j, i, -R) of every edge (i, j, R), vectorized (one integer key per edge and a
    binary search; linear-scaling memory, no Python loop)."""
    if not len(i):
        return np.zeros(0, np.int64)
    m = int(np.abs(shift).max()) if len(shift) else 0
    b = 2 * m + 1

    def key(a, c, s):
        return ((a.astype(np.int64) * n + c) * b + (s[:, 0] + m)) * b * b + (s[:, 1] + m) * b + (s[:, 2] + m)

    k = key(i, j, shift)
    order = np.argsort(k, kind="stable")
    rk = key(j, i, -shift)
    pos = np.searchsorted(k[order], rk)
    rev = order[np.clip(pos, 0, len(k) - 1)]
    if np.any(k[rev] != rk):
        raise ValueError("neighbour list is not symmetric: an edge has no reverse")
    return rev.astype(np.int64)


def structure_graph(atoms: Atoms, cutoff: float | EdgeRange, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = neighbor_graph(atoms, cutoff)
    return {"z": torch.tensor(atoms.numbers, dtype=torch.long),
            "edge_index": torch.tensor(np.stack([g["i"], g["j"]]), dtype=torch.long),
            "shift": torch.tensor(g["shift"]), "vec": torch.tensor(g["vec"], dtype=dtype),
            "reverse": torch.tensor(g["reverse"]), "n_nodes": len(atoms)}


def targets(ham, graph: dict, layout: Layout, dtype=torch.float32, with_overlap: bool = True) -> dict:
    """Blocks of a :class:`uniham.hamiltonian.Hamiltonian` on the graph, in the universal layout.

    Returns h_site (N, U, U), h_edge (E, U, U), masks (True where the element pair has the orbital and
    the block exists in the data), and s_site/s_edge when ``with_overlap``.
    """
    u = layout.dim
    symbols = ham.atoms.get_chemical_symbols()
    index = {x: layout.element_index(b) for x, b in ham.basis.items()}
    n = len(symbols)
    i, j = graph["edge_index"].numpy()
    shift = graph["shift"].numpy()
    out = {k: np.zeros(shape, dtype=np.float32 if k[0] in "hs" else bool)
           for k, shape in (("h_site", (n, u, u)), ("h_edge", (len(i), u, u)), ("s_site", (n, u, u)),
                            ("s_edge", (len(i), u, u)), ("m_site", (n, u, u)), ("m_edge", (len(i), u, u)))}

    def put(kind: str, slot: int, key, a: int, b: int) -> None:
        blk = ham.H.get(key)
        if blk is None:
            return
        ia, ib = index[symbols[a]], index[symbols[b]]
        out[f"h_{kind}"][slot][np.ix_(ia, ib)] = blk
        out[f"m_{kind}"][slot][np.ix_(ia, ib)] = True
        if with_overlap:
            out[f"s_{kind}"][slot][np.ix_(ia, ib)] = ham.S.get(key, 0.0)

    for a in range(n):
        put("site", a, (0, 0, 0, a, a), a, a)
    for e, (a, b, s) in enumerate(zip(i, j, shift)):
        put("edge", e, (int(s[0]), int(s[1]), int(s[2]), int(a), int(b)), a, b)
    res = {k: torch.tensor(v) for k, v in out.items() if with_overlap or not k.startswith("s_")}
    return {k: (v.to(dtype) if v.dtype.is_floating_point else v) for k, v in res.items()}


def collate(samples: list[dict]) -> dict:
    """Concatenate graphs (and targets) into one batch; ``batch`` gives each node's structure."""
    out: dict = {}
    offset, eoff = 0, 0
    parts: dict[str, list] = {}
    batch = []
    for n, s in enumerate(samples):
        nn_, ne = s["n_nodes"], s["edge_index"].shape[1]
        parts.setdefault("edge_index", []).append(s["edge_index"] + offset)
        parts.setdefault("reverse", []).append(s["reverse"] + eoff)
        for k in ("z", "vec", "shift", "h_site", "h_edge", "s_site", "s_edge", "m_site", "m_edge", "p_site", "p_edge_inv",
                  "band_k", "band_c", "band_m"):
            if k in s:
                parts.setdefault(k, []).append(s[k])
        batch.append(torch.full((nn_,), n, dtype=torch.long, device=s["z"].device))
        offset += nn_
        eoff += ne
    for k, v in parts.items():
        out[k] = torch.cat(v, dim=1 if k == "edge_index" else 0)
    out["batch"] = torch.cat(batch)
    out["edge_batch"] = out["batch"][out["edge_index"][0]]
    out["n_structures"] = len(samples)
    out["n_nodes"] = offset
    return out

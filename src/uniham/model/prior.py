"""The zeroth-step Hamiltonian H0 as an input of the network (NextHAM-style prior features), exactly equivariant.

A delta_h0 model learns ΔH = H - H0; with ``ModelConfig.prior`` it also *sees* H0:

* edges: H0_ij(R) in the universal layout is split into its irreps f_(L,s,c) (the inverse of
  :class:`uniham.model.layout.BlockAssembler`), rotated into the bond frame (e3nn's y axis along the bond,
  :func:`uniham.model.so2.edge_wigner`). There, per irrep, the m = 0 component (natural irreps; its absolute
  value for pseudo irreps, whose m = 0 component flips sign under inversion) and the norms of the (m, -m)
  pairs are invariant under rotations and inversion: ``n_edge_invariants`` numbers per edge, compressed by
  asinh(x / PRIOR_SCALE_EV), which enter the radial MLPs next to the distance basis;
* nodes: the on-site block's irreps of degree L <= lmax, each with its norm compressed the same way
  (direction kept), are mapped per (L, s) into the initial node features.

Edge invariants are computed once per sample (they need no weights): :func:`edge_invariants`.
"""
from __future__ import annotations

from functools import cache

import numpy as np
import torch

from uniham.model.layout import BlockAssembler, Layout

PRIOR_SCALE_EV = 0.05  # asinh(x / scale): linear below ~50 meV, logarithmic above (H0 spans meV to tens of eV)


@cache
def _assembler(counts: tuple) -> BlockAssembler:
    return BlockAssembler(Layout(counts))


def irreps_of_blocks(blocks: torch.Tensor, layout: Layout) -> dict:
    """Blocks (B, U, U) in uniham's convention -> {(L, s): (B, 2L+1, count)} in e3nn's basis: the inverse of
    the assembler. Its coupling tensors sqrt(2L+1) * 3j are orthonormal over (m1, m2), so each irrep is the
    projection f_M = sum_{m1 m2} C[m1, m2, M] B[m1, m2] of its slot pair's sub-block."""
    asm = _assembler(layout.counts)
    offs = layout.offsets
    out = {k: blocks.new_zeros((blocks.shape[0], 2 * k[0] + 1, cnt)) for k, cnt in asm.need.items()}
    for a, b, l1, l2, terms in asm.plan:
        sub = blocks[:, offs[a]:offs[a + 1], offs[b]:offs[b + 1]]
        for L, s, c in terms:
            cg = getattr(asm, f"cg_{l1}_{l2}_{L}").to(blocks.dtype)
            out[(L, s)][:, :, c] = torch.einsum("abm,nab->nm", cg, sub)
    return dict(sorted(out.items()))


def n_edge_invariants(layout: Layout) -> int:
    return sum(cnt * (L + 1) for (L, _), cnt in layout.out_irreps().items())


def compress(x: torch.Tensor) -> torch.Tensor:
    return torch.asinh(x / PRIOR_SCALE_EV)


def edge_invariants(h0_edge: torch.Tensor, vec: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(E, n_edge_invariants) compressed bond-frame invariants of the H0 blocks (E, U, U) on edges vec (E, 3) A."""
    from uniham.model.so2 import edge_wigner

    irr = irreps_of_blocks(h0_edge.double(), layout)
    if not len(vec):
        return torch.zeros((0, n_edge_invariants(layout)), dtype=h0_edge.dtype)
    wig = edge_wigner(vec.double(), max(L for L, _ in irr))
    feats = []
    for (L, s), f in irr.items():
        g = torch.einsum("eji,ejc->eic", wig[L], f)  # into the bond frame: D^T f
        feats.append(g[:, L] if s == 1 else g[:, L].abs())
        for m in range(1, L + 1):
            feats.append(torch.sqrt(g[:, L + m] ** 2 + g[:, L - m] ** 2))
    return compress(torch.cat(feats, dim=1)).to(h0_edge.dtype)


def node_irreps(h0_site: torch.Tensor, layout: Layout, lmax: int) -> dict:
    """{(L, s): (N, 2L+1, count)} of the on-site H0 blocks (N, U, U) for L <= lmax, norms compressed."""
    out = {}
    for (L, s), f in irreps_of_blocks(h0_site, layout).items():
        if L > lmax:
            continue
        n = f.norm(dim=1, keepdim=True)
        out[(L, s)] = f * (compress(n) / n.clamp_min(1e-12))
    return out


def prior_sample(h0: dict, symbols: list[str], basis: dict, graph: dict, layout: Layout, dtype=torch.float32) -> dict:
    """{"p_site" (N, U, U), "p_edge_inv" (E, n)} of the H0 blocks ``h0`` {(R1,R2,R3,i,j): block eV} on ``graph``."""
    u = layout.dim
    index = {x: layout.element_index(b) for x, b in basis.items()}
    n = len(symbols)
    i, j = graph["edge_index"].numpy()
    shift = graph["shift"].numpy()
    site, edge = np.zeros((n, u, u)), np.zeros((len(i), u, u))
    for a in range(n):
        blk = h0.get((0, 0, 0, a, a))
        if blk is not None:
            site[a][np.ix_(index[symbols[a]], index[symbols[a]])] = blk
    for e, (a, b, s) in enumerate(zip(i, j, shift)):
        blk = h0.get((int(s[0]), int(s[1]), int(s[2]), int(a), int(b)))
        if blk is not None:
            edge[e][np.ix_(index[symbols[a]], index[symbols[b]])] = blk
    inv = edge_invariants(torch.tensor(edge), graph["vec"].double(), layout)
    return {"p_site": torch.tensor(site, dtype=dtype), "p_edge_inv": inv.to(dtype)}

"""The universal orbital layout and the Wigner-Eckart assembly of Hamiltonian blocks from irreps.

Every element's orbitals are placed into one universal layout of shell *slots*: slot (l, k) is the
k-th shell of angular momentum l of an atom (e.g. DZVP-MOLOPT-SR-GTH needs s x3, p x2, d x2, f x1:
26 orbitals). A block between atoms i and j is predicted in the (U, U) universal layout and masked to
the orbitals the two elements have.

The network works in e3nn's real spherical-harmonic basis (l=1: x, y, z; y is e3nn's polar axis).
uniham's basis (:mod:`uniham.basis`, l=1: y, z, x) is related by a fixed orthogonal matrix per l,
``Y_uniham = P_l Y_e3nn``; the assembly applies it, so predicted blocks are in uniham's convention.

Wigner-Eckart: a (2 l1 + 1) x (2 l2 + 1) block is sum over L = |l1 - l2| .. l1 + l2 of
C^{l1 l2 L} f_L with f_L a degree-L irrep (e3nn's ``wigner_3j`` as C). Its parity is (-1)^(l1 + l2):
an irrep of degree L is *natural* (s = +1, parity (-1)^L) when l1 + l2 + L is even, *pseudo*
(s = -1) otherwise (e.g. the antisymmetric L = 1 part of a p-p block).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from uniham.basis import OrbitalBasis, real_spherical_harmonics


@cache
def e3nn_to_uniham(l: int) -> np.ndarray:
    """Orthogonal P_l with Y_uniham(r) = P_l Y_e3nn(r) (both normalized, m = -l..l in their own order)."""
    from e3nn import o3

    rng = np.random.default_rng(12345)
    pts = rng.normal(size=(8 * (2 * l + 1), 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    ye = o3.spherical_harmonics(l, torch.tensor(pts), normalize=True).numpy()
    yu = real_spherical_harmonics(l, pts)
    if yu.shape[0] != len(pts):
        yu = yu.T
    p, *_ = np.linalg.lstsq(ye, yu, rcond=None)  # yu = ye @ p
    p = p.T
    u, _, vt = np.linalg.svd(p)  # normalization conventions differ by a constant: keep the rotation
    return u @ vt


@dataclass(frozen=True)
class Layout:
    """Shell slots {l: count}; e.g. ``Layout.from_bases(bases)`` or ``Layout({0: 3, 1: 2, 2: 2, 3: 1})``."""

    counts: tuple[tuple[int, int], ...]  # ((l, n), ...) sorted by l

    @classmethod
    def from_counts(cls, counts: dict[int, int]) -> Layout:
        return cls(tuple(sorted((int(l), int(n)) for l, n in counts.items() if n > 0)))

    @classmethod
    def from_bases(cls, bases) -> Layout:
        counts: dict[int, int] = {}
        for b in bases:
            for l in set(b.shells):
                counts[l] = max(counts.get(l, 0), b.shells.count(l))
        return cls.from_counts(counts)

    @property
    def slots(self) -> list[tuple[int, int]]:
        return [(l, k) for l, n in self.counts for k in range(n)]

    @property
    def offsets(self) -> list[int]:
        out = [0]
        for l, _ in self.slots:
            out.append(out[-1] + 2 * l + 1)
        return out

    @property
    def dim(self) -> int:
        return self.offsets[-1]

    @property
    def lmax(self) -> int:
        return max(l for l, _ in self.counts)

    def element_index(self, basis: OrbitalBasis) -> np.ndarray:
        """(basis.dim,) universal orbital index of each of the element's orbitals (its own shell order)."""
        seen: dict[int, int] = {}
        slot_of = {s: n for n, s in enumerate(self.slots)}
        offs = self.offsets
        idx = []
        for l in basis.shells:
            k = seen.get(l, 0)
            seen[l] = k + 1
            if (l, k) not in slot_of:
                raise ValueError(f"basis {basis} does not fit the layout {self.counts}")
            o = offs[slot_of[(l, k)]]
            idx += list(range(o, o + 2 * l + 1))
        return np.array(idx, dtype=np.int64)

    def invariant_part(self, blocks: torch.Tensor) -> torch.Tensor:
        """Rotation-invariant part of on-site blocks (N, U, U): between two slots of equal l the mean of
        the diagonal times the identity (the L = 0 irrep), zero between slots of different l."""
        out = torch.zeros_like(blocks)
        offs = self.offsets
        for a, (la, _) in enumerate(self.slots):
            for b, (lb, _) in enumerate(self.slots):
                if la != lb:
                    continue
                sa, sb = slice(offs[a], offs[a + 1]), slice(offs[b], offs[b + 1])
                mean = blocks[:, sa, sb].diagonal(dim1=1, dim2=2).mean(1)
                out[:, sa, sb] = mean[:, None, None] * torch.eye(2 * la + 1, dtype=blocks.dtype, device=blocks.device)
        return out

    def slot_pairs(self) -> list[tuple[int, int]]:
        n = len(self.slots)
        return [(a, b) for a in range(n) for b in range(n)]

    def out_irreps(self) -> dict[tuple[int, int], int]:
        """{(L, s): number of channels} the head must produce for one block (all slot pairs)."""
        need: dict[tuple[int, int], int] = {}
        for a, b in self.slot_pairs():
            l1, l2 = self.slots[a][0], self.slots[b][0]
            for L in range(abs(l1 - l2), l1 + l2 + 1):
                s = 1 if (l1 + l2 + L) % 2 == 0 else -1
                need[(L, s)] = need.get((L, s), 0) + 1
        return need


class BlockAssembler(torch.nn.Module):
    """Irreps per (L, s) channel -> blocks in the universal layout, in uniham's orbital convention.

    Input: dict {(L, s): tensor (B, 2L+1, n_(L,s))} in e3nn's basis. Output: (B, U, U).
    """

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        from e3nn import o3

        self.layout = layout
        self.need = layout.out_irreps()
        counter: dict[tuple[int, int], int] = {}
        plan = []  # per slot pair: (a, b, [(L, s, channel)])
        for a, b in layout.slot_pairs():
            l1, l2 = layout.slots[a][0], layout.slots[b][0]
            terms = []
            for L in range(abs(l1 - l2), l1 + l2 + 1):
                s = 1 if (l1 + l2 + L) % 2 == 0 else -1
                c = counter.get((L, s), 0)
                counter[(L, s)] = c + 1
                terms.append((L, s, c))
            plan.append((a, b, l1, l2, terms))
        self.plan = plan
        # CG tensors in uniham's basis: block[m1, m2] = sum_M C[m1, m2, M] f[M]
        for l1 in range(layout.lmax + 1):
            for l2 in range(layout.lmax + 1):
                for L in range(abs(l1 - l2), l1 + l2 + 1):
                    c = o3.wigner_3j(l1, l2, L, dtype=torch.float64) * np.sqrt(2 * L + 1)
                    p1 = torch.tensor(e3nn_to_uniham(l1))
                    p2 = torch.tensor(e3nn_to_uniham(l2))
                    c = torch.einsum("ai,bj,ijm->abm", p1, p2, c)
                    # kept in float64 (cast at use): float32 CG would cap float64 equivariance at 1e-7
                    self.register_buffer(f"cg_{l1}_{l2}_{L}", c, persistent=False)

    def matrix(self) -> torch.Tensor:
        """(U*U, n) float64: the linear map from irreps coefficients (ordered by (L, s), channel, M in e3nn's
        basis) to flattened blocks; square and invertible (a block is its irreps, nothing more or less)."""
        need = sorted(self.need.items())
        cols = []
        for (L, s), cnt in need:
            for c in range(cnt):
                for m in range(2 * L + 1):
                    d = {k: torch.zeros(1, 2 * k[0] + 1, n, dtype=torch.float64) for k, n in need}
                    d[(L, s)][0, m, c] = 1.0
                    cols.append(self(d).reshape(-1))
        return torch.stack(cols, 1)

    def forward(self, irreps: dict[tuple[int, int], torch.Tensor]) -> torch.Tensor:
        some = next(iter(irreps.values()))
        n = some.shape[0]
        offs = self.layout.offsets
        out = some.new_zeros((n, self.layout.dim, self.layout.dim))
        for a, b, l1, l2, terms in self.plan:
            blk = 0
            for L, s, c in terms:
                cg = getattr(self, f"cg_{l1}_{l2}_{L}").to(some.dtype)
                blk = blk + torch.einsum("abm,nm->nab", cg, irreps[(L, s)][:, :, c])
            out[:, offs[a]:offs[a + 1], offs[b]:offs[b + 1]] = blk
        return out

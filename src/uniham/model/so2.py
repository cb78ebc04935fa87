"""Irreps features, edge frames and SO(2) convolutions (eSCN: Passaro & Zitnick, ICML 2023).

Features are tensors ``x[n, k, s, c]``: k = l^2 + (m + l) runs over the real spherical-harmonic
components l = 0..lmax in e3nn's basis (y is the polar axis), s in {0, 1} separates *natural* irreps
(parity (-1)^l) from *pseudo* irreps (parity -(-1)^l), c is the channel. Under a rotation Q every
(l, s) slice transforms with e3nn's D_l(Q); under inversion it is multiplied by (-1)^l (s = 0) or
-(-1)^l (s = 1).

In the frame of an edge (rotated so that the bond is e3nn's y axis) the only freedom left is the
rotation about the bond, which mixes the components m and -m as a 2D rotation. The most general
equivariant linear map there is, for every m, y_{+m} = A x_{+m} + B x_{-m}, y_{-m} = A x_{-m} - B x_{+m}
(A, B mix channels and degrees l >= |m|): O(L^3) work instead of the O(L^6) of Clebsch-Gordan tensor
products. The A part keeps s (paths with l_in + L_edge + l_out even), the B part flips it, which
makes the map O(3)-equivariant, not just SO(3) (checked by tests/test_model.py).
"""
from __future__ import annotations

import math
from functools import cache

import torch
from torch import nn


def n_components(lmax: int) -> int:
    return (lmax + 1) ** 2


def degree_of_component(lmax: int, device=None) -> torch.Tensor:
    """(K,) degree l of each component k = l^2 + m + l (on ``device``, cached there: index tensors made
    from Python lists at every call would be host-to-device copies, which cost GPU latency and break
    CUDA-graph capture)."""
    return _degree_of_component(lmax, torch.device(device) if device is not None else torch.device("cpu"))


@cache
def _degree_of_component(lmax: int, device: torch.device) -> torch.Tensor:
    return torch.cat([torch.full((2 * l + 1,), l, dtype=torch.long) for l in range(lmax + 1)]).to(device)


@cache
def _generators(l: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """e3nn's so(3) generators of degree l in float64 (e3nn builds them in the default dtype), on device."""
    from e3nn import o3

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return o3.so3_generators(l).to(torch.float64).to(device)
    finally:
        torch.set_default_dtype(old)


@cache
def _polar_rotation_parts(l: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(|m| (2l+1,), S, J) in float64: a rotation by θ about e3nn's polar (y) axis only turns each (m, -m) pair,
    exp(θ X_y) = diag(cos |m|θ) + sin(|m|θ) S with S = X_y / |m| row by row; and a rotation about x is that
    one conjugated by J = exp(-π/2 X_z): exp(β X_x) = J exp(β X_y) J^T (checked in tests/test_model.py)."""
    x = _generators(l, device)
    m = torch.tensor([abs(k - l) for k in range(2 * l + 1)], dtype=torch.float64, device=device)
    s = torch.where(m[:, None] > 0, x[1] / m.clamp_min(1)[:, None], torch.zeros_like(x[1]))
    return m, s, torch.matrix_exp(-0.5 * math.pi * x[2])


def _polar_rotation(angle: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(E, 2l+1, 2l+1) exp(angle X_y) for angles (E,), in closed form."""
    ma = angle[:, None] * m
    return torch.diag_embed(torch.cos(ma)) + torch.sin(ma)[:, :, None] * s


def edge_wigner(vec: torch.Tensor, lmax: int) -> list[torch.Tensor]:
    """[D_l (E, 2l+1, 2l+1) for l = 0..lmax] of the rotation R_e that takes e3nn's y axis to each edge.

    A global feature f becomes D_l^T f in the edge frame; D_l f' takes it back. Same as
    ``e3nn.o3.wigner_D(l, alpha, beta, 0)`` = exp(α X_y) exp(β X_x), built in float64 from closed-form polar
    rotations (:func:`_polar_rotation_parts`; 20x faster than two matrix exponentials) and cast at the end.
    """
    from e3nn import o3

    alpha, beta = o3.xyz_to_angles(vec.double())
    out = []
    for l in range(lmax + 1):
        m, s, j = _polar_rotation_parts(l, vec.device)
        d = _polar_rotation(alpha, m, s) @ (j @ _polar_rotation(beta, m, s) @ j.T)
        out.append(d.to(vec.dtype))
    return out


def rotate(x: torch.Tensor, wigner: list[torch.Tensor], to_frame: bool) -> torch.Tensor:
    """Rotate x (E, K, 2, C) into (to_frame=True) or out of the edge frames."""
    out = []
    lmax = math.isqrt(x.shape[1]) - 1
    for l in range(lmax + 1):
        d = wigner[l]
        sl = x[:, l * l:(l + 1) * (l + 1)]
        out.append(torch.einsum("eji,ejsc->eisc" if to_frame else "eij,ejsc->eisc", d, sl))
    return torch.cat(out, dim=1)


def _m_index(lmax: int, m: int, device=None) -> torch.Tensor:
    """Component indices of (l, m) for l = |m|..lmax (m may be negative), cached on ``device``."""
    return _m_index_cached(lmax, m, torch.device(device) if device is not None else torch.device("cpu"))


@cache
def _m_index_cached(lmax: int, m: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([l * l + l + m for l in range(abs(m), lmax + 1)], dtype=torch.long, device=device)


def _output_dtype(device_type: str, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype a linear layer returns here: the autocast dtype when autocast is on, else the weights'."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight_dtype


class SO2Linear(nn.Module):
    """Equivariant linear map in the edge frame: (E, K_in, 2, c_in) -> (E, K_out, 2, c_out).

    ``mmax`` limits |m| (eSCN's m truncation); components with |m| > mmax of the output are zero.
    """

    def __init__(self, lmax_in: int, c_in: int, lmax_out: int, c_out: int, mmax: int | None = None) -> None:
        super().__init__()
        self.lmax_in, self.lmax_out, self.c_in, self.c_out = lmax_in, lmax_out, c_in, c_out
        self.mmax = min(lmax_in, lmax_out, lmax_in if mmax is None else mmax)
        self.keep = nn.ModuleList()  # A: s-preserving, one per s
        self.flip = nn.ModuleList()  # B: s-flipping, one per s (m > 0 only)
        for m in range(self.mmax + 1):
            n_in = (lmax_in - m + 1) * c_in
            n_out = (lmax_out - m + 1) * c_out
            self.keep.append(nn.ModuleList([nn.Linear(n_in, n_out, bias=False) for _ in range(2)]))
            if m > 0:
                self.flip.append(nn.ModuleList([nn.Linear(n_in, n_out, bias=False) for _ in range(2)]))
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=1.0 / math.sqrt(mod.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e, dev = x.shape[0], x.device
        # under autocast the linears return bfloat16: the output takes the dtype they give
        dt = _output_dtype(dev.type, self.keep[0][0].weight.dtype)
        parts = []  # (E, n, 2, c_out) per m (then -m), in the component order of _output_order
        for m in range(self.mmax + 1):
            xp = x.index_select(1, _m_index(self.lmax_in, m, dev))  # (E, n_l, 2, c)
            xp_s = [xp[:, :, s].reshape(e, xp.shape[1] * xp.shape[3]) for s in range(2)]  # explicit: E may be 0
            n_out = self.lmax_out - m + 1
            if m == 0:
                parts.append(torch.stack([self.keep[0][s](xp_s[s]).view(e, n_out, self.c_out) for s in range(2)], 2))
                continue
            xm = x.index_select(1, _m_index(self.lmax_in, -m, dev))
            xm_s = [xm[:, :, s].reshape(e, xm.shape[1] * xm.shape[3]) for s in range(2)]
            a, b = self.keep[m], self.flip[m - 1]
            yp = [a[s](xp_s[s]) + b[1 - s](xm_s[1 - s]) for s in range(2)]
            ym = [a[s](xm_s[s]) - b[1 - s](xp_s[1 - s]) for s in range(2)]
            parts.append(torch.stack([y.view(e, n_out, self.c_out) for y in yp], 2))
            parts.append(torch.stack([y.view(e, n_out, self.c_out) for y in ym], 2))
        order, n_zero = _output_order(self.lmax_out, self.mmax, dev)
        if n_zero:  # components with |m| > mmax
            parts.append(x.new_zeros((e, n_zero, 2, self.c_out), dtype=dt))
        return torch.cat([p.to(dt) for p in parts], 1).index_select(1, order)


@cache
def _output_order(lmax: int, mmax: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """(where each component k sits in SO2Linear's concatenation of m = 0, 1, -1, 2, -2, ... blocks followed by
    the |m| > mmax zeros, their number)."""
    seq = [k for m in range(mmax + 1) for sign in ((1,) if m == 0 else (1, -1))
           for k in _m_index_cached(lmax, sign * m, torch.device("cpu")).tolist()]
    rest = [k for k in range(n_components(lmax)) if k not in set(seq)]
    pos = {k: p for p, k in enumerate(seq + rest)}
    return torch.tensor([pos[k] for k in range(n_components(lmax))], dtype=torch.long, device=device), len(rest)


class DegreeLinear(nn.Module):
    """Channel mixing per (l, s) (equivariant in any frame); bias on natural scalars only."""

    def __init__(self, lmax: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.lmax = lmax
        self.weight = nn.Parameter(torch.randn(lmax + 1, 2, c_in, c_out) / math.sqrt(c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deg = degree_of_component(self.lmax, x.device)
        w = self.weight[deg]  # (K, 2, c_in, c_out)
        y = torch.einsum("nksc,ksco->nkso", x, w)
        y[:, 0, 0] = y[:, 0, 0] + self.bias
        return y


class EquivariantNorm(nn.Module):
    """RMS normalization of node features (N, K, 2, C), equivariant, with a learnable scale per (l, s, channel).

    ``kind = "separable"`` (the default of new models): the natural scalars (l = 0, s = 0) by their own RMS, every
    other (l, s) by one joint RMS over all of them, floored at ``SEPARABLE_FLOOR`` times the scalars' mean square.
    The map is then smooth where equivariant parts vanish: at a symmetric site (diamond Si: l = 1, 2 are zero by
    symmetry) those stay near zero instead of being blown up to unit size.

    ``kind = "degree"`` (uniham <= 0.1.3 checkpoints): an RMS per (l, s) with an absolute eps of 1e-6. It divides
    a slice that vanishes by symmetry by ~1e-3, so float32 rounding (or CP2K's 1e-6 grid noise in H0) of a
    symmetric structure grew ~1e3x per layer: uniham-v1's diamond-Si bands break the cubic symmetry by 12-30 meV
    (by the cell's orientation; float64 alone does not cure it: bench/results/norm_symmetry).
    """

    SEPARABLE_FLOOR = 1e-3

    def __init__(self, lmax: int, channels: int, eps: float = 1e-6, kind: str = "degree") -> None:
        super().__init__()
        if kind not in ("degree", "separable"):
            raise ValueError(f"norm {kind!r} is not 'degree' or 'separable'")
        self.lmax, self.eps, self.kind = lmax, eps, kind
        self.scale = nn.Parameter(torch.ones(lmax + 1, 2, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "degree":
            out = []
            for l in range(self.lmax + 1):
                sl = x[:, l * l:(l + 1) * (l + 1)]
                rms = sl.pow(2).mean(dim=(1, 3), keepdim=True).add(self.eps).sqrt()
                out.append(sl / rms * self.scale[l][None, None])
            return torch.cat(out, dim=1)
        n, k, _, c = x.shape
        sq = x.pow(2)
        ms0 = sq[:, 0, 0].mean(-1)                                             # (N,) natural scalars
        ms1 = (sq[:, 1:].sum((1, 2, 3)) + sq[:, 0, 1].sum(-1)) / ((2 * k - 1) * c)  # (N,) all the rest
        inv0 = torch.rsqrt(ms0 + self.eps)
        inv1 = torch.rsqrt(ms1 + self.SEPARABLE_FLOOR * ms0 + self.eps)
        factor = inv1[:, None, None].expand(n, k, 2).clone()
        factor[:, 0, 0] = inv0
        return x * factor[..., None] * self.scale[degree_of_component(self.lmax, x.device)][None]


class Gate(nn.Module):
    """SiLU on natural scalars; every other (l, s) slice scaled by a sigmoid of the natural scalars."""

    def __init__(self, lmax: int, channels: int) -> None:
        super().__init__()
        self.lmax, self.channels = lmax, channels
        self.gates = nn.Linear(channels, (lmax + 1) * 2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scal = x[:, 0, 0]
        g = torch.sigmoid(self.gates(scal)).view(-1, self.lmax + 1, 2, self.channels)
        deg = degree_of_component(self.lmax, x.device)
        y = x * g[:, deg]
        y[:, 0, 0] = torch.nn.functional.silu(scal)
        return y

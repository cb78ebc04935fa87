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


def edge_wigner(vec: torch.Tensor, lmax: int) -> list[torch.Tensor]:
    """[D_l (E, 2l+1, 2l+1) for l = 0..lmax] of the rotation R_e that takes e3nn's y axis to each edge.

    A global feature f becomes D_l^T f in the edge frame; D_l f' takes it back. Same as
    ``e3nn.o3.wigner_D(l, alpha, beta, 0)``, with generators exact in float64.
    """
    from e3nn import o3

    alpha, beta = o3.xyz_to_angles(vec.double())  # float64 throughout, cast at the end: float32 matrix_exp
    a = (alpha % (2 * math.pi))[:, None, None]  # of degree 6 alone would cost an order of magnitude
    b = (beta % (2 * math.pi))[:, None, None]
    out = []
    for l in range(lmax + 1):
        x = _generators(l, vec.device)
        out.append((torch.matrix_exp(a * x[1]) @ torch.matrix_exp(b * x[0])).to(vec.dtype))
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
        e = x.shape[0]
        # under autocast the linears return bfloat16: the output takes the dtype they give
        dev = x.device
        dt = _output_dtype(dev.type, self.keep[0][0].weight.dtype)
        out = x.new_zeros((e, n_components(self.lmax_out), 2, self.c_out), dtype=dt)
        for m in range(self.mmax + 1):
            ip, op = _m_index(self.lmax_in, m, dev), _m_index(self.lmax_out, m, dev)
            xp = x[:, ip]  # (E, n_l, 2, c)
            xp_s = [xp[:, :, s].reshape(e, xp.shape[1] * xp.shape[3]) for s in range(2)]  # explicit: E may be 0
            if m == 0:
                for s in range(2):
                    out[:, op, s] = self.keep[0][s](xp_s[s]).view(e, op.numel(), self.c_out)
                continue
            im, om = _m_index(self.lmax_in, -m, dev), _m_index(self.lmax_out, -m, dev)
            xm = x[:, im]
            xm_s = [xm[:, :, s].reshape(e, xm.shape[1] * xm.shape[3]) for s in range(2)]
            a, b = self.keep[m], self.flip[m - 1]
            for s in range(2):
                yp = a[s](xp_s[s]) + b[1 - s](xm_s[1 - s])
                ym = a[s](xm_s[s]) - b[1 - s](xp_s[1 - s])
                out[:, op, s] = yp.view(e, op.numel(), self.c_out)
                out[:, om, s] = ym.view(e, om.numel(), self.c_out)
        return out


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
    """RMS norm per (l, s) over components and channels, with a learnable per-channel scale."""

    def __init__(self, lmax: int, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.lmax, self.eps = lmax, eps
        self.scale = nn.Parameter(torch.ones(lmax + 1, 2, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for l in range(self.lmax + 1):
            sl = x[:, l * l:(l + 1) * (l + 1)]
            rms = sl.pow(2).mean(dim=(1, 3), keepdim=True).add(self.eps).sqrt()
            out.append(sl / rms * self.scale[l][None, None])
        return torch.cat(out, dim=1)


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

"""The Hamiltonian network: graph in, every H block out, exactly E(3)-equivariant.

``kind = "so2"`` (default): DeepH-2-style message passing in edge-aligned local frames. Per layer and
edge (i <- j, vector r = tau_j + R - tau_i): rotate x_i, x_j into the edge frame, scale them by a
radial/species MLP, mix them with an SO(2) convolution (:class:`uniham.model.so2.SO2Linear`, O(L^3)),
rotate back, weight by a multi-head attention over the neighbours of i (logits from the natural
scalars of the message, smoothly switched off by the cutoff envelope), sum, update the node with a
residual per-degree linear, an equivariant RMS norm and a gated nonlinearity.

``kind = "e3"``: the DeepH-E3-like baseline for side-by-side comparisons: the same layers, but the
message is a full Clebsch-Gordan tensor product of x_j with the spherical harmonics of r (e3nn,
per-edge weights from the radial MLP, O(L^6)), no local frames.

Heads: the off-site block of edge (i, j, R) is the output of a last SO(2) convolution of (x_i, x_j)
(or of a tensor product for "e3"), as irreps (L, s) combined by Clebsch-Gordan coefficients
(:class:`uniham.model.layout.BlockAssembler`); the on-site block of atom i comes from x_i and an
envelope-weighted sum of edge-frame outputs rotated back. Hermiticity H_ji(-R) = H_ij(R)^T is imposed
by averaging every edge's block with the transpose of its reverse edge.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from uniham.model.graph import N_Z
from uniham.model.layout import BlockAssembler, Layout
from uniham.model.so2 import (
    DegreeLinear,
    EquivariantNorm,
    Gate,
    SO2Linear,
    degree_of_component,
    edge_wigner,
    n_components,
    rotate,
)

N_ELEMENTS = N_Z  # embedding rows: Z = 0..86


# [model] counts: the lowest value a network can be built with (head_mmax -1 = all |m|)
MODEL_MINIMA = {"cutoff": 0, "lmax": 0, "mmax": 0, "head_mmax": -1, "channels": 1, "layers": 1, "heads": 1,
                "n_rbf": 1, "radial_hidden": 1}


@dataclass
class ModelConfig:
    kind: str = "so2"  # "so2" or "e3"
    cutoff: float = 8.0  # Angstrom: edges (and predicted off-site blocks) within this distance
    # > 0: per element pair, edges out to max(cutoff, the distance where the pair's most diffuse basis
    # functions overlap by range_eps) (uniham.model.graph.EdgeRange); 1e-5 keeps db1's bands within
    # ~meV of the DFT (bench/results/model_range/model_range_db1.json) where a fixed 8 A costs eV. 0: fixed cutoff.
    range_eps: float = 0.0
    lmax: int = 4
    mmax: int = 4  # |m| kept in the SO(2) convolutions of the message layers
    # |m| kept in the output heads; -1 = all. A block between shells l1, l2 has irreps up to L = l1 + l2, and
    # in the bond frame even a pure two-centre d-d (delta) bond has |m| = 4 parts: heads truncated at
    # |m| <= 2 cannot represent DZVP blocks (floor 1.06 meV MAE on a Si2 cell, bench/head_capacity.py)
    head_mmax: int = -1
    channels: int = 32
    layers: int = 3
    heads: int = 4
    n_rbf: int = 16
    radial_hidden: int = 64
    layout: tuple = ((0, 3), (1, 2), (2, 2), (3, 1))  # shell slots {l: count}
    # H0 as input (delta_h0 models): bond-frame invariants of its off-site blocks enter the radial MLPs, its
    # on-site irreps the initial node features (uniham.model.prior); graphs must carry p_site, p_edge_inv
    prior: bool = False
    # node-feature normalization (uniham.model.so2.EquivariantNorm): "separable" is smooth where equivariant parts
    # vanish by symmetry; "degree" is that of the checkpoints of uniham <= 0.1.3 (which load with it)
    norm: str = "separable"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layout"] = [list(x) for x in self.layout]
        return d

    def validate(self) -> None:
        """ValueError with a one-line reason for settings no network can be built with."""
        from uniham.dft.cp2k_basis import OVERLAP_EPS

        self._check_types()
        if self.norm not in ("degree", "separable"):
            raise ValueError(f"norm {self.norm!r} is not 'degree' or 'separable'")
        if self.kind not in ("so2", "e3"):
            raise ValueError(f"model kind {self.kind!r} is not 'so2' or 'e3'")
        if self.range_eps < 0 or self.range_eps >= 1 or 0 < self.range_eps < OVERLAP_EPS:
            # below OVERLAP_EPS H would reach past S, which predictions compute out to overlap OVERLAP_EPS
            raise ValueError(f"range_eps {self.range_eps} must be 0 (fixed cutoff) or in [{OVERLAP_EPS:g}, 1)")
        if self.cutoff <= 0 and self.range_eps == 0:
            raise ValueError(f"cutoff {self.cutoff} must be > 0 (or set range_eps for per-pair ranges)")
        if self.channels % self.heads:
            raise ValueError(f"channels ({self.channels}) must be a multiple of heads ({self.heads})")

    def _check_types(self) -> None:
        """Every field of its default's type (an int may stand for a float) and every count in its range."""
        for f in fields(self):
            v, default = getattr(self, f.name), f.default
            if f.name == "layout":
                ok = isinstance(v, (list, tuple))
            elif isinstance(default, bool):
                ok = isinstance(v, bool)
            elif isinstance(default, (int, float)):
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (
                    isinstance(default, float) or float(v).is_integer())
            else:
                ok = isinstance(v, type(default))
            if not ok:
                raise ValueError(f"{f.name} = {v!r}: expected {type(default).__name__}")
        for name, lo in MODEL_MINIMA.items():
            if getattr(self, name) < lo:
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be >= {lo}")
        if not all(isinstance(x, (list, tuple)) and len(x) == 2 and 0 <= x[0] <= 3 and x[1] >= 1 for x in self.layout):
            raise ValueError(f"layout = {self.layout!r}: expected [[l, shells], ...] with 0 <= l <= 3, shells >= 1")

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        if "layout" in d:
            d["layout"] = tuple(tuple(int(v) for v in x) for x in d["layout"])
        return cls(**d)


def envelope(d: torch.Tensor, cutoff: float | torch.Tensor) -> torch.Tensor:
    """Smooth cutoff: (1 + cos(pi d / rc)) / 2 for d < rc, zero beyond; C1-continuous at rc (a number or
    one per edge, shaped as d)."""
    return torch.where(d < cutoff, 0.5 * (torch.cos(math.pi * d / cutoff) + 1.0), torch.zeros_like(d))


class RadialBasis(nn.Module):
    """Gaussian radial basis on [0, cutoff]."""

    def __init__(self, n: int, cutoff: float) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, cutoff, n))
        self.width = cutoff / n

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((d[:, None] - self.centers) / self.width) ** 2)


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, n: int, weight: torch.Tensor) -> torch.Tensor:
    """softmax of logits (E, H) over edges with the same target, each term multiplied by weight (E,).

    Computed in the dtype of ``weight`` (the model's, float32 or float64) whatever the autocast dtype of
    the logits (scatters need one dtype)."""
    logits = logits.to(weight.dtype)
    mx = torch.full((n, logits.shape[1]), -torch.inf, dtype=logits.dtype, device=logits.device)
    mx = mx.scatter_reduce(0, index[:, None].expand_as(logits), logits, reduce="amax", include_self=True)
    ex = torch.exp(logits - mx[index]) * weight[:, None]
    den = torch.zeros_like(mx).index_add_(0, index, ex)
    return ex / (den[index] + 1e-9)


def n_edge_scalars(cfg: ModelConfig) -> int:
    """Width of the per-edge scalar features: radial basis, both elements' embeddings, H0 invariants if any."""
    from uniham.model.prior import n_edge_invariants

    return cfg.n_rbf + 2 * cfg.channels + (n_edge_invariants(Layout.from_counts(dict(cfg.layout))) if cfg.prior else 0)


class MessageLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, l = cfg.channels, cfg.lmax
        self.cfg = cfg
        self.radial = nn.Sequential(nn.Linear(n_edge_scalars(cfg), cfg.radial_hidden), nn.SiLU(),
                                    nn.Linear(cfg.radial_hidden, (l + 1) * 2 * 2 * c))
        if cfg.kind == "so2":
            self.conv = SO2Linear(l, 2 * c, l, c, cfg.mmax)
        else:
            self.tp = _E3Message(cfg)
        self.attn = nn.Linear(c, cfg.heads)
        self.update = DegreeLinear(l, c, c)
        self.norm = EquivariantNorm(l, c, kind=cfg.norm)
        self.ffn_in = DegreeLinear(l, c, c)
        self.gate = Gate(l, c)
        self.ffn_out = DegreeLinear(l, c, c)

    def forward(self, x, graph, edge_scal, wigner, env):
        i, j = graph["edge_index"]
        return self.update_nodes(x, self.aggregate(x, i, j, edge_scal, wigner, env, graph.get("sh")))

    def aggregate(self, x, i, j, edge_scal, wigner, env, sh=None) -> torch.Tensor:
        """Attention-weighted messages summed on target nodes i: (N, K, 2, C). The edges given must hold
        every edge of each target they touch (the softmax runs over a node's edges): chunks of whole
        node ranges of the (i-sorted) edge list may be summed separately."""
        n, c, l = x.shape[0], self.cfg.channels, self.cfg.lmax
        rad = self.radial(edge_scal).view(-1, l + 1, 2, 2 * c)[:, degree_of_component(l, x.device)]
        if self.cfg.kind == "so2":
            inp = torch.cat([rotate(x[j], wigner, True), rotate(x[i], wigner, True)], dim=-1) * rad
            msg = rotate(self.conv(inp), wigner, False)
        else:
            msg = self.tp(torch.cat([x[j], x[i]], dim=-1) * rad, sh)
        alpha = segment_softmax(self.attn(msg[:, 0, 0]), i, n, env)  # (E, heads)
        # each head's weight on its c / heads channels (expand, not repeat_interleave: no host sync)
        msg = msg * alpha[:, :, None].expand(-1, -1, c // self.cfg.heads).reshape(alpha.shape[0], c)[:, None, None, :]
        # the residual stream stays float32 under autocast; only the linears run in bfloat16
        return torch.zeros_like(x).index_add_(0, i, msg.to(x.dtype))

    def update_nodes(self, x, agg) -> torch.Tensor:
        x = x + self.update(agg)
        x = self.norm(x)
        return x + self.ffn_out(self.gate(self.ffn_in(x)))


class _E3Message(nn.Module):
    """Full tensor product x (l <= lmax, natural + pseudo) (x) Y(r) (l <= lmax) -> l <= lmax (e3nn, uvu)."""

    def __init__(self, cfg: ModelConfig, c_in: int | None = None, out_irreps=None) -> None:
        super().__init__()
        from e3nn import o3

        self.cfg = cfg
        c_in = c_in or 2 * cfg.channels
        self.irreps_in = o3.Irreps([(c_in, (l, p)) for l in range(cfg.lmax + 1) for p in _parities(l)])
        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax)
        self.irreps_out = out_irreps or o3.Irreps(
            [(cfg.channels, (l, p)) for l in range(cfg.lmax + 1) for p in _parities(l)])
        self.tp = o3.FullyConnectedTensorProduct(self.irreps_in, self.irreps_sh, self.irreps_out,
                                                 shared_weights=True, internal_weights=True)

    def forward(self, x: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        return from_e3nn(self.tp(to_e3nn(x), sh), self.irreps_out)


def _parities(l: int) -> list[int]:
    return [(-1) ** l, -((-1) ** l)]  # natural (s = 0), pseudo (s = 1)


def to_e3nn(x: torch.Tensor) -> torch.Tensor:
    """(N, K, 2, C) -> e3nn flat layout of Irreps [(C, (l, p)) for l, for p natural then pseudo]."""
    n, k, _, c = x.shape
    lmax = math.isqrt(k) - 1
    parts = []
    for l in range(lmax + 1):
        for s in range(2):
            parts.append(x[:, l * l:(l + 1) ** 2, s].transpose(1, 2).reshape(n, c * (2 * l + 1)))  # mul-major; n may be 0
    return torch.cat(parts, dim=1)


def from_e3nn(flat: torch.Tensor, irreps) -> torch.Tensor:
    """Inverse of :func:`to_e3nn` for irreps with equal multiplicity per (l, p)."""
    n = flat.shape[0]
    lmax = max(ir.l for _, ir in irreps)
    c = irreps[0].mul
    out = flat.new_zeros((n, n_components(lmax), 2, c))
    start = 0
    for mul, ir in irreps:
        s = 0 if ir.p == (-1) ** ir.l else 1
        size = mul * ir.dim
        out[:, ir.l ** 2:(ir.l + 1) ** 2, s] = flat[:, start:start + size].view(n, mul, ir.dim).transpose(1, 2)
        start += size
    return out


class HamiltonianNet(nn.Module):
    """Structure graph -> on-site (N, U, U) and off-site (E, U, U) blocks in eV (uniham orbital order)."""

    def __init__(self, cfg: ModelConfig, basis_family: str | None = None) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.layout = Layout.from_counts(dict(cfg.layout))
        if cfg.range_eps > 0:
            # 1 / most diffuse exponent per Z (Bohr^2) of the basis the model is trained for: the per-pair
            # edge range (EdgeRange); a buffer, so a checkpoint carries the ranges it was trained with
            from uniham.model.graph import inverse_exponents

            self.register_buffer("inv_alpha", torch.tensor(inverse_exponents(basis_family)))
        c, l = cfg.channels, cfg.lmax
        self.embed = nn.Embedding(N_ELEMENTS, c)
        # per-pair ranges: the radial basis spans [0, 1] of d / r_ij (each pair's range resolved alike)
        self.rbf = RadialBasis(cfg.n_rbf, 1.0 if cfg.range_eps > 0 else cfg.cutoff)
        self.layers = nn.ModuleList([MessageLayer(cfg) for _ in range(cfg.layers)])
        self.assembler = BlockAssembler(self.layout)
        need = self.layout.out_irreps()
        self.need = sorted(need.items())
        self.lout = max(L for (L, _), _ in self.need)
        self.cout = max(n for _, n in self.need)
        self.head_radial = nn.Sequential(nn.Linear(n_edge_scalars(cfg), cfg.radial_hidden), nn.SiLU(),
                                         nn.Linear(cfg.radial_hidden, (l + 1) * 2 * 2 * c))
        if cfg.kind == "so2":
            hm = None if cfg.head_mmax < 0 else cfg.head_mmax
            self.edge_head = SO2Linear(l, 2 * c, self.lout, self.cout, hm)
            self.site_head = SO2Linear(l, 2 * c, self.lout, self.cout, hm)
        else:
            from e3nn import o3

            irr = o3.Irreps([(self.cout, (L, p)) for L in range(self.lout + 1) for p in _parities(L)])
            self.edge_head = _E3Message(cfg, 2 * c, irr)
            self.site_head = _E3Message(cfg, 2 * c, irr)
        self.site_self = DegreeLinear(l, c, self.cout)
        if cfg.prior:  # per (L, s) of the on-site H0 irreps (L <= lmax): count -> channels
            self.prior_in = nn.ModuleDict({f"{L}_{s}": nn.Linear(cnt, c, bias=False) for (L, s), cnt in self.need if L <= l})
        self.scale = nn.Parameter(torch.tensor(1.0))
        # per-element reference on-site blocks (eV; invariant L = 0 parts, fitted to the training data by
        # the trainer): the network predicts on-site blocks relative to them, so it need not produce
        # the large atomic levels (tens of eV) from unit-scale features
        self.register_buffer("site_ref", torch.zeros(N_ELEMENTS, self.layout.dim, self.layout.dim))

    def edge_inputs(self, z, vec, i, j, emb=None, prior_inv=None) -> dict:
        """Per-edge quantities: envelope (E,), scalar features (E, :func:`n_edge_scalars`), Wigner matrices (so2)
        or spherical harmonics (e3) of the edge vectors vec (E, 3) Angstrom; ``prior_inv`` (E, n): the H0
        invariants of the edges (prior models)."""
        cfg = self.cfg
        d = vec.norm(dim=1)
        if cfg.range_eps > 0:
            rc = self.edge_cutoff(z[i], z[j]).to(d.dtype)
            env, rbf = envelope(d, rc), self.rbf(d / rc)
        else:
            env, rbf = envelope(d, cfg.cutoff), self.rbf(d)
        emb = self.embed(z) if emb is None else emb
        parts = [rbf * env[:, None], emb[i], emb[j]]
        if cfg.prior:
            if prior_inv is None:
                raise ValueError("this model takes H0 as input: the graph needs p_edge_inv (and p_site)")
            parts.append(prior_inv.to(rbf.dtype) * env[:, None])
        out = {"env": env, "scal": torch.cat(parts, dim=1),
               "wigner": None, "sh": None}
        if cfg.kind == "so2":
            out["wigner"] = edge_wigner(vec, max(cfg.lmax, self.lout))
        else:
            from e3nn import o3

            out["sh"] = o3.spherical_harmonics(list(range(cfg.lmax + 1)), vec, normalize=True)
        return out

    def edge_cutoff(self, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
        """r_ij (E,) Angstrom of edges between atomic numbers zi, zj: the formula of :class:`EdgeRange`."""
        from uniham.model.graph import CP2K_BOHR_ANG

        r = CP2K_BOHR_ANG * torch.sqrt(math.log(1 / self.cfg.range_eps) * (self.inv_alpha[zi] + self.inv_alpha[zj]))
        return torch.clamp(r, min=self.cfg.cutoff)

    def edge_range(self):
        """The :class:`uniham.model.graph.EdgeRange` to build this model's graphs with."""
        from uniham.model.graph import EdgeRange

        if self.cfg.range_eps <= 0:
            return EdgeRange(float(self.cfg.cutoff))
        return EdgeRange(float(self.cfg.cutoff), float(self.cfg.range_eps),
                         tuple(float(x) for x in self.inv_alpha.double().cpu()))

    def initial_features(self, z, dtype, p_site=None) -> torch.Tensor:
        """(N, K, 2, C): the element embedding as the L = 0 natural part, plus (prior models) the on-site H0
        irreps p_site (N, U, U) mapped per (L, s) into the channels."""
        x = torch.zeros((z.shape[0], n_components(self.cfg.lmax), 2, self.cfg.channels), dtype=dtype, device=z.device)
        x[:, 0, 0] = self.embed(z)
        if self.cfg.prior:
            from uniham.model.prior import node_irreps

            if p_site is None:
                raise ValueError("this model takes H0 as input: the graph needs p_site (and p_edge_inv)")
            for (L, s), f in node_irreps(p_site.to(dtype), self.layout, self.cfg.lmax).items():
                x[:, L * L:(L + 1) ** 2, 0 if s == 1 else 1] += self.prior_in[f"{L}_{s}"](f)
        return x

    def forward(self, graph: dict) -> tuple[torch.Tensor, torch.Tensor]:
        z, vec = graph["z"], graph["vec"]
        i, j = graph["edge_index"]
        ei = self.edge_inputs(z, vec, i, j, prior_inv=graph.get("p_edge_inv"))
        x = self.initial_features(z, vec.dtype, graph.get("p_site"))
        for layer in self.layers:
            x = layer.update_nodes(x, layer.aggregate(x, i, j, ei["scal"], ei["wigner"], ei["env"], ei["sh"]))
        # heads: model dtype (float32/64) even under autocast (bfloat16's 8-bit mantissa would cap H at ~0.4 % relative)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(vec.dtype)
            ei = {k: (v.to(vec.dtype) if k == "scal" else v) for k, v in ei.items()}
            out_edge, site = self.head_outputs(x, i, j, ei)
            h_site = self.site_blocks(x, site, z)
            h_edge = self.assembler(self._split(out_edge)) * self.scale
            # Hermiticity: H_ji(-R) = H_ij(R)^T
            h_edge = 0.5 * (h_edge + h_edge[graph["reverse"]].transpose(1, 2))
            return h_site, h_edge

    def head_outputs(self, x, i, j, ei: dict, edges: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Edge-head irreps (E, K, 2, c_out) (None unless ``edges``) and the site head's contributions summed
        on the nodes i (N, K, 2, c_out); chunks of edges may be summed separately."""
        l, n = self.cfg.lmax, x.shape[0]
        rad = self.head_radial(ei["scal"]).view(-1, l + 1, 2, 2 * self.cfg.channels)[:, degree_of_component(l, x.device)]
        if self.cfg.kind == "so2":
            w = ei["wigner"]
            inp = torch.cat([rotate(x[j], w, True), rotate(x[i], w, True)], dim=-1) * rad
            out_edge = rotate(self.edge_head(inp), w, False) if edges else None
            out_site_e = rotate(self.site_head(inp), w, False)
        else:
            inp = torch.cat([x[j], x[i]], dim=-1) * rad
            out_edge = self.edge_head(inp, ei["sh"]) if edges else None
            out_site_e = self.site_head(inp, ei["sh"])
        site = x.new_zeros((n,) + out_site_e.shape[1:]).index_add_(0, i, (out_site_e * ei["env"][:, None, None, None]).to(x.dtype))
        return out_edge, site

    def site_blocks(self, x, site, z) -> torch.Tensor:
        """On-site blocks (N, U, U) of atoms with atomic numbers z (N,) from the node features and the
        summed site-head contributions, plus the element's reference block."""
        own = self.site_self(x)
        k = min(own.shape[1], site.shape[1])  # degrees the node features and the output share
        site = site.clone()
        site[:, :k] = site[:, :k] + own[:, :k]
        h_site = self.assembler(self._split(site)) * self.scale
        return 0.5 * (h_site + h_site.transpose(1, 2)) + self.site_ref[z].to(h_site.dtype)

    def edge_blocks(self, out_edge) -> torch.Tensor:
        """Unsymmetrized off-site blocks (E, U, U) from edge-head irreps."""
        return self.assembler(self._split(out_edge)) * self.scale

    def _split(self, y: torch.Tensor) -> dict:
        return {(L, s): y[:, L * L:(L + 1) ** 2, 0 if s == 1 else 1, :cnt] for (L, s), cnt in self.need}


def build_model(cfg: ModelConfig | dict, basis_family: str | None = None) -> HamiltonianNet:
    """The network of ``cfg``; ``basis_family`` (CP2K basis name, default DZVP-MOLOPT-SR-GTH) sets the
    per-pair edge ranges when ``cfg.range_eps`` > 0."""
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return HamiltonianNet(cfg, basis_family)

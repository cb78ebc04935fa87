"""Linear-scaling prediction for large structures: chunked graph, network and overlaps; sparse output.

The network is evaluated over *node-range chunks* of the i-sorted edge list, so a chunk holds all edges
of its target atoms (the attention softmax and the message sums are complete within it) and memory is
bounded by ``max_edges`` per chunk, whatever the size of the structure. Per layer only the node features
(N, K, 2, C) are global. The output heads run per chunk on the canonical half of the edges (e < reverse(e))
together with their reverses, so that H_ij(R) = (h_e + h_rev^T) / 2 is symmetrized without keeping all
blocks in memory; blocks are streamed into HDF5.

S(R) comes from the basis integrals (PySCF, no SCF) over its *own* range, which is longer than the model
cutoff (:func:`uniham.dft.cp2k_basis.overlap_range`; Si 10.2 A, Cs 18.4 A): S cut at the H cutoff
is not positive definite at every k. Its pairs are chunked by node ranges the same way, and within a chunk
by spatially compact groups of home atoms: one ``intor_cross`` per group between its atoms and the periodic
images of their partners. The on-site S block depends on the element only and is computed once per element.

The file format (``prediction.h5``, "uniham-sparse-2") and its reader live in :mod:`uniham.io.sparse_prediction`.

"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from uniham.errors import UnihamError
from uniham.io.sparse_prediction import FORMAT  # the file this module writes


def _chunks(ptr: np.ndarray, max_edges: int):
    """Node ranges (n0, n1) whose edges (ptr[n0]:ptr[n1]) number at most max_edges (one node may exceed)."""
    n = len(ptr) - 1
    n0 = 0
    while n0 < n:
        n1 = int(np.searchsorted(ptr, ptr[n0] + max_edges, side="right")) - 1
        n1 = min(max(n1, n0 + 1), n)
        yield n0, n1
        n0 = n1


def predict_large(atoms, ckpt_path, out_path, max_edges: int = 20000, overlap: bool = True,
                  progress: bool = True, threads: int = 0) -> dict:
    """Predict every H block (and S from integrals) of ``atoms`` in bounded memory; write ``out_path``.

    Returns timing (graph, network, overlap, total seconds), counts and the peak RSS (MB).
    """
    import resource

    import h5py

    from uniham.model.graph import neighbor_graph

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    run = _LargeRun.load(atoms, ckpt_path)
    g = neighbor_graph(run.box, run.model.edge_range())
    t_graph = time.perf_counter() - t0
    n, ne = len(run.box), len(g["i"])
    ptr = np.searchsorted(g["i"], np.arange(n + 1))
    chunks = list(_chunks(ptr, max_edges))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    t1 = time.perf_counter()
    with torch.no_grad(), h5py.File(tmp, "w") as f:
        x = run.node_features(g, ptr, chunks, progress)
        n_canon = run.write_blocks(f, x, g, ptr, chunks, progress)
        t_net = time.perf_counter() - t1
        t2 = time.perf_counter()
        if overlap:
            _write_overlaps(f, run.box, run.symbols, run.bases, max_edges, progress)
        t_ovl = time.perf_counter() - t2
        timing = {"graph_s": t_graph, "network_s": t_net, "overlap_s": t_ovl, "total_s": time.perf_counter() - t0}
        f.attrs["timing"] = json.dumps(timing)
    tmp.replace(out_path)
    return {"atoms": n, "edges": ne, "blocks_written": n_canon + n, "chunks": len(chunks), "timing": timing,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "file": str(out_path),
            "file_mb": out_path.stat().st_size / 2**20}


class _LargeRun:
    """A direct model and a structure for chunked prediction: the network pass over node-range chunks and the
    streaming of its blocks into the file."""

    def __init__(self, model, ckpt_path, family: str, box, bases: dict) -> None:
        self.model, self.ckpt_path, self.family, self.box, self.bases = model, ckpt_path, family, box, bases
        self.symbols = np.array(box.get_chemical_symbols())
        self.index = {x: np.asarray(model.layout.element_index(b.orbital_basis())) for x, b in bases.items()}
        self.norb = {x: len(v) for x, v in self.index.items()}
        self.z = torch.tensor(box.numbers, dtype=torch.long)

    @classmethod
    def load(cls, atoms, ckpt_path) -> _LargeRun:
        from uniham.dft.cp2k_basis import DEFAULT_BASIS, load_basis
        from uniham.model.checkpoint import load_checkpoint, model_from_checkpoint
        from uniham.pretrained import resolve
        from uniham.structure import ensure_box

        ckpt_path = resolve(ckpt_path)[0]  # a file, a shipped model's name, or None (the shipped default)
        ckpt = load_checkpoint(ckpt_path)
        model = model_from_checkpoint(ckpt, path=ckpt_path).eval()
        if (ckpt.get("target") or {}).get("kind", "H") != "H":
            raise UnihamError(f"{ckpt_path} predicts ΔH on a zeroth-step H0, which CP2K cannot give at this size "
                              "(one dense diagonalization); chunked large prediction takes a direct (H) model")
        family = ckpt.get("basis_family") or DEFAULT_BASIS
        box = ensure_box(atoms)
        try:
            bases = {x: load_basis(x, family) for x in dict.fromkeys(box.get_chemical_symbols())}
        except UnihamError as exc:
            raise UnihamError(f"the model's basis {family}: {exc}") from None
        return cls(model, ckpt_path, family, box, bases)

    def _edges(self, g: dict, sel, reverse: bool = False) -> tuple:
        """(i, j, edge inputs) of the edges ``sel`` (a slice or index tensor), or of their reverses."""
        i, j = torch.from_numpy(g["i"])[sel], torch.from_numpy(g["j"])[sel]
        vec = torch.from_numpy(g["vec"])[sel].float()
        if reverse:
            i, j, vec = j, i, -vec
        return i, j, self.model.edge_inputs(self.z, vec, i, j, self.emb)

    def node_features(self, g: dict, ptr, chunks, progress: bool) -> torch.Tensor:
        """(N, K, 2, C) node features after the message layers, each layer summed chunk by chunk."""
        from tqdm import tqdm

        model = self.model
        self.emb = model.embed(self.z)
        x = model.initial_features(self.z, torch.float32)
        with tqdm(total=len(chunks) * len(model.layers), desc="network (chunks)", disable=not progress,
                  leave=False) as bar:
            for layer in model.layers:
                agg = torch.zeros_like(x)
                for n0, n1 in chunks:
                    i, j, ei = self._edges(g, slice(ptr[n0], ptr[n1]))
                    agg += layer.aggregate(x, i, j, ei["scal"], ei["wigner"], ei["env"], ei["sh"])
                    bar.update(1)
                x = layer.update_nodes(x, agg)
        return x

    def write_blocks(self, f, x: torch.Tensor, g: dict, ptr, chunks, progress: bool) -> int:
        """The header, the canonical half of the off-site H blocks (streamed per chunk) and the on-site
        blocks into the open file ``f``; returns the number of off-site blocks."""
        from tqdm import tqdm

        model, symbols, index = self.model, self.symbols, self.index
        canon = g["reverse"] > np.arange(len(g["i"]))
        sizes = np.array([self.norb[symbols[a]] * self.norb[symbols[b]] for a, b in zip(g["i"][canon], g["j"][canon])],
                         dtype=np.int64)
        offset = np.concatenate([[0], np.cumsum(sizes)])
        self._write_header(f, g, canon, offset)
        dh = f.create_dataset("edges/H", shape=(int(offset[-1]),), dtype=np.float32, chunks=True)
        canon_pos = np.cumsum(canon) - 1  # position of a canonical edge among the canonical ones
        site = None
        for n0, n1 in tqdm(chunks, desc="heads (chunks)", disable=not progress, leave=False):
            e0, e1 = ptr[n0], ptr[n1]
            i, j, ei = self._edges(g, slice(e0, e1))
            sel = np.nonzero(canon[e0:e1])[0]
            out_edge, s_part = model.head_outputs(x, i, j, ei, edges=bool(len(sel)))
            site = s_part if site is None else site + s_part
            if not len(sel):
                continue
            # H_ij(R) = (B_ij(R) + B_ji(-R)^T) / 2: the forward heads are this chunk's; the reverse edges
            # (j -> i) mostly sit in other chunks, so their heads are run here
            ri, rj, rev = self._edges(g, torch.from_numpy(sel + e0), reverse=True)
            orv, _ = model.head_outputs(x, ri, rj, rev)
            of = out_edge[torch.from_numpy(sel)]
            h = (0.5 * (model.edge_blocks(of) + model.edge_blocks(orv).transpose(1, 2))).numpy()
            flat = [h[k][np.ix_(index[symbols[g["i"][ee]]], index[symbols[g["j"][ee]]])].ravel()
                    for k, ee in enumerate(sel + e0)]
            first = canon_pos[sel[0] + e0]
            dh[offset[first]:offset[first] + sum(map(len, flat))] = np.concatenate(flat)
        h_site = model.site_blocks(x, site, self.z).numpy()
        u = model.layout.dim
        onsite = np.zeros((len(symbols), u, u), np.float32)
        for a, sym in enumerate(symbols):
            ia = index[sym]
            onsite[a, :len(ia), :len(ia)] = h_site[a][np.ix_(ia, ia)]
        f.create_dataset("onsite/H", data=onsite, compression="gzip")
        return int(canon.sum())

    def _write_header(self, f, g: dict, canon: np.ndarray, offset: np.ndarray) -> None:
        box = self.box
        f.attrs["format"] = FORMAT
        f.attrs["basis_family"] = self.family
        f.attrs["elements"] = json.dumps(self.norb)
        f.attrs["checkpoint"] = str(self.ckpt_path)
        f.create_dataset("atoms/numbers", data=box.numbers)
        f.create_dataset("atoms/positions", data=box.positions)
        f.create_dataset("atoms/cell", data=box.cell.array)
        f.create_dataset("atoms/pbc", data=box.pbc)
        f.create_dataset("edges/i", data=g["i"][canon].astype(np.int32))
        f.create_dataset("edges/j", data=g["j"][canon].astype(np.int32))
        f.create_dataset("edges/R", data=g["shift"][canon].astype(np.int32))
        f.create_dataset("edges/offset", data=offset)


def _write_overlaps(f, box, symbols: np.ndarray, bases: dict, max_edges: int, progress: bool) -> None:
    """S blocks by PySCF integrals over the overlap pairs (canonical half), chunk by chunk:
    <chunk atoms | partner images of the chunk>; writes the ``overlap/`` group and ``onsite/S``."""
    from tqdm import tqdm

    from uniham.dft.cp2k_basis import OVERLAP_EPS, _pyscf_to_uniham, overlap_pairs, pyscf_mole
    from uniham.model.graph import reverse_index

    u = {s: _pyscf_to_uniham(b) for s, b in bases.items()}
    n = len(box)
    oi, oj, osh = overlap_pairs(box, bases, OVERLAP_EPS)
    canon = reverse_index(oi, oj, osh, n) > np.arange(len(oi))
    oi, oj, osh = oi[canon], oj[canon], osh[canon]
    norb = {x: b.orbital_basis().dim for x, b in bases.items()}
    sizes = np.array([norb[symbols[a]] * norb[symbols[b]] for a, b in zip(oi, oj)], dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    f.attrs["overlap_eps"] = OVERLAP_EPS
    f.create_dataset("overlap/i", data=oi.astype(np.int32))
    f.create_dataset("overlap/j", data=oj.astype(np.int32))
    f.create_dataset("overlap/R", data=osh.astype(np.int32))
    f.create_dataset("overlap/offset", data=offset)
    ds = f.create_dataset("overlap/S", shape=(int(offset[-1]),), dtype=np.float32, chunks=True)
    # on-site S is the same for every atom of an element
    site = {}
    for x in bases:
        mol, _ = pyscf_mole([x], np.zeros((1, 3)), bases)
        site[x] = u[x] @ mol.intor("int1e_ovlp") @ u[x].T
    maxn = max(norb.values())
    onsite = np.zeros((n, maxn, maxn), np.float32)
    for a, x in enumerate(symbols):
        onsite[a, :norb[x], :norb[x]] = site[x]
    f.create_dataset("onsite/S", data=onsite, compression="gzip")
    ptr = np.searchsorted(oi, np.arange(n + 1))
    for n0, n1 in tqdm(list(_chunks(ptr, max_edges)), desc="overlaps (chunks)", disable=not progress, leave=False):
        e0, e1 = ptr[n0], ptr[n1]
        if e0 == e1:
            continue
        vals = np.empty(int(offset[e1] - offset[e0]), np.float32)
        for group in _spatial_groups(box.positions[n0:n1], OVERLAP_GROUP_ATOMS):
            _group_overlaps(vals, n0 + group, ptr, offset, offset[e0], (oi, oj, osh), box, symbols, bases, u)
        ds[offset[e0]:offset[e1]] = vals


# home atoms per PySCF cross-overlap call: the integrals run over every home atom x every partner of any of
# them, so a compact group wastes little (Si, 10 A range: 32 atoms ~3x the needed pairs, a 112-atom run
# of consecutive atoms ~7x), while tiny groups pay PySCF's set-up per call
OVERLAP_GROUP_ATOMS = 32


def _spatial_groups(pos: np.ndarray, size: int) -> list[np.ndarray]:
    """Indices into ``pos`` (n, 3) split into groups of about ``size`` atoms that are close in space (recursive
    bisection along the longest extent)."""
    def split(idx):
        if len(idx) <= size:
            return [idx]
        p = pos[idx]
        axis = int(np.argmax(p.max(0) - p.min(0)))
        order = idx[np.argsort(p[:, axis], kind="stable")]
        half = len(order) // 2
        return split(order[:half]) + split(order[half:])

    return split(np.arange(len(pos)))


def _group_overlaps(vals, atoms, ptr, offset, base, pairs_ijr, box, symbols, bases, u) -> None:
    """S blocks (uniham order, flattened) of every canonical overlap pair of the home ``atoms`` into ``vals`` at
    offset[pair] - ``base``: one PySCF cross-overlap <home | partners>, then one transform per element pair."""
    from pyscf import gto

    from uniham.dft.cp2k_basis import pyscf_mole

    oi, oj, osh = pairs_ijr
    pairs = np.concatenate([np.arange(ptr[a], ptr[a + 1]) for a in atoms])
    if not len(pairs):
        return
    home = np.sort(atoms)
    where = np.searchsorted(home, oi[pairs])
    keys, inv = np.unique(np.column_stack([oj[pairs], osh[pairs]]), axis=0, return_inverse=True)
    inv = inv.ravel()
    mol_a, off_a = pyscf_mole(list(symbols[home]), box.positions[home], bases)
    mol_b, off_b = pyscf_mole(list(symbols[keys[:, 0]]), box.positions[keys[:, 0]] + keys[:, 1:] @ box.cell.array, bases)
    s_ab = gto.intor_cross("int1e_ovlp", mol_a, mol_b)
    si, sj = symbols[oi[pairs]], symbols[oj[pairs]]
    for x in np.unique(si):
        for y in np.unique(sj[si == x]):
            sel = np.nonzero((si == x) & (sj == y))[0]
            na, nb = u[x].shape[0], u[y].shape[0]
            ra = off_a[where[sel]][:, None] + np.arange(na)          # (P, na) rows of s_ab
            cb = off_b[inv[sel]][:, None] + np.arange(nb)            # (P, nb) columns
            blk = s_ab[ra[:, :, None], cb[:, None, :]]               # (P, na, nb) in PySCF order
            out = np.einsum("ia,pab,jb->pij", u[x], blk, u[y], optimize=True).reshape(len(sel), -1)
            pos = offset[pairs[sel]] - base
            vals[pos[:, None] + np.arange(na * nb)] = out

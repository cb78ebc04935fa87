"""Training data: structures with DFT Hamiltonians -> graphs with targets, cached in memory.

Sources (any mix): a uniham dataset folder (``manifest.json``; S recomputed from the CP2K basis by
PySCF integrals), a DeepH-dock/legacy folder or any file :func:`uniham.io.read_hamiltonian` reads, or a
folder whose sub-folders are such Hamiltonians.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uniham.errors import UnihamError
from uniham.model.graph import EdgeRange, structure_graph, targets
from uniham.model.layout import Layout

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One training structure. ``id`` is unique across the sources ("db1/el-Si-1x1x1-0"); ``key`` is what
    the split hashes: a dataset store's own structure id, so that the store, its copies and its subsets
    (whatever their folder is called) put every structure in the split `uniham dataset split` prints;
    ``record`` is the store's manifest record (prototype ``label``, ``formula``) or None."""
    id: str
    # (with_overlap: bool = True) -> Hamiltonian. with_overlap=False may leave S as zeros where S costs work
    # (dataset stores recompute it by PySCF integrals, ~1 s per structure): for graphs and H targets alone
    load: object
    key: str = ""
    record: dict | None = None
    # "H" (the DFT Hamiltonian) or "delta_h0" (a ΔH store's ΔH = H - H0: :mod:`uniham.data.zeroth_step`)
    target: str = "H"
    # delta_h0 items: (with_overlap=True) -> the SCF Hamiltonian (full stored range), against which bands are judged
    reference: object = None
    # delta_h0 items: the CP2K settings of H0 (Cp2kSettings fields), which prediction must use again
    prior: dict | None = None

    def __post_init__(self):
        self.key = self.key or self.id


def discover(paths) -> list[Item]:
    """Every structure under ``paths`` (dataset folders, Hamiltonian folders/files, folders of them)."""
    from uniham.data.store import DatasetStore
    from uniham.io import guess_format, read_hamiltonian

    items: list[Item] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UnihamError(f"{p}: no such file or folder")
        if (p / "manifest.json").exists():
            store = DatasetStore(p)
            recs = store.manifest["structures"]
            kind = (store.manifest.get("derived") or {}).get("kind", "H")
            if kind not in ("H", "delta_h0"):
                raise UnihamError(f"{p}: holds {kind!r}, which the network cannot learn")
            src = None
            if kind == "delta_h0":
                from uniham.data.zeroth_step import source_store

                src = source_store(store)
            items += [Item(f"{p.name}/{sid}", (lambda with_overlap=True, s=sid, st=store: st.load(s, with_overlap)),
                           sid, recs[sid], kind,
                           (lambda with_overlap=True, s=sid: src.load(s, with_overlap)) if src is not None else None,
                           store.manifest["derived"]["dft"] if src is not None else None)
                      for sid in store.ids()]
            continue
        try:
            guess_format(p)
            items.append(Item(p.name, (lambda with_overlap=True, q=p: read_hamiltonian(q))))
            continue
        except UnihamError:
            pass
        subs = sorted(q for q in p.iterdir() if q.is_dir())
        found = False
        for q in subs:
            try:
                guess_format(q)
            except UnihamError:
                continue
            items.append(Item(f"{p.name}/{q.name}", (lambda with_overlap=True, q=q: read_hamiltonian(q))))
            found = True
        if not found:
            raise UnihamError(f"{p}: neither a uniham dataset, a Hamiltonian, nor a folder of Hamiltonians")
    return items


def make_sample(ham, cutoff: float | EdgeRange, layout: Layout, dtype=torch.float32, with_overlap: bool = True,
                h0: dict | None = None) -> dict:
    """Graph and targets of ``ham``; with ``h0`` ({key: block} of the zeroth-step H0) also the prior
    features of :mod:`uniham.model.prior` (p_site, p_edge_inv)."""
    if ham.spinful:
        raise UnihamError("spinful Hamiltonians are not supported by the network yet")
    g = structure_graph(ham.atoms, cutoff, dtype)
    g.update(targets(ham, g, layout, dtype, with_overlap))
    if h0 is not None:
        from uniham.model.prior import prior_sample

        g.update(prior_sample(h0, ham.atoms.get_chemical_symbols(), ham.basis, g, layout, dtype))
    return g


def zeroth_step_blocks(item: Item, delta) -> dict:
    """H0 = H - ΔH of a delta_h0 item on every block of its SCF H (``delta``: the item's ΔH Hamiltonian;
    beyond the ΔH store's cutoff H0 ≈ H)."""
    if item.target != "delta_h0":
        raise UnihamError(f"{item.id}: H0 features need ΔH data (a `uniham dataset zeroth` store)")
    return h0_from(item.reference(with_overlap=False).H, delta.H)


def h0_from(h: dict, delta: dict) -> dict:
    """{key: H - ΔH} on every block of ``h`` (ΔH zero where it has no block: beyond its store's cutoff)."""
    return {k: v - delta[k] if k in delta else v for k, v in h.items()}


def load_samples(items: list[Item], cutoff: float | EdgeRange, layout: Layout, progress: bool = True,
                 dtype=torch.float32, with_overlap: bool = True, prior: bool = False, band: bool = False) -> list[dict]:
    """Graphs and targets of ``items``; ``with_overlap=False``: H targets and masks only (no s_site/s_edge),
    without the overlap integrals a dataset store would compute (training needs S only for the "free" gauge
    and overlap-weighted losses); ``prior``: with the H0 input features (delta_h0 items); ``band``: with the
    DFT eigenvectors of the band loss (:mod:`uniham.model.band_loss`; these need S)."""
    from tqdm import tqdm

    from uniham.model.band_loss import band_sample

    out = []
    for it in tqdm(items, desc="graphs and targets", unit="structure", disable=not progress, leave=False):
        direct = it.target != "delta_h0"
        ham = it.load(with_overlap=with_overlap or (band and direct))
        s = make_sample(ham, cutoff, layout, dtype, with_overlap, zeroth_step_blocks(it, ham) if prior else None)
        if band:
            s.update(band_sample(ham if direct else it.reference(with_overlap=True), s, layout, it.key))
        s["id"] = it.id
        out.append(s)
    return out


# ----------------------------------------------------------------------------- sample cache
# Graphs and targets cost PySCF overlap integrals and neighbour searches per structure; the trainer keeps
# them in ``OUT/samples.pt`` so that a resume (or a run on a machine without PySCF, e.g. a GPU node) starts
# at once. Blocks are stored compactly: only the entries the masks select (an element's basis fills a
# fraction of the universal layout) plus bit-packed masks; loading restores the dense (n, U, U) arrays.
CACHE_FORMAT = "uniham-samples-1"


def _pack(sample: dict) -> dict:
    out = {}
    for k, v in sample.items():
        if k.startswith(("h_", "s_")):
            continue
        if k.startswith("m_"):
            kind = k[2:]
            m = v.numpy()
            out[k] = {"shape": list(m.shape), "bits": torch.from_numpy(np.packbits(m.ravel()))}
            for t in ("h", "s"):
                if f"{t}_{kind}" in sample:
                    out[f"{t}_{kind}"] = sample[f"{t}_{kind}"][v].clone()
        else:
            out[k] = v
    return out


def _unpack(packed: dict) -> dict:
    out = {}
    for k, v in packed.items():
        if k.startswith("m_"):
            n = int(np.prod(v["shape"]))
            m = torch.from_numpy(np.unpackbits(v["bits"].numpy(), count=n).astype(bool).reshape(v["shape"]))
            out[k] = m
            for t in ("h", "s"):
                vals = packed.get(f"{t}_{k[2:]}")
                if vals is not None:
                    dense = torch.zeros(m.shape, dtype=vals.dtype)
                    dense[m] = vals
                    out[f"{t}_{k[2:]}"] = dense
        elif not k.startswith(("h_", "s_")):
            out[k] = v
    return out


def save_sample_cache(path, key: str, sets: dict[str, list[dict]], meta: dict) -> None:
    """Write ``sets`` ({name: [sample, ...]}) and ``meta`` atomically to ``path`` under ``key``."""
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CACHE_FORMAT, "key": key, "meta": meta,
                "sets": {n: [_pack(s) for s in v] for n, v in sets.items()}}, tmp)
    os.replace(tmp, path)


def load_sample_cache(path, key: str | list[str] | None) -> tuple[dict[str, list[dict]], dict] | None:
    """The cached sets and meta when ``path`` holds samples made under ``key`` (or one of a list of keys;
    None: any); None otherwise."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        blob = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file is simply rebuilt
        log.warning("%s: unreadable sample cache (%s); rebuilding", path, exc)
        return None
    keys = [key] if isinstance(key, str) else key
    if blob.get("format") != CACHE_FORMAT or (keys is not None and blob.get("key") not in keys):
        return None
    return {n: [_unpack(s) for s in v] for n, v in blob["sets"].items()}, blob["meta"]


SLICE_FORMAT = "uniham-packed-slice-1"


def save_packed_slice(path, sets: dict[str, list[dict]], meta: dict) -> int:
    """Write a self-contained training slice (``sets`` {name: [sample, ...]} and ``meta``: what the trainer needs
    instead of the database: layout, basis family, target, splits, split keys and rule) as one LZMA-compressed
    file, atomically (lossless: the stored values sit on the store's grid and compress ~5x). Returns its bytes."""
    import lzma
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with lzma.open(tmp, "wb", preset=6) as f:
        torch.save({"format": SLICE_FORMAT, "meta": meta, "sets": {n: [_pack(s) for s in v] for n, v in sets.items()}}, f)
    os.replace(tmp, path)
    return path.stat().st_size


def load_packed_slice(path) -> tuple[dict[str, list[dict]], dict]:
    """(sets, meta) of a file of :func:`save_packed_slice`; a missing, torn or foreign file is one UnihamError."""
    import lzma

    from uniham.errors import UnihamError

    try:
        with lzma.open(path, "rb") as f:
            blob = torch.load(f, weights_only=True)
    except FileNotFoundError:
        raise UnihamError(f"{path}: no such packed slice") from None
    except Exception as exc:  # noqa: BLE001 - lzma, pickle and torch errors all mean "not a slice file"
        raise UnihamError(f"{path}: not a readable packed training slice ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != SLICE_FORMAT:
        raise UnihamError(f"{path}: not a packed training slice (format {SLICE_FORMAT!r} expected)")
    return {n: [_unpack(s) for s in v] for n, v in blob["sets"].items()}, blob["meta"]


def layout_for(items: list[Item], limit: int = 50) -> Layout:
    """Layout covering the bases of (up to ``limit``) items; DZVP-MOLOPT-SR data gets the universal one."""
    bases = []
    for it in items[:limit]:
        bases += list(it.load(with_overlap=False).basis.values())
    return Layout.from_bases(bases)

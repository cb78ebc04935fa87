"""Training data: structures with DFT Hamiltonians -> graphs with targets, cached in memory.

Sources (any mix): a uniham dataset folder (``manifest.json``; S recomputed from the CP2K basis by
PySCF integrals), a DeepH-dock/legacy folder or any file :func:`uniham.io.read_hamiltonian` reads, or a
folder whose sub-folders are such Hamiltonians.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from uniham.errors import UnihamError
from uniham.model.graph import structure_graph, targets
from uniham.model.layout import Layout

log = logging.getLogger(__name__)


@dataclass
class Item:
    id: str
    load: object  # () -> Hamiltonian


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
            items += [Item(f"{p.name}/{sid}", (lambda s=sid, st=store: st.load(s))) for sid in store.ids()]
            continue
        try:
            guess_format(p)
            items.append(Item(p.name, (lambda q=p: read_hamiltonian(q))))
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
            items.append(Item(f"{p.name}/{q.name}", (lambda q=q: read_hamiltonian(q))))
            found = True
        if not found:
            raise UnihamError(f"{p}: neither a uniham dataset, a Hamiltonian, nor a folder of Hamiltonians")
    return items


def make_sample(ham, cutoff: float, layout: Layout, dtype=torch.float32, with_overlap: bool = True) -> dict:
    if ham.spinful:
        raise UnihamError("spinful Hamiltonians are not supported by the network yet")
    g = structure_graph(ham.atoms, cutoff, dtype)
    g.update(targets(ham, g, layout, dtype, with_overlap))
    return g


def load_samples(items: list[Item], cutoff: float, layout: Layout, progress: bool = True,
                 dtype=torch.float32) -> list[dict]:
    from tqdm import tqdm

    out = []
    for it in tqdm(items, desc="graphs and targets", unit="structure", disable=not progress, leave=False):
        s = make_sample(it.load(), cutoff, layout, dtype)
        s["id"] = it.id
        out.append(s)
    return out


def layout_for(items: list[Item], limit: int = 50) -> Layout:
    """Layout covering the bases of (up to ``limit``) items; DZVP-MOLOPT-SR data gets the universal one."""
    bases = []
    for it in items[:limit]:
        bases += list(it.load().basis.values())
    return Layout.from_bases(bases)

"""The zeroth-step residual of a database: ΔH = H_SCF - H0 for every stored structure, in a sibling store.

H0 (:func:`uniham.dft.cp2k_engine.run_dft` with ``zeroth_step``) is the Kohn-Sham matrix of the superposed
atomic densities in the same basis, density cutoff and EPS_DEFAULT as the structure's SCF. The model learns
ΔH, 20-60x smaller than H and short-ranged (issue 25's measurements: < 0.05 meV mean beyond 7 A), so the
sibling store keeps only the blocks within ``cutoff`` (the model's range). Training needs no more: within the
cutoff H0 = H - ΔH, beyond it H0 ≈ H (each record says how far off: ``beyond_cutoff_max_meV``), so the bands
of H + (ΔH_pred - ΔH) are those of H0 + ΔH_pred. At prediction time H0 is computed over its full range.

The sibling store has the layout of :mod:`uniham.data.store` (its manifest carries ``derived``: kind
``delta_h0``, source, cutoff, CP2K settings); a group's ``H`` holds ΔH (eV) at the source record's
fixed-point step, so H - ΔH is on the same grid. The pass runs on the Dask builder of
:func:`uniham.data.build.run_tasks`: resumable, ``kill -9``-safe, stopped cleanly by SIGINT/SIGTERM.
Energy zero: H0 and H share CP2K's (average electrostatic potential zero); the residual shift μ of
ΔH ≈ μS is recorded per structure (``mu_eV``) but not removed.
"""
from __future__ import annotations

import logging
import time
from collections import namedtuple

import numpy as np

from uniham.data.build import balanced_order, run_tasks, task_failure
from uniham.data.encoding import H_STEP_EV
from uniham.data.store import DatasetStore
from uniham.errors import UnihamError

log = logging.getLogger(__name__)

KIND = "delta_h0"
DEFINITION = ("H in this store is ΔH = H_SCF - H0 (eV) on the source's blocks within cutoff_A; H0 = CP2K KS matrix "
              "of the superposed atomic densities (MAX_SCF 1, SCF_GUESS ATOMIC), same basis, cutoff, EPS_DEFAULT")
SHELLS = (("onsite", 0.0, 1e-6), ("0-3", 1e-6, 3.0), ("3-5", 3.0, 5.0), ("5-7", 5.0, 7.0))

_Item = namedtuple("_Item", "id elements")


def _blocks(raw: dict, dims: list[int]):
    """(key tuple, block view) of a stored group's flat H."""
    start = 0
    for k in map(tuple, np.asarray(raw["keys"]).tolist()):
        n = dims[k[3]] * dims[k[4]]
        yield k, raw["H"][start:start + n].reshape(dims[k[3]], dims[k[4]])
        start += n


def residual(raw: dict, h0, cutoff: float) -> tuple[dict, dict]:
    """(data, stats): ΔH = H - H0 of the stored group ``raw`` on its blocks within ``cutoff`` (A), as a group
    dict for the store, and |ΔH| statistics (meV) by distance shell, beyond the cutoff, and the energy-zero
    shift μ (eV) of the least-squares fit ΔH ≈ μS over the kept blocks (S of the H0 run)."""
    dims = [h0.basis[x].dim for x in raw["symbols"]]
    pos, cell = np.asarray(raw["positions"], float), np.asarray(raw["cell"], float)
    keys, parts, dist = [], [], []
    beyond = []
    su = ss = 0.0
    for k, blk in _blocks(raw, dims):
        d = float(np.linalg.norm(pos[k[4]] + np.asarray(k[:3]) @ cell - pos[k[3]]))
        dh = blk - h0.H[k] if k in h0.H else blk.copy()
        if d > cutoff + 1e-8:
            beyond.append(np.abs(dh).ravel())
            continue
        keys.append(k)
        parts.append(dh.ravel())
        dist.append(np.full(dh.size, d))
        if k in h0.S:
            su += float((dh * h0.S[k]).sum())
            ss += float((h0.S[k] ** 2).sum())
    flat = np.concatenate(parts) if parts else np.zeros(0)
    dist = np.concatenate(dist) if dist else np.zeros(0)
    stats = {"mu_eV": round(su / ss, 6) if ss else None, "max_meV": round(1e3 * float(np.abs(flat).max(initial=0)), 4)}
    for name, lo, hi in SHELLS:
        sel = (dist >= lo) & (dist < hi) if lo else dist < hi
        stats[f"mean_{name}_meV"] = round(1e3 * float(np.abs(flat[sel]).mean()), 4) if sel.any() else None
    far = np.concatenate(beyond) if beyond else np.zeros(0)
    stats["beyond_cutoff_mean_meV"] = round(1e3 * float(far.mean()), 5) if far.size else None
    stats["beyond_cutoff_max_meV"] = round(1e3 * float(far.max()), 4) if far.size else None
    data = {k: raw[k] for k in ("symbols", "cell", "positions", "pbc", "fermi_eV", "n_electrons", "basis")}
    data |= {"keys": np.array(keys, dtype=np.int32).reshape(-1, 5), "H": flat}
    return data, stats


def delta_task(sid: str, raw: dict, record: dict, dft: dict, cutoff: float) -> dict:
    """One structure's H0 by CP2K and its residual (in a worker) -> {"id", "ok", "data"/"record"}; never raises."""
    from ase import Atoms

    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

    t0 = time.perf_counter()
    base = {k: record.get(k) for k in ("source", "label", "formula", "elements", "n_atoms")}
    try:
        atoms = Atoms(raw["symbols"], positions=raw["positions"], cell=raw["cell"], pbc=raw["pbc"])
        settings = Cp2kSettings(**(dft | {"basis": raw["basis"], "ecut": record["dft"]["ecut_Ry"],
                                          "zeroth_step": True, "kmesh": None, "n_check_kpoints": 0}))
        h0 = run_dft(atoms, settings)
        if not np.allclose(h0.atoms.positions, atoms.positions, atol=1e-9):
            raise UnihamError("CP2K's geometry differs from the stored one (nudged atoms): image labels would differ")
        data, stats = residual(raw, h0, cutoff)
    except Exception as exc:  # noqa: BLE001 - a worker must report, not die: the reason is recorded
        return task_failure(sid, base, exc, t0)
    step = float(record.get("H_step_eV", H_STEP_EV))
    data["H_step_eV"] = step
    p = h0.provenance
    rec = base | {"wall_s": round(time.perf_counter() - t0, 2), "cp2k_s": round(p["timing"]["cp2k_s"], 2),
                  "n_blocks_stored": len(data["keys"]), "cutoff_A": cutoff, "H_step_eV": step,
                  "image_convention": "uniham", "stats": stats,
                  "h0": {"versions": p["versions"], "basis": settings.basis, "xc": settings.xc,
                         "ecut_Ry": p["settings"]["ecut_Ry"], "eps_default": settings.eps_default,
                         "kmesh": p["settings"]["kmesh"]},
                  "source_scf_cp2k": record.get("dft", {}).get("versions", {}).get("cp2k")}
    return {"id": sid, "ok": True, "data": data, "record": rec}


def zeroth_pass(source, out, cutoff: float = 7.0, workers: int = 2, scheduler: str | None = None,
                hours: float | None = None, limit: int | None = None, retry_failed: bool = False,
                progress: bool = True) -> dict:
    """Run (or resume) the H0 pass over the dataset folder ``source`` into the sibling folder ``out``.

    Never writes to ``source``. Structures are taken in :func:`uniham.data.build.balanced_order` (every
    ideal structure before its copies, rare elements first), so a pass stopped anywhere covers the periodic
    table evenly; ``hours`` and ``limit`` bound one run. Returns the counts of the run."""
    from uniham.data.recipe import load_recipe

    if not cutoff > 0:
        raise UnihamError(f"--cutoff must be positive (got {cutoff})")
    src = DatasetStore(source)
    if src.manifest.get("derived"):
        raise UnihamError(f"{source} is itself a derived store; give the SCF store")
    bad = src.verify()
    if bad:
        raise UnihamError(f"{source}: shard checksums do not match ({', '.join(bad[:3])}): run `uniham dataset "
                          "info --verify` and restore them first")
    dft = dict(load_recipe(src.root / "recipe.toml").dft)
    store = DatasetStore(out)
    store.create_derived(src, {"kind": KIND, "cutoff_A": float(cutoff), "definition": DEFINITION,
                               "dft": {k: v for k, v in dft.items() if k != "kspacing"}})
    recovered = store.recover()
    if recovered:
        log.warning("recovered after an interruption: %s", recovered)
    store.consolidate(force=True)
    lost = store.forget_damaged()
    if lost:
        log.warning("%d structures of missing or damaged shards are redone", len(lost))
    if retry_failed:
        store.forget_failures(list(store.manifest["failures"]))
    done, failed = store.done_ids(), store.failed_ids()
    recs = src.manifest["structures"]
    todo = [_Item(sid, set(r["elements"])) for sid, r in recs.items() if sid not in done and sid not in failed]
    have: dict[str, int] = {}
    for sid in done & set(recs):
        for x in set(recs[sid]["elements"]):
            have[x] = have.get(x, 0) + 1
    todo = balanced_order(sorted(todo), have, elements=lambda e: e.elements)
    if limit is not None:
        todo = todo[:limit]
    summary = {"source_structures": len(recs), "already_done": len(done), "already_failed": len(failed),
               "submitted": len(todo), "done": 0, "failed": 0}
    if not todo:
        return summary
    tasks = ((f"h0-{e.id}", delta_task, (e.id, src.load_raw(e.id), recs[e.id], dft, float(cutoff))) for e in todo)
    summary |= run_tasks(store, tasks, len(todo), workers=workers, scheduler=scheduler, hours=hours,
                         progress=progress, desc="H0")
    return summary


def source_store(store: DatasetStore) -> DatasetStore:
    """The SCF store a ΔH store was made from: its recorded path relative to the ΔH folder, a sibling folder
    of that name, or the path as recorded (relative to the working directory); checked by recipe hash."""
    from pathlib import Path

    d = store.manifest["derived"]
    rec = Path(d["source"])
    for cand in (store.root / rec, store.root.parent / rec.name, rec):
        if (cand / "manifest.json").exists():
            src = DatasetStore(cand)
            if src.manifest["recipe_hash"] == d["source_recipe_hash"]:
                return src
    raise UnihamError(f"{store.root}: its SCF store {d['source']} (recipe hash {d['source_recipe_hash']}) is not found "
                      "beside it; ΔH alone defines no bands")


def delta_coverage(store: DatasetStore) -> dict:
    """Summary of a ΔH store's records: counts, cost, and the |ΔH| statistics (medians over structures)."""
    recs = store.manifest["structures"]
    out = {"n_structures": len(recs), "n_failed": len(store.manifest["failures"]),
           "cp2k_s_total": round(sum(r.get("cp2k_s", 0) for r in recs.values()), 1)}
    for key in ("mu_eV", "max_meV", *(f"mean_{s[0]}_meV" for s in SHELLS), "beyond_cutoff_mean_meV",
                "beyond_cutoff_max_meV"):
        vals = [r["stats"][key] for r in recs.values() if r.get("stats", {}).get(key) is not None]
        out[f"median_{key}"] = round(float(np.median(vals)), 5) if vals else None
    return out

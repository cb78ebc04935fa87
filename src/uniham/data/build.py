"""Building a dataset: every planned structure's DFT as an independent task on Dask distributed.

``build`` plans the recipe, skips what the store already holds (done or failed), and submits the rest
to a Dask cluster: a ``LocalCluster`` of single-threaded worker processes (one CP2K job per core, the
measured throughput setting) or an existing scheduler (``--scheduler tcp://host:8786``). On a SLURM
cluster ``scripts/slurm_build.py`` submits single-core worker jobs with dask-jobqueue and builds on them
from the process that started them (each worker needs uniham and CP2K; results travel back to the one
process that writes the store).
Results are written by this process only, as they complete (see :mod:`uniham.data.store`).
Stopping a build (SIGINT, or the SIGTERM a batch system sends at its time limit) kills the CP2K runs
in flight on every worker, packs what has finished, and exits; the next build redoes only those runs.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import re
import signal
import threading
import time
import traceback

import numpy as np

from uniham.data.recipe import Entry, load_recipe, plan
from uniham.data.encoding import FINEST_STEP, H_STEP_EV, ROUNDING_KPTS, choose_step, half_keys
from uniham.data.store import DatasetStore
from uniham.errors import UnihamError

log = logging.getLogger(__name__)

DEFAULT_STORE = {"cutoff": 8.0}
INTERRUPTED = re.compile(r"CP2K failed \(exit -\d+\)")  # how uniham <= 0.1.1 recorded a CP2K killed by a signal


def stored_range(symbols: list[str], basis: str, store: dict) -> np.ndarray:
    """(n, n) distance (Angstrom) up to which H_ij(R) blocks are stored, from the recipe's [store]:
    ``cutoff`` alone, or with ``range_eps`` max(cutoff, the pair's basis range at that overlap threshold,
    :func:`uniham.dft.cp2k_basis.overlap_range`). A fixed cutoff does not fit every element: with
    DZVP-MOLOPT-SR, 10 A leaves Si's bands within 0.2 meV but CsBi's off by 80 eV (Cs's diffuse
    functions reach 17 A); max(10 A, range at 1e-6) keeps Cu, Ru, Si, AsGe2Ru within 0.9 meV and CsBi
    within 5 meV (bench/results/store_range/store_range_dft.json)."""
    cutoff = float(store.get("cutoff", DEFAULT_STORE["cutoff"]))
    n = len(symbols)
    if store.get("range_eps") is None:
        return np.full((n, n), cutoff)
    from uniham.dft.cp2k_basis import load_basis, overlap_range

    kinds = list(dict.fromkeys(symbols))
    rng = overlap_range({x: load_basis(x, basis) for x in kinds}, float(store["range_eps"]))
    return np.array([[max(cutoff, rng[(a, b)]) for b in symbols] for a in symbols])


def bytes_per_h_element(step: float = H_STEP_EV) -> float:
    """Shard bytes per stored H element (keys and metadata included) at fixed-point ``step`` (eV), blocks
    by distance, shuffle, gzip 6: 1.27 at 1e-5 eV, ~0.9 bit less per halving of the precision, as measured
    on db1's shards (143 structures of shard-00050: 1.31 lexicographic, 1.27 by distance; 0.99 at 5e-5 eV;
    the first structures built at 5e-5 eV: 0.93). The first 33 zigzag structures of db1 (small, light cells)
    averaged 0.95: an estimate, within ~25%."""
    return 1.27 - 0.112 * float(np.log2(step / H_STEP_EV))


def stored_elements(atoms, basis: str, store: dict) -> int:
    """How many H elements a structure's store record holds (the stored half of the Hermitian pairs within
    :func:`stored_range`), from the geometry and the basis alone: no DFT."""
    from ase.neighborlist import primitive_neighbor_list

    from uniham.dft.cp2k_basis import load_basis
    from uniham.structure import ensure_box

    box = ensure_box(atoms)
    symbols = box.get_chemical_symbols()
    norb = {x: load_basis(x, basis).orbital_basis().dim for x in dict.fromkeys(symbols)}
    n = np.array([norb[x] for x in symbols])
    reach = stored_range(symbols, basis, store)
    i, j, d = primitive_neighbor_list("ijd", box.pbc, box.cell.array, box.positions, float(reach.max()) + 1e-6,
                                      self_interaction=False)
    off = int((n[i] * n[j])[d <= reach[i, j] + 1e-8].sum())  # both directions of every off-site pair
    return off // 2 + int((n * n).sum())  # one direction of each pair, whole on-site blocks


def ill_conditioned_reason(ham, step: float, err_meV: float, store: dict) -> str:
    """Why a converged structure is not stored: even at the finest step (``step``, eV) the rounding of H moves
    its bands by ``err_meV`` > the store's ``h_band_tol``. Only an overlap S(k) close to singular amplifies
    1e-6 eV that much (a diffuse basis in a strongly compressed cell: Al at 2.3 A, 60% of its volume, moves
    by ~100 meV under 5e-7 eV of noise); such an H defines no bands at any precision a model reaches."""
    smin = min(float(np.linalg.eigvalsh(ham.Sk(k)).min()) for k in ROUNDING_KPTS)
    return (f"overlap nearly singular (smallest eigenvalue of S(k) {smin:.1e}): H rounded to {step:g} eV moves "
            f"the bands by {err_meV:.0f} meV (> h_band_tol {float(store['h_band_tol']):g} meV); not stored")


def task_failure(sid: str, base: dict, exc: Exception, t0: float) -> dict:
    """The result of a worker task whose DFT raised ``exc`` (call it in the ``except`` block): a stopped CP2K
    (the build is being stopped) is no failure and is redone; anything else is a failure with the reason."""
    from uniham.dft.cp2k_engine import Cp2kInterrupted

    if isinstance(exc, Cp2kInterrupted):
        return {"id": sid, "ok": False, "interrupted": True, "record": base | {"reason": str(exc)}}
    if isinstance(exc, UnihamError):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc} ({traceback.format_exc(limit=2).splitlines()[-1]})"
    return {"id": sid, "ok": False, "record": base | {"reason": reason, "wall_s": time.perf_counter() - t0}}


def compute(entry_json: dict, dft: dict, store: dict) -> dict:
    """Run one structure's DFT (in a worker) -> {"id", "ok", "data"/"record"}; never raises."""
    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

    sid = entry_json["id"]
    t0 = time.perf_counter()
    base = {"source": entry_json["source"], "label": entry_json["label"], "formula": entry_json["formula"],
            "elements": sorted(set(entry_json["symbols"])), "n_atoms": len(entry_json["symbols"])}
    try:
        entry = Entry.from_json(entry_json)
        settings = Cp2kSettings(**({"n_check_kpoints": 1} | dft))
        ham = run_dft(entry.atoms, settings)
    except Exception as exc:  # noqa: BLE001 - a worker must report, not die: the reason is recorded
        return task_failure(sid, base, exc, t0)
    box = ham.atoms
    pos, cell = box.positions, box.cell.array
    reach = stored_range(box.get_chemical_symbols(), settings.basis, store)
    dist = {k: np.linalg.norm(pos[k[4]] + np.asarray(k[:3]) @ cell - pos[k[3]]) for k in half_keys(sorted(ham.H))}
    # blocks by distance (ties lexicographic), as DatasetStore.repack orders them: 3-4% fewer bytes
    keys = sorted((k for k, d in dist.items() if d <= reach[k[3], k[4]] + 1e-8), key=lambda k: round(dist[k], 6))
    cutoff = float(store.get("cutoff", DEFAULT_STORE["cutoff"]))
    step = float(store.get("h_step", H_STEP_EV))
    values = np.concatenate([ham.H[k].ravel() for k in keys])  # float64: rounded once, by the store
    rounding, err = {}, None
    if store.get("h_band_tol") is not None:  # the coarsest step that keeps the bands within the tolerance
        try:
            step, err = choose_step(ham, keys, values, step, float(store["h_band_tol"]), finest=FINEST_STEP)
            rounding = {"H_rounding_band_error_meV": round(err, 4)}
        except Exception as exc:  # noqa: BLE001 - the DFT is done: keep it at the default step, say why
            step = min(step, H_STEP_EV)
            rounding = {"H_rounding_check": f"not done ({type(exc).__name__}: {exc}); stored at {step:g} eV"}
    if err is not None and err > float(store["h_band_tol"]):
        return {"id": sid, "ok": False, "record": base | {"reason": ill_conditioned_reason(ham, step, err, store),
                                                            "wall_s": time.perf_counter() - t0}}
    p = ham.provenance
    record = base | {
        "wall_s": round(time.perf_counter() - t0, 2), "host": platform.node(),
        "n_blocks_stored": len(keys), "cutoff_A": cutoff, "range_eps": store.get("range_eps"),
        "H_step_eV": step, **rounding,
        "image_convention": "uniham",
        "dft": {"engine": "cp2k", "versions": p["versions"], "basis": settings.basis, "xc": settings.xc,
                "kmesh": p["settings"]["kmesh"], "ecut_Ry": p["settings"]["ecut_Ry"],
                "rel_cutoff_Ry": settings.rel_cutoff, "smearing_eV": settings.smearing,
                "eps_scf_Ha": settings.eps_scf, "scf_cycles": p["scf"]["cycles"], "converged": p["scf"]["converged"],
                "energy_eV": p["scf"]["energy_eV"],
                "check_vs_cp2k_bands_meV": p["check_vs_cp2k_bands"]["max_band_error_meV"]},
        "perturbation": entry_json.get("perturbation", {}),
        "structure_sha256": hashlib.sha256(np.round(np.concatenate([pos.ravel(), cell.ravel()]), 8).tobytes()).hexdigest()[:16],
    }
    data = {"symbols": box.get_chemical_symbols(), "cell": cell, "positions": pos, "pbc": np.asarray(box.pbc),
            "fermi_eV": ham.fermi_level, "n_electrons": ham.n_electrons, "basis": settings.basis,
            "keys": np.array(keys, dtype=np.int32).reshape(-1, 5), "H": values, "H_step_eV": step}
    return {"id": sid, "ok": True, "data": data, "record": record}


def load_plan(path, recipe) -> tuple[list[Entry], list[dict]]:
    """The entries of a plan file written by ``uniham dataset plan RECIPE -o FILE``, checked against ``recipe``.

    A plan file lets machines without the structure sources (pymatgen's prototype library) build: plan
    once, copy the JSON, build anywhere. The workers get exactly these JSON entries either way."""
    import json

    try:
        doc = json.loads(open(path).read())
        entries = [Entry.from_json(d) for d in doc["structures"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnihamError(f"{path}: not a uniham plan file ({exc})") from None
    if doc.get("recipe_hash") != recipe.hash:
        raise UnihamError(f"{path} was planned from another recipe (hash {doc.get('recipe_hash')} != {recipe.hash})")
    return entries, doc.get("skipped", [])


def parse_part(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N), 1 <= I <= N: this machine takes the planned structures with index % N == I - 1."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UnihamError(f"--part {text!r}: expected I/N, e.g. 2/4") from None
    if not 1 <= i <= n:
        raise UnihamError(f"--part {text!r}: need 1 <= I <= N")
    return i, n


def copy_index(sid: str) -> int:
    """The copy number at the end of an id ("...-1x1x1-3" -> 3; 0 for the ideal structure)."""
    tail = sid.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def balanced_order(todo: list, counts: dict[str, int], elements=None) -> list:
    """Order of computation: copy 0 (every element, prototype, molecule, layer once) before copy 1, and
    within a copy the structure whose rarest element is the rarest so far first, so that a database
    stopped at any point covers the periodic table evenly. ``counts``: structures per element already
    done (updated as structures are taken). Ties keep the plan order. Only the order changes, never the set.
    ``elements``: item -> its set of element symbols (default: the symbols of a plan :class:`Entry`).
    """
    if elements is None:
        elements = lambda e: set(e.atoms.get_chemical_symbols())  # noqa: E731
    import heapq

    counts = dict(counts)

    def key(k: int) -> tuple:
        e = todo[k]
        return (copy_index(e.id), min(counts.get(x, 0) for x in elements(e)), k)

    heap = [key(k) for k in range(len(todo))]
    heapq.heapify(heap)
    out = []
    while heap:  # counts only grow, so a popped key that is still current is the minimum (lazy heap)
        item = heapq.heappop(heap)
        now = key(item[2])
        if now != item:
            heapq.heappush(heap, now)
            continue
        e = todo[item[2]]
        out.append(e)
        for x in elements(e):
            counts[x] = counts.get(x, 0) + 1
    return out


def select_part(entries: list, part: tuple[int, int] | None) -> list:
    """The planned entries of part (i, n): plan index k with k % n == i - 1 (all entries for None).
    By plan index, not by what is left to do, so that machines with different progress never overlap."""
    return list(entries) if part is None else [e for k, e in enumerate(entries) if k % part[1] == part[0] - 1]


def build(recipe_path, out, workers: int = 2, scheduler: str | None = None, progress: bool = True,
          retry_failed: bool = False, limit: int | None = None, plan_file=None,
          part: tuple[int, int] | None = None, skip_from=(), hours: float | None = None) -> dict:
    """Run (or resume) the build of ``recipe_path`` into the dataset folder ``out``.

    ``plan_file``: take the structures from ``uniham dataset plan -o`` output instead of planning here.
    ``part = (i, n)``: only the planned structures whose plan index k has k % n == i - 1, so that n
    machines building into n folders never compute the same structure (join with ``uniham dataset merge``).
    ``skip_from``: other dataset folders of the same recipe; what they hold (done or failed) is not redone.
    ``hours``: a wall-clock budget (e.g. a batch job's time limit minus a margin). Structures are handed out
    two per worker at a time; after the budget none is handed out, those handed out (at most two per worker)
    finish and are packed, and the summary's ``not_started`` counts what the next run will do. The first
    round is always handed out.
    """
    recipe = load_recipe(recipe_path)
    entries, skipped = load_plan(plan_file, recipe) if plan_file else plan(recipe)
    entries = select_part(entries, part)
    store = DatasetStore(out)
    store.create(recipe)
    recovered = store.recover()
    if recovered:
        log.warning("recovered after an interruption: %s", recovered)
    store.consolidate(force=True)  # pack what a previous run staged
    lost = store.forget_damaged()
    if lost:
        log.warning("%d structures of missing or damaged shards are redone", len(lost))
    stale = [sid for sid, rec in store.manifest["failures"].items() if INTERRUPTED.match(rec.get("reason", ""))]
    if stale:  # recorded by uniham <= 0.1.1 when a stopped build killed CP2K: not failures, redo them
        store.forget_failures(stale)
        log.warning("%d runs killed by an earlier stop were recorded as failures: they are redone", len(stale))
    done, failed = store.done_ids(), store.failed_ids()
    for other in skip_from:
        o = DatasetStore(other)
        if o.manifest["recipe_hash"] != recipe.hash:
            raise UnihamError(f"--skip-from {other}: built from another recipe")
        done |= set(o.manifest["structures"])
        failed |= set(o.manifest["failures"])
    if retry_failed:
        store.forget_failures(list(store.manifest["failures"]))
        failed = set()
    todo = [e for e in entries if e.id not in done and e.id not in failed]
    have: dict[str, int] = {}
    for rec in store.manifest["structures"].values():
        for x in set(rec.get("elements", ())):
            have[x] = have.get(x, 0) + 1
    todo = balanced_order(todo, have)
    if limit is not None:
        todo = todo[:limit]
    summary = {"planned": len(entries), "skipped_by_plan": len(skipped), "already_done": len(done & {e.id for e in entries}),
               "already_failed": len(failed), "submitted": len(todo), "done": 0, "failed": 0}
    if not todo:
        return summary
    dft = dict(recipe.dft)
    store_opts = DEFAULT_STORE | recipe.store
    tasks = ((f"dft-{e.id}", compute, (e.to_json(), dft, store_opts)) for e in todo)
    summary |= run_tasks(store, tasks, len(todo), workers=workers, scheduler=scheduler, hours=hours,
                         progress=progress, desc="DFT")
    return summary


def run_tasks(store: DatasetStore, tasks, n_tasks: int, workers: int = 2, scheduler: str | None = None,
              hours: float | None = None, progress: bool = True, desc: str = "DFT") -> dict:
    """Run ``tasks`` (an iterable of (key, function, args); each function returns a result dict for
    :meth:`DatasetStore.stage` and never raises) on Dask and stage every result as it completes.

    A ``LocalCluster`` of ``workers`` single-threaded processes, or the running ``scheduler``. Two tasks per
    worker thread are in flight; after ``hours`` none is handed out (those in flight finish). SIGINT/SIGTERM
    kill the CP2K runs in flight, pack what finished and re-raise :class:`KeyboardInterrupt`. Returns counts:
    started, done, failed, interrupted, not_started, wall_h, per_hour."""
    from tqdm import tqdm

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t_start = time.time()
    with _dask_client(workers, scheduler) as client:
        feed = _TaskFeed(client, tasks, workers if not scheduler else None, hours)
        bar = tqdm(total=n_tasks, desc=f"{desc} ({workers if not scheduler else 'remote'} workers)",
                   unit="structure", disable=not progress, smoothing=0.05)
        with _sigterm_as_interrupt() as main_thread:
            try:
                _stage_as_completed(store, feed, bar)
            except KeyboardInterrupt:
                if main_thread:  # a second SIGTERM must not cut the clean-up short
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                killed = _stop_workers_cp2k(client)
                store.consolidate(force=True)
                log.warning("stopped: %d structures done this run and packed, %d CP2K runs in flight killed "
                            "(the next run redoes them)", feed.summary["done"] + feed.summary["failed"], killed)
                raise
            finally:
                bar.close()
    summary = feed.summary
    summary["not_started"] = n_tasks - summary["started"]
    # throughput of this run, packing included: what `--hours` budgets on this machine or cluster
    summary["wall_h"] = round((time.time() - t_start) / 3600, 4)
    summary["per_hour"] = round((summary["done"] + summary["failed"]) / max(summary["wall_h"], 1e-9), 1)
    if summary["not_started"]:
        log.warning("time budget of %g h reached: %d structures not started (the next run does them)",
                    hours, summary["not_started"])
    return summary


def _stage_as_completed(store: DatasetStore, feed: _TaskFeed, bar) -> None:
    """Stage each result as its task completes (and pack the store when it is due), keeping the feed full."""
    run_token = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"  # which invocation computed a structure
    summary = feed.summary
    feed.refill(first=True)
    for fut in feed.queue:
        res = fut.result()
        if res.get("interrupted"):
            summary["interrupted"] = summary.get("interrupted", 0) + 1
        else:
            res["record"] |= {"run": run_token, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
            store.stage(res)
            summary["done" if res["ok"] else "failed"] += 1
            bar.set_postfix(done=summary["done"], failed=summary["failed"])
            store.consolidate()
        bar.update(1)
        feed.refill()
    store.consolidate(force=True)


class _TaskFeed:
    """Hands tasks to Dask two per worker thread at a time, and none after the time budget (``hours``).

    ``workers`` is the local cluster's size, or None on a remote scheduler (whose workers may come and go:
    the window follows ``client.nthreads()``). ``summary`` counts started/done/failed/interrupted."""

    def __init__(self, client, tasks, workers: int | None, hours: float | None):
        from dask.distributed import as_completed

        self.client, self.workers, self.pending = client, workers, iter(tasks)
        self.t_end = time.time() + 3600 * hours if hours is not None else None
        self.queue = as_completed(loop=client.loop)
        self.summary = {"started": 0, "done": 0, "failed": 0}

    def window(self) -> int:
        threads = self.workers if self.workers is not None else sum(self.client.nthreads().values())
        return 2 * max(1, threads)

    def refill(self, first: bool = False) -> None:
        """Submit tasks until the window is full (after the time budget only when ``first``)."""
        while self.queue.count() < self.window():
            if not first and self.t_end is not None and time.time() > self.t_end:
                return
            task = next(self.pending, None)
            if task is None:
                return
            key, fn, args = task
            self.queue.add(self.client.submit(fn, *args, key=key, pure=False))
            self.summary["started"] += 1


@contextlib.contextmanager
def _dask_client(workers: int, scheduler: str | None):
    """A client of the running ``scheduler``, or of a quiet LocalCluster of ``workers`` single-threaded
    processes that is shut down on exit."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    _set_dask_log_level(logging.ERROR)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           memory_limit=0, silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        _quiet_local_workers(client)
        client.close()
        cluster.close()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (scancel, a batch time limit, ``kill``) raises KeyboardInterrupt like ^C, in the main thread
    (yields whether it is that thread); the previous handler comes back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield True
    finally:
        signal.signal(signal.SIGTERM, old)


def _set_dask_log_level(level: int) -> None:
    """Dask's loggers in this process (the build's, or a local worker's through ``client.run``) log ``level`` and up."""
    for name in ("distributed", "distributed.scheduler", "distributed.worker", "distributed.nanny",
                 "distributed.core", "distributed.comm"):
        logging.getLogger(name).setLevel(level)


def _quiet_local_workers(client) -> None:
    """Before a LocalCluster closes, its workers' last heartbeat can race the scheduler's exit and log a
    harmless "Failed to communicate with scheduler" error with a CommClosedError traceback (seen once in a
    1.35 h build of data/db1). The results are already packed by then, so the workers are silenced."""
    try:
        client.run(_set_dask_log_level, logging.CRITICAL)
    except Exception:  # noqa: BLE001 - a worker already gone has nothing left to log
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_workers_cp2k(client) -> int:
    """Kill the CP2K runs in flight on every worker (without it they would outlive a stopped build, as
    orphans of the closed workers); returns how many were killed."""
    from uniham.dft.cp2k_engine import stop_running

    try:
        return sum(client.run(stop_running).values())
    except Exception as exc:  # noqa: BLE001 - stopping anyway: say what could not be done
        log.warning("could not stop the workers' CP2K runs: %s", exc)
        return 0


def subset_ids(records: dict[str, dict], n: int | None = None, seed: int = 0,
               elements: set[str] | None = None) -> list[str]:
    """A deterministic subset of a store's structures (``records``: the manifest's "structures").

    With ``elements``, only structures made of those elements alone; with ``n``, the first ``n`` of them in
    the order of sha256("subset:seed:id"), so that a bigger ``n`` (same seed) takes a superset. Sorted ids.
    (Not the hash of :func:`split_ids`, or a subset would be all training structures.)"""
    ids = [sid for sid, r in records.items() if elements is None or set(r["elements"]) <= elements]
    ids.sort(key=lambda sid: hashlib.sha256(f"subset:{seed}:{sid}".encode()).hexdigest())
    if n is not None:
        ids = ids[:n]
    return sorted(ids)


SPLIT_BY = {"structure": None, "prototype": "label", "composition": "formula"}


def split_group(key: str, record: dict | None, by: str) -> str:
    """The group a structure is split with: its own id (``by="structure"``), its prototype label or its
    formula (from the store's manifest record; a structure without a record is its own group)."""
    if by not in SPLIT_BY:
        raise UnihamError(f"split by {by!r}: expected one of {', '.join(SPLIT_BY)}")
    field = SPLIT_BY[by]
    return key if field is None or not record else str(record.get(field, key))


def split_ids(ids: list[str], fractions=(0.8, 0.1, 0.1), seed: int = 0, groups: dict[str, str] | None = None,
              holdout: set[str] | None = None) -> dict[str, list[str]]:
    """Deterministic train/validation/test split by structure.

    ``groups`` maps id -> group (prototype, composition): whole groups go to one split, so a split by
    prototype tests out-of-distribution generalization. ``holdout`` groups go entirely to test.
    The assignment depends only on the ids (hash with ``seed``), not on their order or count.
    """
    keyed = {}
    for sid in ids:
        g = groups.get(sid, sid) if groups else sid
        keyed.setdefault(g, []).append(sid)
    missing = sorted(set(holdout or ()) - set(keyed))
    if missing:
        raise UnihamError(f"held-out groups {missing[:5]} match no structure (a prototype label or formula "
                          "as `uniham dataset info` prints it, with the matching split_by / --by)")
    out = {"train": [], "validation": [], "test": []}
    edges = np.cumsum(fractions) / np.sum(fractions)
    for g, members in keyed.items():
        if holdout and g in holdout:
            out["test"] += members
            continue
        u = int(hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()[:12], 16) / 16 ** 12
        name = ("train", "validation", "test")[int(np.searchsorted(edges, u, side="right"))]
        out[name] += members
    return {k: sorted(v) for k, v in out.items()}

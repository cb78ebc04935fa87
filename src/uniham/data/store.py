"""The dataset store: compressed HDF5 shards + a JSON manifest, written so that nothing is ever lost.

Layout of a dataset folder::

    manifest.json          recipe, shards (sha256, bytes, count), one record per structure, failures
    manifest.prev.json     the manifest before its last write (``dataset repair`` restores a damaged one from it)
    recipe.toml            the recipe it was built from
    shards/shard-00000.h5  one group per structure (:mod:`uniham.data.encoding`), <= ~16 MB each
    staging/<id>.h5        finished structures not yet packed into a shard
    staging/<id>.fail.json failures not yet recorded in the manifest

Every file appears by an atomic rename of a fully written, fsynced temporary file. A structure is done
as soon as its staging file exists; packing writes a new shard, then the manifest, then deletes the
staged files. A kill at any moment leaves either an orphan shard (not in the manifest: deleted on
recovery, its structures are still staged) or staged files already in the manifest (deleted on
recovery). Nothing finished is lost or redone, and no shard is ever half-written. Each structure's group in
a shard also carries its manifest record, so a shard the manifest does not list can be adopted again.

One structure is one HDF5 group named by its id; its layout and H's encoding are documented in
:mod:`uniham.data.encoding`. S is not stored: it is recomputed from the CP2K basis definition
by PySCF integrals (:func:`uniham.dft.cp2k_basis.overlap_blocks`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from uniham.data.encoding import H_STEP_EV, by_distance, choose_step, read_group, write_group
from uniham.errors import UnihamError

SHARD_TARGET_BYTES = 16 * 2 ** 20
PREV_MANIFEST = "manifest.prev.json"  # the manifest before the last write (not tracked by git)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2 ** 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DatasetStore:
    """A dataset folder (see module docstring)."""

    def __init__(self, root) -> None:
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.staging = self.root / "staging"
        self.manifest_path = self.root / "manifest.json"
        self._manifest: dict | None = None

    # ------------------------------------------------------------------ manifest
    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            if not self.manifest_path.exists():
                raise UnihamError(f"{self.root}: not a uniham dataset (no manifest.json)")
            try:
                self._manifest = json.loads(self.manifest_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise UnihamError(f"{self.manifest_path}: corrupt manifest ({exc}); `uniham dataset repair "
                                  f"{self.root}` restores it from {PREV_MANIFEST}") from None
            m = self._manifest
            shape = isinstance(m, dict) and all(isinstance(m.get(k), dict) for k in ("shards", "structures", "failures"))
            if not shape:
                self._manifest = None
                raise UnihamError(f"{self.manifest_path}: not a uniham dataset manifest (no shards, structures and "
                                  f"failures tables); `uniham dataset repair {self.root}` restores it from "
                                  f"{PREV_MANIFEST}")
        return self._manifest

    def _save_manifest(self) -> None:
        """Write the manifest atomically; the one it replaces is kept as ``manifest.prev.json`` (what
        :meth:`repair` restores a damaged manifest from)."""
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if self.manifest_path.exists():
            atomic_write_bytes(self.root / PREV_MANIFEST, self.manifest_path.read_bytes())
        atomic_write_bytes(self.manifest_path, json.dumps(self.manifest, indent=1).encode())

    def create(self, recipe) -> None:
        """Create the folder for ``recipe`` or check that an existing one was built from the same recipe.

        A folder whose recipe differs only in [store] (or was hashed by uniham <= 0.1.1, whose hash covered
        the whole text) takes the new recipe: its structures and DFT are the same, new structures are stored
        by the new [store] rule, and every record keeps its own (``cutoff_A``, ``range_eps``)."""
        if self.manifest_path.exists():
            if self.manifest.get("derived"):
                raise UnihamError(f"{self.root} holds {self.manifest['derived']['kind']} derived from "
                                  f"{self.manifest['derived']['source']}, not a recipe's DFT: not a build target")
            if self.manifest["recipe_hash"] != recipe.hash or self._stored_recipe().get("store", {}) != recipe.store:
                self._adopt(recipe)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.shards.mkdir(exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        atomic_write_bytes(self.root / "recipe.toml", recipe.text.encode())
        self._manifest = {"format": "uniham-dataset-1", "recipe": recipe.name, "recipe_hash": recipe.hash,
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "shards": {}, "structures": {},
                          "failures": {}}
        self._save_manifest()

    def create_derived(self, source: DatasetStore, derived: dict) -> None:
        """Create a folder of per-structure data derived from the structures of ``source`` (same recipe,
        same ids), e.g. the zeroth-step residual of :mod:`uniham.data.zeroth_step`; ``derived`` (kind,
        parameters) is kept in the manifest and must match on every later run."""
        derived = {"source": os.path.relpath(source.root.resolve(), self.root.resolve()),  # found from either side
                   "source_recipe_hash": source.manifest["recipe_hash"]} | derived
        if self.manifest_path.exists():
            old = self.manifest.get("derived")
            same = old and all(old.get(k) == v for k, v in derived.items() if k != "source")
            if not same:
                raise UnihamError(f"{self.root} was made by other settings ({old or 'a recipe build'}); "
                                  "use a new --out folder")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.shards.mkdir(exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        atomic_write_bytes(self.root / "recipe.toml", (source.root / "recipe.toml").read_bytes())
        self._manifest = {"format": "uniham-dataset-1", "recipe": source.manifest["recipe"],
                          "recipe_hash": source.manifest["recipe_hash"], "derived": derived,
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "shards": {}, "structures": {},
                          "failures": {}}
        self._save_manifest()

    # ------------------------------------------------------------------ recovery and status
    def _stored_recipe(self) -> dict:
        import tomllib

        try:
            return tomllib.loads((self.root / "recipe.toml").read_text())
        except (FileNotFoundError, tomllib.TOMLDecodeError):
            return {}

    def _adopt(self, recipe) -> None:
        from uniham.data.recipe import identity_hash

        old_text = (self.root / "recipe.toml").read_text() if (self.root / "recipe.toml").exists() else ""
        old = self._stored_recipe()
        if not old_text or identity_hash(old) != recipe.hash:
            raise UnihamError(f"{self.root} was built from another recipe (hash {self.manifest['recipe_hash']} "
                              f"!= {recipe.hash}); use a new --out folder")
        self.manifest.setdefault("recipe_history", []).append(
            {"recipe_hash": self.manifest["recipe_hash"], "until": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "store": old.get("store", {})})
        self.manifest["recipe_hash"] = recipe.hash
        atomic_write_bytes(self.root / "recipe.toml", recipe.text.encode())
        self._save_manifest()

    def recover(self) -> dict:
        """Make the folder consistent after a kill: drop temporaries, orphan shards and packed staging files."""
        self.shards.mkdir(exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        removed = Counter()
        for tmp in [*self.root.glob("*.tmp"), *self.shards.glob("*.tmp"), *self.staging.glob("*.tmp")]:
            tmp.unlink()
            removed["temporary"] += 1
        for shard in self.shards.glob("shard-*.h5"):
            if shard.name not in self.manifest["shards"]:
                shard.unlink()
                removed["orphan shard"] += 1
        for f in self.staging.iterdir():
            sid = f.name.split(".")[0]
            if sid in self.manifest["structures"] or sid in self.manifest["failures"]:
                f.unlink()
                removed["already packed"] += 1
        return dict(removed)

    def staged(self) -> tuple[set[str], set[str]]:
        ok = {f.name[:-3] for f in self.staging.glob("*.h5")}
        failed = {f.name[:-10] for f in self.staging.glob("*.fail.json")}
        return ok, failed

    def done_ids(self) -> set[str]:
        return set(self.manifest["structures"]) | self.staged()[0]

    def failed_ids(self) -> set[str]:
        return set(self.manifest["failures"]) | self.staged()[1]

    # ------------------------------------------------------------------ writing
    def stage(self, result: dict) -> None:
        """Persist one finished structure (or failure) atomically."""
        import h5py

        sid = result["id"]
        if not result["ok"]:
            atomic_write_bytes(self.staging / f"{sid}.fail.json", json.dumps(result["record"]).encode())
            return
        tmp = self.staging / f"{sid}.h5.tmp"
        with h5py.File(tmp, "w") as h5:
            write_group(h5, sid, result["data"])
            h5.attrs["record"] = json.dumps(result["record"])
        _fsync_file(tmp)
        os.replace(tmp, self.staging / f"{sid}.h5")

    def consolidate(self, force: bool = False, target_bytes: int = SHARD_TARGET_BYTES) -> int:
        """Pack staged structures into new shards (once they fill one, or always with ``force``)."""
        import h5py

        ok_files = sorted(self.staging.glob("*.h5"))
        fail_files = sorted(self.staging.glob("*.fail.json"))
        total = sum(f.stat().st_size for f in ok_files)
        if not force and total < target_bytes:
            return 0
        packed = 0
        while ok_files:
            batch, size = [], 0
            while ok_files and (size < target_bytes or not batch):
                f = ok_files.pop(0)
                batch.append(f)
                size += f.stat().st_size
            name = f"shard-{len(self.manifest['shards']):05d}.h5"
            while (self.shards / name).exists():  # an orphan not yet recovered: never overwrite
                name = name.replace(".h5", "b.h5")
            tmp = self.shards / (name + ".tmp")
            records = {}
            with h5py.File(tmp, "w") as out:
                for f in batch:
                    with h5py.File(f, "r") as src:
                        sid = f.name[:-3]
                        src.copy(src[sid], out, name=sid)
                        out[sid].attrs["record"] = src.attrs["record"]  # so that `dataset repair` can re-adopt it
                        records[sid] = json.loads(src.attrs["record"]) | {"shard": name}
            _fsync_file(tmp)
            os.replace(tmp, self.shards / name)
            self._register_shard(name, len(batch))
            self.manifest["structures"].update(records)
            self._save_manifest()
            for f in batch:
                f.unlink()
            packed += len(batch)
        if fail_files:
            for f in fail_files:
                rec = json.loads(f.read_text())
                self.manifest["failures"][f.name[:-10]] = rec
            self._save_manifest()
            for f in fail_files:
                f.unlink()
        return packed

    def forget_damaged(self) -> list[str]:
        """Drop the structures of shards that are missing or fail their checksum from the manifest (kept under
        "lost" with the reason), so that the next build redoes exactly them; a damaged file is renamed to
        ``NAME.damaged`` (kept for inspection, never read). Returns the dropped ids."""
        bad = self.verify()
        if not bad:
            return []
        lost = self.manifest.setdefault("lost", {})
        when = time.strftime("%Y-%m-%dT%H:%M:%S")
        dropped = []
        for name in bad:
            f = self.shards / name
            why = "missing" if not f.exists() else "checksum mismatch"
            if f.exists():
                os.replace(f, f.with_name(name + ".damaged"))
            for sid in [s for s, r in self.manifest["structures"].items() if r["shard"] == name]:
                lost[sid] = {"shard": name, "reason": why, "when": when}
                del self.manifest["structures"][sid]
                dropped.append(sid)
            del self.manifest["shards"][name]
        self._save_manifest()
        return dropped

    def repair(self) -> dict:
        """Bring a damaged folder back to a verified state, losing nothing that can be kept: a corrupt manifest
        is restored from ``manifest.prev.json``; shards the manifest does not list whose structures carry
        their records (shards packed since 2026-12-07) are adopted; shards that are missing or fail their
        checksum are forgotten (:meth:`forget_damaged`), so that the next build (or zeroth pass) redoes
        exactly their structures. Returns what was done."""
        import h5py

        done: dict = {"manifest": "intact", "adopted_shards": [], "adopted_structures": 0}
        try:
            self.manifest
        except UnihamError:
            prev = self.root / PREV_MANIFEST
            try:
                self._manifest = json.loads(prev.read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                raise UnihamError(f"{self.manifest_path} is corrupt and there is no readable {PREV_MANIFEST} to "
                                  "restore it from (a tracked store: `git checkout` it)") from None
            done["manifest"] = f"restored from {PREV_MANIFEST}"
        listed = set(self.manifest["shards"])
        for shard in sorted(self.shards.glob("shard-*.h5")):
            if shard.name in listed:
                continue
            try:
                with h5py.File(shard, "r") as h5:
                    recs = {sid: json.loads(h5[sid].attrs["record"]) | {"shard": shard.name} for sid in h5}
            except (OSError, KeyError, json.JSONDecodeError):
                continue  # unreadable or without records: left for recover() to remove, its structures redone
            if recs and not set(recs) & set(self.manifest["structures"]):
                self._register_shard(shard.name, len(recs))
                self.manifest["structures"].update(recs)
                for sid in recs:
                    self.manifest["failures"].pop(sid, None)
                    self.manifest.get("lost", {}).pop(sid, None)
                done["adopted_shards"].append(shard.name)
                done["adopted_structures"] += len(recs)
        self._save_manifest()
        done["redo"] = self.forget_damaged()
        done["verified"] = not self.verify()
        return done

    def forget_failures(self, ids) -> int:
        """Drop recorded failures so that the next build runs those structures again."""
        gone = [sid for sid in ids if self.manifest["failures"].pop(sid, None) is not None]
        if gone:
            self._save_manifest()
        return len(gone)

    def remove(self, ids, reason: str, redo: bool = True) -> int:
        """Drop finished structures (e.g. computed with a since-fixed bug) so that the next build redoes
        them; their ids and ``reason`` are kept under the manifest's "removed". ``redo=False``: they are
        recorded as failures with ``reason`` instead, which the next build does not retry. Each touched shard is
        rewritten without them under a new name, then the manifest is saved, then the old file deleted:
        a kill at any point leaves a consistent folder (orphans are cleaned by the next build)."""
        import h5py

        ids = set(ids) & set(self.manifest["structures"])
        by_shard: dict[str, list[str]] = {}
        for sid in ids:
            by_shard.setdefault(self.manifest["structures"][sid]["shard"], []).append(sid)
        for shard, gone in sorted(by_shard.items()):
            keep = [sid for sid, rec in self.manifest["structures"].items() if rec["shard"] == shard and sid not in gone]
            new = None
            if keep:
                new = self._successor(shard, "r")
                tmp = self.shards / (new + ".tmp")
                with h5py.File(self.shards / shard, "r") as src, h5py.File(tmp, "w") as out:
                    for sid in keep:
                        src.copy(src[sid], out, name=sid)
                _fsync_file(tmp)
                os.replace(tmp, self.shards / new)
                self._register_shard(new, len(keep))
                for sid in keep:
                    self.manifest["structures"][sid]["shard"] = new
            removed = self.manifest.setdefault("removed", {})
            for sid in gone:
                rec = self.manifest["structures"].pop(sid)
                if redo:
                    removed[sid] = {"reason": reason, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "record": rec}
                else:
                    self.manifest["failures"][sid] = {k: v for k, v in rec.items() if k != "shard"} | {"reason": reason}
            del self.manifest["shards"][shard]
            self._save_manifest()
            (self.shards / shard).unlink(missing_ok=True)
        return len(ids)

    def _successor(self, shard: str, suffix: str) -> str:
        """A new name for a rewritten ``shard`` (``suffix`` appended until no file has it)."""
        new = shard.replace(".h5", f"{suffix}.h5")
        while (self.shards / new).exists():
            new = new.replace(".h5", f"{suffix}.h5")
        return new

    def _register_shard(self, name: str, n_structures: int) -> None:
        f = self.shards / name
        self.manifest["shards"][name] = {"sha256": sha256(f), "bytes": f.stat().st_size, "n_structures": n_structures}

    def shard_steps(self) -> dict[str, set]:
        """{shard: the set of H encodings in it}: a step in eV per zigzag group, "float32" for uniham <= 0.1.1."""
        import h5py

        out = {}
        for name in self.manifest["shards"]:
            with h5py.File(self.shards / name, "r") as h5:
                out[name] = {float(h5[g].attrs["H_step_eV"]) if "Hq" in h5[g] else "float32" for g in h5}
        return out

    def repack(self, shards=None, step: float | None = None, band_tol: float | None = None,
               progress: bool = False) -> dict:
        """Rewrite shards in the current encoding (zigzag fixed point, blocks by distance).

        ``shards``: names; default every shard holding uniham <= 0.1.1 groups (float32), or with ``step``
        every shard with a structure at another step. ``step`` (eV): None keeps each structure's own
        (zigzag groups are copied bit for bit; the float32 groups go onto the 1e-5 eV grid through zero:
        HDF5's scale-offset grid starts at each chunk's minimum, so their values move by <= 5e-6 eV); a
        coarser step re-rounds H (<= step / 2 per element, recorded as ``H_step_eV`` in the manifest).
        With ``band_tol`` (meV) and ``step``, each structure takes the coarsest step from ``step`` down
        (:func:`choose_step`) whose rounding keeps its bands within ``band_tol`` of the stored H (S from the
        basis integrals), recorded as ``H_rounding_band_error_meV``.
        Every value read back is checked against these bounds before the shard replaces the old one. Each shard is written under a new name, then the manifest is saved, then the old file
        deleted, as :meth:`remove` does: a kill leaves a consistent folder. Returns counts and bytes."""
        import h5py
        from tqdm import tqdm

        if step is not None and not 0 < step <= 1e-3:
            raise UnihamError(f"--h-step {step}: expected 0 < step <= 1e-3 eV")
        if band_tol is not None and (step is None or not band_tol > 0):
            raise UnihamError("--band-tol needs --h-step and a positive tolerance (meV)")
        if shards is None:
            steps = self.shard_steps()
            shards = [n for n, st in steps.items() if ("float32" in st if step is None else st != {step})]
        unknown = [n for n in shards if n not in self.manifest["shards"]]
        if unknown:
            raise UnihamError(f"{self.root}: no shards {unknown} (see manifest.json)")
        counts = Counter(shards=0, structures=0, bytes_before=0, bytes_after=0)
        for shard in tqdm(sorted(shards), desc="repack", unit="shard", disable=not progress):
            new = self._successor(shard, "p")
            tmp = self.shards / (new + ".tmp")
            sids, new_steps, band_err = [], {}, {}
            with h5py.File(self.shards / shard, "r") as src, h5py.File(tmp, "w") as out:
                for sid in src:
                    g = src[sid]
                    d = read_group(g)
                    own = float(g.attrs["H_step_eV"]) if "Hq" in g else H_STEP_EV
                    new_step = own if step is None else step
                    if new_step < own * (1 - 1e-9):
                        raise UnihamError(f"{sid}: stored to {own} eV, cannot be repacked finer ({new_step} eV)")
                    ref = by_distance(d)
                    if band_tol is not None and step is not None:
                        new_step, band_err[sid] = choose_step(self.hamiltonian(d, sid), ref["keys"], ref["H"], step,
                                                              band_tol, own, on_grid=True)
                    write_group(out, sid, ref, new_step)
                    back = read_group(out[sid])
                    err = np.abs(back["H"] - np.asarray(ref["H"], np.float64))
                    # zigzag at its own step: bit for bit; else within half the new step (+ float32 rounding)
                    ok = (np.array_equal(back["H"], ref["H"]) if "Hq" in g and new_step == own else
                          bool(np.all(err <= 0.5 * new_step * (1 + 1e-9) + 1.2e-7 * np.abs(ref["H"]))))
                    if not ok or not np.array_equal(back["keys"], ref["keys"]):
                        raise UnihamError(f"{sid}: repacked H differs from the stored one by {err.max():.2e} eV")
                    sids.append(sid)
                    new_steps[sid] = new_step
            _fsync_file(tmp)
            os.replace(tmp, self.shards / new)
            counts["bytes_before"] += self.manifest["shards"][shard]["bytes"]
            self._register_shard(new, len(sids))
            counts["bytes_after"] += self.manifest["shards"][new]["bytes"]
            when = time.strftime("%Y-%m-%dT%H:%M:%S")
            for sid in sids:
                rec = self.manifest["structures"][sid]
                old_step = rec.get("H_step_eV", H_STEP_EV)
                rec["shard"] = new
                rec["H_step_eV"] = new_steps[sid]
                if sid in band_err:
                    rec["H_rounding_band_error_meV"] = round(band_err[sid], 4)
                rec.setdefault("repacked", []).append({"when": when, "from": shard, "from_step_eV": old_step})
            del self.manifest["shards"][shard]
            self._save_manifest()
            (self.shards / shard).unlink(missing_ok=True)
            counts["shards"] += 1
            counts["structures"] += len(sids)
            for v in new_steps.values():
                counts[f"at {v:g} eV"] += 1
        return dict(counts)

    def merge(self, other: DatasetStore, ids=None) -> dict:
        """Take every finished structure and failure of ``other`` (same recipe) that this folder lacks.

        Used to join folders that several machines built with ``--part I/N``; with ``ids``, only those
        structures are taken (no failures): a subset for a quick experiment or a machine with little room. Each structure is staged
        atomically with its record (plus ``merged_from``), then packed into new shards, so a kill leaves a
        consistent folder and a second merge takes only what is still missing. A structure that failed
        here but finished there replaces the failure. This folder is created from ``other``'s recipe if
        it does not exist. Returns counts: structures, failures, already_here."""
        import h5py

        if not other.manifest_path.exists():
            raise UnihamError(f"{other.root}: not a uniham dataset (no manifest.json)")
        if not self.manifest_path.exists():
            from uniham.data.recipe import load_recipe

            self.create(load_recipe(other.root / "recipe.toml"))
        if other.manifest["recipe_hash"] != self.manifest["recipe_hash"]:
            raise UnihamError(f"{other.root} was built from another recipe (hash {other.manifest['recipe_hash']} "
                              f"!= {self.manifest['recipe_hash']}): cannot merge")
        if ids is None and any(other.staged()):  # (a subset takes packed structures only)
            raise UnihamError(f"{other.root} has unpacked structures: pack them first with "
                              f"`uniham dataset build RECIPE --out {other.root} --limit 0`")
        bad = other.verify()
        if bad:
            raise UnihamError(f"{other.root}: shard checksums do not match ({', '.join(bad)}): not merged")
        self.recover()
        done, failed = self.done_ids(), self.failed_ids()
        counts = Counter(structures=0, failures=0, already_here=0)
        by_shard: dict[str, list[str]] = {}
        wanted = None if ids is None else set(ids)
        missing = sorted(wanted - set(other.manifest["structures"])) if wanted is not None else []
        if missing:
            raise UnihamError(f"{other.root}: no structures {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        for sid, rec in other.manifest["structures"].items():
            if wanted is not None and sid not in wanted:
                continue
            if sid in done:
                counts["already_here"] += 1
            else:
                by_shard.setdefault(rec["shard"], []).append(sid)
        taken_over = [sid for ids in by_shard.values() for sid in ids if sid in self.manifest["failures"]]
        self.forget_failures(taken_over)  # first: a kill before the staging just means merge again
        for ids in by_shard.values():
            for sid in ids:
                (self.staging / f"{sid}.fail.json").unlink(missing_ok=True)
        for shard, sids in sorted(by_shard.items()):
            with h5py.File(other.shards / shard, "r") as src:
                for sid in sids:
                    rec = {k: v for k, v in other.manifest["structures"][sid].items() if k != "shard"}
                    rec["merged_from"] = f"{other.root.name}/{shard}"
                    tmp = self.staging / f"{sid}.h5.tmp"
                    with h5py.File(tmp, "w") as out:
                        src.copy(src[sid], out, name=sid)
                        out.attrs["record"] = json.dumps(rec)
                    _fsync_file(tmp)
                    os.replace(tmp, self.staging / f"{sid}.h5")
                    counts["structures"] += 1
        for sid, rec in other.manifest["failures"].items():
            if wanted is not None or sid in done or sid in failed or sid in other.manifest["structures"]:
                continue
            atomic_write_bytes(self.staging / f"{sid}.fail.json", json.dumps(rec | {"merged_from": other.root.name}).encode())
            counts["failures"] += 1
        self.consolidate(force=True)
        return dict(counts)

    # ------------------------------------------------------------------ reading
    def ids(self) -> list[str]:
        return sorted(self.manifest["structures"])

    def load_raw(self, sid: str) -> dict:
        import h5py

        rec = self.manifest["structures"].get(sid)
        if rec is None:
            staged = self.staging / f"{sid}.h5"
            if staged.exists():
                with h5py.File(staged, "r") as h5:
                    return read_group(h5[sid])
            raise UnihamError(f"{self.root}: no structure {sid!r} (see `uniham dataset info`)")
        shard = self.shards / rec["shard"]
        if not shard.exists():
            raise UnihamError(f"{self.root}: shard {rec['shard']} of {sid} is missing (`uniham dataset info --verify`)")
        try:
            with h5py.File(shard, "r") as h5:
                return read_group(h5[sid])
        except (OSError, KeyError, ValueError) as exc:  # a damaged shard: HDF5 filter or structure errors
            raise UnihamError(f"{self.root}: shard {rec['shard']} is damaged, cannot read {sid} "
                              f"({str(exc).splitlines()[0][:120]}); `uniham dataset info --verify`") from None

    def load(self, sid: str, with_overlap: bool = True):
        """The structure as a :class:`uniham.hamiltonian.Hamiltonian` (both halves; S from PySCF integrals)."""
        return self.hamiltonian(self.load_raw(sid), sid, with_overlap)

    def hamiltonian(self, d: dict, sid: str, with_overlap: bool = True):
        """The :class:`uniham.hamiltonian.Hamiltonian` of a group read by :func:`read_group` (see :meth:`load`)."""
        from ase import Atoms

        from uniham.dft.cp2k_basis import load_basis, overlap_over_range
        from uniham.hamiltonian import Hamiltonian

        atoms = Atoms(d["symbols"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])
        bases = {x: load_basis(x, d["basis"]) for x in dict.fromkeys(d["symbols"])}
        dims = [bases[x].orbital_basis().dim for x in d["symbols"]]
        H, start = {}, 0
        for k in map(tuple, d["keys"].tolist()):
            n = dims[k[3]] * dims[k[4]]
            H[k] = d["H"][start:start + n].reshape(dims[k[3]], dims[k[4]]).astype(np.float64)
            start += n
        for k, b in list(H.items()):
            H.setdefault((-k[0], -k[1], -k[2], k[4], k[3]), b.T)
        # S over its own range, which may reach beyond the stored H blocks
        S = overlap_over_range(atoms, bases, also=H) if with_overlap else {k: np.zeros_like(b) for k, b in H.items()}
        basis = {x: b.orbital_basis() for x, b in bases.items()}
        ham = Hamiltonian(atoms, basis, H, S, d["fermi_eV"], d["n_electrons"], False)
        ham.provenance = {"dataset": str(self.root), "id": sid} | self.manifest["structures"].get(sid, {})
        return ham

    def info(self) -> dict:
        recs = self.manifest["structures"]
        per_el, per_src, per_range, per_proto, per_step = Counter(), Counter(), Counter(), Counter(), Counter()
        for r in recs.values():
            for x in set(r["elements"]):
                per_el[x] += 1
            per_src[r["source"]] += 1
            if r["source"] == "prototypes":  # the groups of `dataset split --by prototype` / [data] holdout
                per_proto[r["label"]] += 1
            eps = r.get("range_eps")
            per_range[f"{r.get('cutoff_A')} A" + (f" + pair range at {eps:g}" if eps else "")] += 1
            per_step[f"{r.get('H_step_eV', H_STEP_EV):g}"] += 1  # (records before uniham 0.1.3: 1e-5 eV)
        ok_staged, fail_staged = self.staged()
        return {"path": str(self.root), "recipe": self.manifest["recipe"], "recipe_hash": self.manifest["recipe_hash"],
                "n_structures": len(recs), "n_staged": len(ok_staged),
                "n_failed": len(self.manifest["failures"]) + len(fail_staged),
                "elements": dict(sorted(per_el.items())), "n_elements": len(per_el), "sources": dict(per_src),
                "prototypes": dict(sorted(per_proto.items())),
                "stored_range": dict(per_range), "H_step_eV": dict(sorted(per_step.items())), "n_shards": len(self.manifest["shards"]),
                "bytes": sum(s["bytes"] for s in self.manifest["shards"].values()),
                "bytes_per_structure": (sum(s["bytes"] for s in self.manifest["shards"].values()) / max(1, len(recs))),
                "failure_reasons": dict(Counter(r["reason"][:80] for r in self.manifest["failures"].values())),
                "dft_wall_s_total": round(sum(r.get("wall_s", 0.0) for r in recs.values()), 1),
                "dft_wall_s_median": round(float(np.median([r.get("wall_s", 0.0) for r in recs.values()])), 1)
                if recs else 0.0}

    def verify(self) -> list[str]:
        """Checksums of all shards against the manifest; returns the names that do not match."""
        return [n for n, s in self.manifest["shards"].items()
                if not (self.shards / n).exists() or sha256(self.shards / n) != s["sha256"]]


def wrong_image_ids(store: DatasetStore) -> list[str]:
    """Structures whose CP2K image labels were stored wrongly before the fix in
    :func:`uniham.dft.cp2k_engine.cp2k_wrap_shift` (uniham 0.1.0): atoms that CP2K wraps by different
    lattice vectors, or any atom on a half-integer scaled coordinate (where the rounding is ambiguous)."""
    import h5py
    from ase import Atoms

    from uniham.dft.cp2k_engine import cp2k_wrap_shift

    out = []
    for sid, rec in store.manifest["structures"].items():
        if rec.get("image_convention") == "uniham":
            continue
        with h5py.File(store.shards / rec["shard"], "r") as f:
            g = f[sid]
            sym = g.attrs["symbols"]
            sym = json.loads(sym) if isinstance(sym, str) else list(sym)
            a = Atoms(sym, positions=g.attrs["positions"], cell=g.attrs["cell"], pbc=True)
        sc = a.cell.scaled_positions(a.positions)
        shift = cp2k_wrap_shift(a)
        if (shift != shift[0]).any() or (np.abs(sc - np.floor(sc) - 0.5) < 1e-6).any():
            out.append(sid)
    return out

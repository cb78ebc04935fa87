"""``uniham dataset ...``: plan, build, merge, subset, inspect, export and split DFT databases."""
from __future__ import annotations

import json
import os
from pathlib import Path

from uniham.cli._common import bounded
from uniham.errors import UnihamError


def cmd_dataset_plan(args) -> None:
    from uniham.data.recipe import load_recipe, plan, plan_json, plan_summary

    recipe = load_recipe(args.recipe)
    entries, skipped = plan(recipe)
    summ = plan_summary(entries, skipped)
    if args.output:
        Path(args.output).write_text(plan_json(recipe, entries, skipped))
    print(f"recipe {recipe.name} (hash {recipe.hash}): {summ['n_structures']} structures, {summ['n_skipped']} skipped")
    print("per source: " + ", ".join(f"{k} {v}" for k, v in summ["per_source"].items()))
    print(f"per element ({len(summ['per_element'])}): " + ", ".join(f"{k} {v}" for k, v in summ["per_element"].items()))
    if summ["per_prototype"]:
        print(f"per prototype ({len(summ['per_prototype'])}): "
              + ", ".join(f"{k} {v}" for k, v in sorted(summ["per_prototype"].items())))
    if summ["skip_reasons"]:
        print("skipped: " + "; ".join(f"{k} ({v})" for k, v in summ["skip_reasons"].items()))
    if args.size:
        from tqdm import tqdm

        from uniham.data.build import bytes_per_h_element, stored_elements
        from uniham.data.encoding import H_STEP_EV
        from uniham.dft.cp2k_basis import DEFAULT_BASIS

        basis, store = recipe.dft.get("basis", DEFAULT_BASIS), recipe.store
        step = float(store.get("h_step", H_STEP_EV))
        n = sum(stored_elements(e.atoms, basis, store) for e in tqdm(entries, desc="stored H size", unit="structure"))
        print(f"stored H: {n:,} elements, ~{n * bytes_per_h_element(step) / 2**20:.1f} MiB "
              f"(~{bytes_per_h_element(step):.2f} bytes per element at {step:g} eV as measured on db1; "
              "S is not stored)")
    if args.output:
        print(f"plan written to {args.output}")


def cmd_dataset_build(args) -> None:
    from uniham.data.build import build, parse_part

    if args.hours is not None and not args.hours > 0:
        raise UnihamError(f"--hours must be positive (got {args.hours})")
    summary = build(args.recipe, args.out, workers=args.workers, scheduler=args.scheduler,
                    retry_failed=args.retry_failed, limit=args.limit, plan_file=args.plan, part=parse_part(args.part),
                    skip_from=args.skip_from or (), hours=args.hours)
    print(json.dumps(summary))


def cmd_dataset_zeroth(args) -> None:
    from uniham.data.zeroth_step import zeroth_pass

    if args.hours is not None and not args.hours > 0:
        raise UnihamError(f"--hours must be positive (got {args.hours})")
    if args.workers < 1:
        raise UnihamError(f"--workers must be at least 1 (got {args.workers})")
    summary = zeroth_pass(args.dir, args.out, cutoff=args.cutoff, workers=args.workers, scheduler=args.scheduler,
                          hours=args.hours, limit=args.limit, retry_failed=args.retry_failed)
    print(json.dumps(summary))


def cmd_dataset_merge(args) -> None:
    from uniham.data.store import DatasetStore

    store = DatasetStore(args.dir)
    for other in args.others:
        n = store.merge(DatasetStore(other))
        print(f"{args.dir}: {n['structures']} structures and {n['failures']} failures taken from {other} "
              f"({n['already_here']} already here)")
    info = store.info()
    print(f"{args.dir}: {info['n_structures']} structures, {info['n_failed']} failed, {info['n_elements']} elements")


def cmd_dataset_subset(args) -> None:
    from uniham.data.build import subset_ids
    from uniham.data.store import DatasetStore

    src, dst = DatasetStore(args.dir), DatasetStore(args.output)
    if Path(args.output).resolve() == Path(args.dir).resolve():
        raise UnihamError("subset: --output must be another folder")
    if args.n is not None and args.n < 1:
        raise UnihamError(f"--n must be positive (got {args.n})")
    elements = None
    if args.elements:
        from ase.data import chemical_symbols

        bad = [x for x in args.elements if x not in chemical_symbols[1:]]
        if bad:
            raise UnihamError(f"unknown elements {bad}")
        elements = set(args.elements)
    ids = subset_ids(src.manifest["structures"], args.n, args.seed, elements)
    if not ids:
        raise UnihamError(f"{args.dir}: no structure matches (elements {sorted(elements or [])})")
    n = dst.merge(src, ids)
    info = dst.info()
    print(f"{args.output}: {n['structures']} structures taken from {args.dir} ({n['already_here']} already here); "
          f"now {info['n_structures']} structures, {info['n_elements']} elements, {info['bytes'] / 2**20:.1f} MiB")


def cmd_dataset_info(args) -> None:
    from uniham.data.store import DatasetStore

    store = DatasetStore(args.dir)
    info = store.info()
    if args.verify:
        info["checksum_mismatches"] = store.verify()
    if args.plot:
        from uniham.data.plots import plot_coverage

        plot_coverage(info["elements"], args.plot,
                      f"{info['path']}: {info['n_structures']} structures, {info['n_elements']} elements")
    if args.json:
        print(json.dumps(info, indent=1))
        _verified(args, info)
        return
    print(f"{info['path']}: recipe {info['recipe']} ({info['recipe_hash']}), {info['n_structures']} structures "
          f"({info['n_staged']} staged), {info['n_failed']} failed, {info['n_elements']} elements, "
          f"{info['n_shards']} shards, {info['bytes'] / 2**20:.1f} MiB ({info['bytes_per_structure'] / 1024:.1f} KiB/structure)")
    print("sources: " + ", ".join(f"{k} {v}" for k, v in info["sources"].items()))
    print("H stored to: " + ", ".join(f"{k} ({v})" for k, v in info["stored_range"].items())
          + "; fixed-point step: " + ", ".join(f"{k} eV ({v})" for k, v in info["H_step_eV"].items()))
    if info["n_structures"]:
        core_h = info["dft_wall_s_total"] / 3600
        print(f"DFT time: {core_h:.1f} core-hours, median {info['dft_wall_s_median']:.0f} s per structure "
              f"({info['n_structures'] / core_h:.0f} structures per core-hour)")
    print("elements: " + ", ".join(f"{k} {v}" for k, v in info["elements"].items()))
    if info["prototypes"]:
        print(f"prototypes ({len(info['prototypes'])}): " + ", ".join(f"{k} {v}" for k, v in info["prototypes"].items()))
    for reason, n in info["failure_reasons"].items():
        print(f"failed ({n}): {reason}")
    if args.verify:
        print("checksums: " + ("all shards match" if not info["checksum_mismatches"]
                               else "MISMATCH " + ", ".join(info["checksum_mismatches"])))
    if args.plot:
        print(f"coverage plot written to {args.plot}")
    _verified(args, info)


def _verified(args, info: dict) -> None:
    """With --verify, a store whose shards are missing or altered is an error (exit status 2)."""
    if args.verify and info["checksum_mismatches"]:
        bad = info["checksum_mismatches"]
        raise UnihamError(f"{args.dir}: {len(bad)} shard(s) missing or not matching their checksum: {', '.join(bad[:5])}")


def cmd_dataset_export(args) -> None:
    from uniham.data.store import DatasetStore
    from uniham.io import write_hamiltonian

    ham = DatasetStore(args.dir).load(args.id)
    write_hamiltonian(ham, args.output, "deeph-dock")
    print(ham.summary())
    print(f"written to {args.output}")


def cmd_dataset_repair(args) -> None:
    from uniham.data.store import DatasetStore

    store = DatasetStore(args.dir)
    done = store.repair()
    print(f"manifest {done['manifest']}; adopted {done['adopted_structures']} structures of "
          f"{len(done['adopted_shards'])} unlisted shards; {len(done['redo'])} structures of missing or damaged "
          f"shards forgotten; checksums {'verified' if done['verified'] else 'STILL MISMATCHED'}")
    if done["redo"]:
        derived = store.manifest.get("derived")
        again = (f"uniham dataset zeroth {derived['source']} --out {args.dir}" if derived else
                 f"uniham dataset build {Path(args.dir) / 'recipe.toml'} --out {args.dir}")
        print(f"to redo them (and only them): {again}")


def cmd_dataset_remove(args) -> None:
    from uniham.data.store import DatasetStore, wrong_image_ids

    store = DatasetStore(args.dir)
    ids = list(args.ids)
    if args.wrong_images:
        ids += wrong_image_ids(store)
    unknown = set(args.ids) - set(store.ids())
    if unknown:
        raise UnihamError(f"{args.dir}: no structures {sorted(unknown)}")
    n = store.remove(ids, args.reason, redo=not args.no_redo)
    then = "recorded as failed: `uniham dataset build` skips them" if args.no_redo else "`uniham dataset build` redoes them"
    print(f"{args.dir}: removed {n} structures ({args.reason}); {then}")


def cmd_dataset_repack(args) -> None:
    from uniham.data.store import DatasetStore

    store = DatasetStore(args.dir)
    if not store.manifest_path.exists():
        raise UnihamError(f"{args.dir}: not a uniham dataset (no manifest.json)")
    n = store.repack(args.shards or None, args.h_step, args.band_tol, progress=True)
    if not n["shards"]:
        print(f"{args.dir}: nothing to repack")
        return
    mib = 2 ** 20
    print(f"{args.dir}: repacked {n['structures']} structures in {n['shards']} shards: "
          f"{n['bytes_before'] / mib:.1f} -> {n['bytes_after'] / mib:.1f} MiB"
          + " (" + ", ".join(f"{v} {k}" for k, v in n.items() if k.startswith("at ")) + ")")


def cmd_dataset_split(args) -> None:
    from uniham.data.build import split_group, split_ids
    from uniham.data.store import DatasetStore

    recs = DatasetStore(args.dir).manifest["structures"]
    groups = {k: split_group(k, r, args.by) for k, r in recs.items()}
    fr = tuple(float(x) for x in args.fractions.split(","))
    splits = split_ids(sorted(recs), fr, args.seed, groups, set(args.holdout or []))
    Path(args.output).write_text(json.dumps(splits, indent=1))
    print(", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f"; written to {args.output}")


def add_parsers(sub) -> None:
    ds = sub.add_parser("dataset", help="build and inspect DFT databases (recipes, Dask, shards)")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)
    _add_dft_parsers(dsub)
    _add_store_parsers(dsub)


def _add_dft_parsers(dsub) -> None:
    """plan, build and zeroth: the subcommands that plan or run DFT."""
    x = dsub.add_parser("plan", help="list the structures of a recipe (no DFT)")
    x.add_argument("recipe")
    x.add_argument("-o", "--output", help="write every structure with its source as JSON")
    x.add_argument("--size", action="store_true",
                   help="also count the H elements the store will hold and estimate its bytes (~1 min per 3,000)")
    x.set_defaults(func=cmd_dataset_plan)
    x = dsub.add_parser("build", help="run (or resume) the DFT of a recipe on Dask")
    x.add_argument("recipe")
    x.add_argument("--out", required=True)
    x.add_argument("--workers", type=bounded(int, 1), default=max(1, os.cpu_count() or 1),
                   help="local single-threaded workers (default: one per core)")
    x.add_argument("--scheduler", help="address of a running Dask scheduler (e.g. from dask-jobqueue)")
    x.add_argument("--retry-failed", action="store_true", help="run recorded failures again")
    x.add_argument("--limit", type=bounded(int, 0), help="submit at most this many new structures (0: plan and record only)")
    x.add_argument("--plan", help="structures from `uniham dataset plan RECIPE -o FILE` (no planning here)")
    x.add_argument("--part", help="I/N: only every N-th planned structure, starting at the I-th "
                                  "(N machines, N folders, then `uniham dataset merge`)")
    x.add_argument("--skip-from", nargs="+", metavar="DIR",
                   help="dataset folders of the same recipe whose structures are not redone here")
    x.add_argument("--hours", type=bounded(float, 0, strict=True), help="wall-clock budget: hand out no new structure after it; those handed "
                                               "out (at most two per worker) finish, are packed, and the build exits "
                                               "(e.g. a batch job's limit minus two structures' time)")
    x.set_defaults(func=cmd_dataset_build)
    x = dsub.add_parser("zeroth", help="H0 of every structure of a store (CP2K, atomic densities, no SCF): "
                                       "the residual H - H0 into a sibling store; resumable")
    x.add_argument("dir", help="the SCF dataset folder (read only)")
    x.add_argument("--out", required=True, help="sibling folder for ΔH = H - H0 (created or resumed)")
    x.add_argument("--cutoff", type=bounded(float, 0, strict=True), default=7.0, help="keep ΔH blocks within this distance, A (the model's range)")
    x.add_argument("--workers", type=bounded(int, 1), default=max(1, os.cpu_count() or 1),
                   help="local worker processes, one single-threaded CP2K each")
    x.add_argument("--scheduler", help="address of a running Dask scheduler (e.g. from dask-jobqueue)")
    x.add_argument("--hours", type=bounded(float, 0, strict=True), help="wall-clock budget: hand out no new structure after it")
    x.add_argument("--limit", type=bounded(int, 0), help="submit at most this many new structures (0: plan and record only)")
    x.add_argument("--retry-failed", action="store_true", help="run recorded failures again")
    x.set_defaults(func=cmd_dataset_zeroth)


def _add_store_parsers(dsub) -> None:
    """merge, subset, info, repair, export, remove, repack and split: the subcommands on finished stores."""
    x = dsub.add_parser("merge", help="take the structures of other folders built from the same recipe")
    x.add_argument("dir", help="dataset folder to merge into (created if missing)")
    x.add_argument("others", nargs="+", help="dataset folders built from the same recipe (e.g. with --part)")
    x.set_defaults(func=cmd_dataset_merge)
    x = dsub.add_parser("subset", help="copy a deterministic random subset into a new folder (same recipe; "
                                       "`dataset split` and `uniham train` put each structure where they put it "
                                       "in the full store, whatever the folder is called)")
    x.add_argument("dir")
    x.add_argument("-o", "--output", required=True, help="dataset folder to create (or add to)")
    x.add_argument("--n", type=bounded(int, 1), help="number of structures (default: all that match)")
    x.add_argument("--elements", nargs="+", metavar="X", help="only structures made of these elements alone")
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=cmd_dataset_subset)
    x = dsub.add_parser("info", help="counts per element and source, sizes, failures")
    x.add_argument("dir")
    x.add_argument("--json", action="store_true")
    x.add_argument("--verify", action="store_true", help="check shard checksums")
    x.add_argument("--plot", metavar="FILE", help="periodic table of structures per element (PNG, PDF, SVG)")
    x.set_defaults(func=cmd_dataset_info)
    x = dsub.add_parser("repair", help="restore a damaged store to a verified state: a corrupt manifest from its "
                                       "previous copy, unlisted shards adopted, damaged shards forgotten for a rebuild")
    x.add_argument("dir")
    x.set_defaults(func=cmd_dataset_repair)
    x = dsub.add_parser("export", help="one structure as a DeepH-dock folder (S recomputed by PySCF)")
    x.add_argument("dir")
    x.add_argument("id")
    x.add_argument("-o", "--output", required=True)
    x.set_defaults(func=cmd_dataset_export)
    x = dsub.add_parser("remove", help="drop finished structures so that the next build redoes them")
    x.add_argument("dir")
    x.add_argument("ids", nargs="*")
    x.add_argument("--wrong-images", action="store_true",
                   help="every CP2K structure stored with uniham < 0.1.1's image labels that were wrong for it")
    x.add_argument("--reason", required=True)
    x.add_argument("--no-redo", action="store_true",
                   help="record them as failed with REASON (the next build skips them) instead of redoing them")
    x.set_defaults(func=cmd_dataset_remove)
    x = dsub.add_parser("repack", help="rewrite shards in the current encoding, or at a coarser H step",
                        description="Rewrite shards in the current encoding: zigzag fixed point, blocks by distance. "
                        "Without --h-step: every shard written by uniham <= 0.1.1 (float32), put on the 1e-5 eV grid "
                        "(values move by <= 5e-6 eV; db1: 38% fewer bytes). "
                        "With --h-step EV: H re-rounded to that step (error <= step/2 per element, recorded per "
                        "structure), the SHARDS named or every shard at another step. Not while a build writes DIR.")
    x.add_argument("dir")
    x.add_argument("shards", nargs="*", help="shard file names (default: see above)")
    x.add_argument("--h-step", type=bounded(float, 0, strict=True), default=None, help="fixed-point step of H in eV (coarser only)")
    x.add_argument("--band-tol", type=bounded(float, 0, strict=True), default=None,
                   help="meV: per structure the coarsest step from --h-step down (odd multiples of the stored one) that keeps "
                        "its bands (E <= E_F + 5 eV at Gamma and 5 random k) within this of the stored H")
    x.set_defaults(func=cmd_dataset_repack)
    x = dsub.add_parser("split", help="deterministic train/validation/test split")
    x.add_argument("dir")
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--by", choices=["structure", "prototype", "composition"], default="structure")
    x.add_argument("--holdout", nargs="*", help="groups (prototype labels or formulas) kept for test only")
    x.add_argument("--fractions", default="0.8,0.1,0.1")
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=cmd_dataset_split)

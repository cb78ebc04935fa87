"""H0 alone (no network) on a ΔH store: the band metric of the zeroth-step Hamiltonian against the SCF, its
|ΔH| by distance, and its cost next to the SCF's, per structure and summarized.

Usage: python bench/zeroth_step_db.py DELTA_STORE [--split test|all] [--by composition] [--max N] [--far-check N]
       [--out FILE]

The split is the trainer's (fractions 0.8/0.1/0.1, seed 0, grouped by ``--by``), so the figures are those of
variant (0) in the model comparison of issue 25. H0 = H - ΔH on the stored ΔH blocks (within the store's
cutoff), H beyond it (the records' ``beyond_cutoff_*`` say how far that is from H0). ``--far-check N``: for N
structures CP2K's H0 is computed again over its full range, and the bands of the SCF's H with H0's blocks
beyond the cutoff are compared with the SCF's: the floor that ΔH cut at the cutoff sets for any ΔH model
(what ``uniham predict`` adds to H0 on the model's edges only). Prints one JSON object.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import run_meta  # noqa: E402


def main() -> None:
    from tqdm import tqdm

    from uniham.data.build import split_group, split_ids
    from uniham.data.store import DatasetStore
    from uniham.data.zeroth_step import delta_coverage, source_store
    from uniham.model.data import discover
    from uniham.model.evaluate import zeroth_step_alone
    from uniham.properties.band_metric import band_metric, summarize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--split", default="test", choices=["train", "validation", "test", "all"])
    ap.add_argument("--by", default="composition", choices=["structure", "prototype", "composition"])
    ap.add_argument("--max", type=int, default=None, help="at most this many structures (in id order)")
    ap.add_argument("--far-check", type=int, default=0, help="structures whose far-field floor is measured (CP2K runs)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    items = discover([args.store])
    if args.split != "all":
        groups = {it.id: split_group(it.key, it.record, args.by) for it in items}
        chosen = set(split_ids([it.id for it in items], (0.8, 0.1, 0.1), 0, groups)[args.split])
        items = [it for it in items if it.id in chosen]
    items = items[:args.max]
    store = DatasetStore(args.store)
    scf = source_store(store).manifest["structures"]
    rows = []
    for it in tqdm(items, desc="H0 alone", unit="structure"):
        ref, h0 = zeroth_step_alone(it)
        rec = store.manifest["structures"][it.key]
        rows.append({"id": it.key, "formula": rec.get("formula"), "source": rec.get("source"),
                     **band_metric(h0, ref), "h0_cp2k_s": rec.get("cp2k_s"), "scf_wall_s": scf[it.key].get("wall_s"),
                     "mean_onsite_meV": rec["stats"].get("mean_onsite_meV"), "mu_eV": rec["stats"].get("mu_eV")})
    ratio = [r["h0_cp2k_s"] / r["scf_wall_s"] for r in rows if r["h0_cp2k_s"] and r["scf_wall_s"]]
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r["band_mae_meV"])
    out = run_meta() | {"store": args.store, "split": args.split, "split_by": args.by, "n_structures": len(rows),
                        "h0_alone_band_metric": summarize(r["band_mae_meV"] for r in rows),
                        "h0_alone_by_source": {k: summarize(v) for k, v in sorted(by_source.items())},
                        "h0_over_scf_wall_time": {"median": float(np.median(ratio)) if ratio else None,
                                                  "p90": float(np.percentile(ratio, 90)) if ratio else None},
                        "store_coverage": delta_coverage(store), "per_structure": rows}
    if args.far_check:
        out["far_field_floor"] = far_field_floor(items[:args.far_check], store)
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


def far_field_floor(items, store) -> dict:
    """Band metric of H_SCF within the store's cutoff + a fresh CP2K H0 beyond it, against H_SCF."""
    from uniham.data.zeroth_step import source_store
    from uniham.hamiltonian import Hamiltonian
    from uniham.model.predict import zeroth_step_prior
    from uniham.properties.band_metric import band_metric, summarize

    cutoff = store.manifest["derived"]["cutoff_A"]
    settings = store.manifest["derived"]["dft"]
    src = source_store(store)
    rows = []
    for it in items:
        ref = src.load(it.key)
        h0 = zeroth_step_prior(ref.atoms, settings, settings["basis"])
        pos, cell = ref.atoms.positions, ref.atoms.cell.array
        far = lambda k: np.linalg.norm(pos[k[4]] + np.asarray(k[:3]) @ cell - pos[k[3]]) > cutoff + 1e-8  # noqa: E731
        H = {k: (h0.H.get(k, 0 * v) if far(k) else v) for k, v in ref.H.items()}
        m = band_metric(Hamiltonian(ref.atoms, ref.basis, H, ref.S, None, ref.n_electrons, False), ref)
        rows.append({"id": it.key, "band_mae_meV": m["band_mae_meV"],
                     "beyond_cutoff_max_meV": store.manifest["structures"][it.key]["stats"]["beyond_cutoff_max_meV"]})
    return {"summary": summarize(r["band_mae_meV"] for r in rows), "per_structure": rows}


if __name__ == "__main__":
    main()

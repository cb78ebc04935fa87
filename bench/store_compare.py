"""Band differences between the same structures in two copies of a dataset (e.g. before and after
`uniham dataset repack`).

Usage: python bench/store_compare.py BEFORE AFTER [--sample 40] [--seed 0] [--only-float32]

Loads each sampled structure from both folders (S from the basis integrals in both) and compares the bands
at 6 random k-points: max |dE| (meV) for E <= E_F + 5 eV and for |E - E_F| <= 3 eV, plus the largest H
element difference (eV). ``--only-float32`` samples the structures stored in uniham <= 0.1.1's float32
encoding in BEFORE, ``--changed`` those whose H step differs (re-rounded by a repack). Prints one JSON
object.
"""
import argparse
import json
import time

import h5py
import numpy as np

from uniham.data.store import DatasetStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-float32", action="store_true")
    ap.add_argument("--changed", action="store_true", help="only structures whose H step differs between the two")
    a = ap.parse_args()
    b, c = DatasetStore(a.before), DatasetStore(a.after)
    pool = sorted(set(b.manifest["structures"]) & set(c.manifest["structures"]))
    if a.changed:
        pool = [s for s in pool if b.manifest["structures"][s].get("H_step_eV", 1e-5)
                != c.manifest["structures"][s].get("H_step_eV", 1e-5)]
    if a.only_float32:
        keep = []
        for shard in sorted({b.manifest["structures"][s]["shard"] for s in pool}):
            with h5py.File(b.shards / shard, "r") as h5:
                keep += [s for s in h5 if "H" in h5[s] and s in c.manifest["structures"]]
        pool = sorted(keep)
    rng = np.random.default_rng(a.seed)
    sample = [pool[i] for i in sorted(rng.choice(len(pool), min(a.sample, len(pool)), replace=False))]
    ks = np.random.default_rng(1).uniform(-0.5, 0.5, (6, 3))
    rows, t0 = [], time.time()
    for sid in sample:
        h0, h1 = b.load(sid), c.load(sid)
        e0, e1 = h0.eigenvalues(ks), h1.eigenvalues(ks)
        sel, near = e0 <= h0.fermi_level + 5.0, np.abs(e0 - h0.fermi_level) <= 3.0
        dh = max(float(np.abs(h1.H[k] - h0.H[k]).max()) for k in h0.H)
        rows.append({"id": sid, "band_meV": float(1e3 * np.abs(e1 - e0)[sel].max()),
                     "near_EF_meV": float(1e3 * np.abs(e1 - e0)[near].max()) if near.any() else 0.0, "max_dH_eV": dh})
    out = {"before": a.before, "after": a.after, "n_sample": len(sample), "seed": a.seed,
           "only_float32": a.only_float32, "changed": a.changed, "seconds": round(time.time() - t0, 1)}
    for key in ("band_meV", "near_EF_meV", "max_dH_eV"):
        v = np.array([r[key] for r in rows])
        out[key] = {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "max": float(v.max()),
                    "worst": max(rows, key=lambda r: r[key])["id"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

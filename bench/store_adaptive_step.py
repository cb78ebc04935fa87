"""Bytes and band errors of storing H at a coarser fixed-point step, chosen per structure by a band
tolerance (`uniham dataset repack --h-step S --band-tol T`, the recipe's [store] h_step/h_band_tol).

Usage: python bench/store_adaptive_step.py DATASET [--sample 40] [--seed 0] [--step 5e-5] [--tol 1.0]

A random sample of the dataset's structures stored at 1e-5 eV (zigzag) is copied to a temporary folder and
repacked three ways: at 1e-5 eV (the same values, blocks by distance: the lossless gain), at the step for
every structure, and per structure at the coarsest step from the ladder (step, 2e-5, 1e-5) whose bands
(E <= E_F + 5 eV at Gamma and 5 random k) stay within the tolerance. Prints one JSON object: shard bytes relative to
the original, the steps chosen, and the band errors recorded (meV).
"""
import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from uniham.data.store import DatasetStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", type=float, default=5e-5)
    ap.add_argument("--tol", type=float, default=1.0)
    a = ap.parse_args()
    db = DatasetStore(a.dataset)
    steps = db.shard_steps()
    pool = sorted(sid for sid, r in db.manifest["structures"].items() if steps[r["shard"]] == {1e-5})
    rng = np.random.default_rng(a.seed)
    sample = [pool[i] for i in sorted(rng.choice(len(pool), min(a.sample, len(pool)), replace=False))]
    out = {"dataset": a.dataset, "n_sample": len(sample), "seed": a.seed, "step_eV": a.step, "tol_meV": a.tol}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for name, kw in (("same_step_by_distance", {"step": 1e-5}), ("uniform", {"step": a.step}),
                         ("adaptive", {"step": a.step, "band_tol": a.tol})):
            st = DatasetStore(Path(tmp) / name)
            st.merge(db, ids=sample)
            before = sum(s["bytes"] for s in st.manifest["shards"].values())
            st.repack(list(st.manifest["shards"]), **kw)
            st = DatasetStore(Path(tmp) / name)
            sizes[name] = sum(s["bytes"] for s in st.manifest["shards"].values()) / before
            if name == "adaptive":
                recs = st.manifest["structures"].values()
                err = np.array([r["H_rounding_band_error_meV"] for r in recs])
                out["steps_chosen"] = {f"{k:g}": v for k, v in sorted(Counter(r["H_step_eV"] for r in recs).items())}
                out["band_error_meV"] = {"median": round(float(np.median(err)), 3),
                                         "p90": round(float(np.percentile(err, 90)), 3), "max": round(float(err.max()), 3)}
                out["finer_than_step"] = sorted(r["formula"] for r in recs if r["H_step_eV"] < a.step)
        out["bytes_vs_original"] = {k: round(v, 3) for k, v in sizes.items()}
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

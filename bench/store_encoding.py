"""Bytes per structure and band error of the dataset encoding (H cutoff, fixed-point step) on a
sample of a built dataset.

Usage: python bench/store_encoding.py DATASET [--sample N] [--cutoffs 9,10] [--decimals 5,4] [--seed S]
                                      [--steps 1e-5,2e-5,5e-5 --schemes zigzag]  (any fixed-point step, eV)
                                      [--range-eps E]   (keep max(cutoff, pair range at E), as the store does)
       python bench/store_encoding.py --dft FOLDER [FOLDER ...] [--cutoffs ...] [--decimals ...]

The reference is what the dataset holds (its own cutoff, 1e-5 eV); its bytes are those of the
scale-offset encoding at 5 decimals. For each (cutoff, step = 10^-decimals eV or --steps) the
stored half of H is cut at the distance and encoded in an in-memory HDF5 file (bytes as on disk) both as
`uniham.data.encoding.write_group` does ("zigzag": fixed point k = rint(H / 10^-d), zigzag, one chunk,
shuffle, gzip 6) and as uniham <= 0.1.1 did ("scaleoffset": float32, HDF5 scale-offset d decimals,
shuffle, gzip 6, automatic chunks), read back, and the bands at 6 random k
(S recomputed over its own range, as `DatasetStore.load` does) are compared with the reference:
max |dE| for E <= E_F + 5 eV and for |E - E_F| <= 3 eV. Prints one JSON object: per variant the total
bytes relative to the reference, KiB per structure, and the median / 90th percentile / max band error (meV)
over the sample, plus the worst structure.

With ``--dft``, the structures are `uniham dft` output folders (float64 H, every block CP2K wrote, CP2K's
S): the reference is then the untruncated, unrounded H, so that the errors are those of the dataset
against the DFT itself (cut + encoding), and the variant "none" (cut only, float64) separates the two.
"""
import argparse
import io
import json
import time

import h5py
import numpy as np

from uniham.data.build import stored_range
from uniham.data.encoding import half_keys
from uniham.data.store import DatasetStore
from uniham.hamiltonian import Hamiltonian
from uniham.io import read_hamiltonian


def encode(keys: np.ndarray, flat: np.ndarray, step: float, scheme: str) -> tuple[int, np.ndarray]:
    """(bytes on disk, values read back) of one structure's keys and H."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        h5.create_dataset("keys", data=keys.astype(np.int32), compression="gzip", shuffle=True)
        if scheme == "zigzag":
            k = np.rint(flat.astype(np.float64) / step).astype(np.int64)
            h5.create_dataset("H", data=((k << 1) ^ (k >> 63)).astype(np.uint32), chunks=(len(k),), shuffle=True,
                              compression="gzip", compression_opts=6)
        else:
            h5.create_dataset("H", data=flat.astype(np.float32), scaleoffset=int(round(-np.log10(step))), compression="gzip",
                              compression_opts=6, shuffle=True)
        h5.flush()
        n = h5["keys"].id.get_storage_size() + h5["H"].id.get_storage_size()
        back = h5["H"][()]
    if scheme == "none":
        return 0, flat
    if scheme == "zigzag":
        z = back.astype(np.int64)
        back = ((z >> 1) ^ -(z & 1)) * step
    return n, back


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="+", help="a dataset folder, or with --dft `uniham dft` output folders")
    ap.add_argument("--dft", action="store_true")
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--cutoffs", default="9,10")
    ap.add_argument("--decimals", default="5,4")
    ap.add_argument("--steps", default=None, help="fixed-point steps in eV (overrides --decimals)")
    ap.add_argument("--schemes", default="scaleoffset,zigzag")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--range-eps", type=float, default=None)
    a = ap.parse_args()
    if a.dft:
        sample = a.dataset
    else:
        store = DatasetStore(a.dataset[0])
        ids = sorted(store.ids())
        rng = np.random.default_rng(a.seed)
        sample = [ids[i] for i in sorted(rng.choice(len(ids), min(a.sample, len(ids)), replace=False))]
    cutoffs = [float(x) for x in a.cutoffs.split(",")]
    decimals = ([float(x) for x in a.steps.split(",")] if a.steps
                else [10.0 ** -int(x) for x in a.decimals.split(",")])
    ks = np.random.default_rng(1).uniform(-0.5, 0.5, (6, 3))
    schemes = tuple(a.schemes.split(",")) + (("none",) if a.dft else ())
    rows = {(c, d, e): {"bytes": 0, "err": [], "err_near": []} for c in cutoffs for d in decimals for e in schemes}
    ref_bytes, t0 = 0, time.time()
    for sid in sample:
        if a.dft:
            ham = read_hamiltonian(sid)
            half = half_keys(sorted(ham.H))
            raw = {"keys": np.array(half).reshape(-1, 5), "H": np.concatenate([ham.H[k].ravel() for k in half])}
        else:
            raw = store.load_raw(sid)
            ham = store.load(sid)
        pos, cell = ham.atoms.positions, ham.atoms.cell.array
        ref = ham.eigenvalues(ks)
        sel, near = ref <= ham.fermi_level + 5.0, np.abs(ref - ham.fermi_level) <= 3.0
        dims = [ham.basis[x].dim for x in ham.atoms.get_chemical_symbols()]
        keys = raw["keys"]
        sizes = np.array([dims[k[3]] * dims[k[4]] for k in keys])
        offs = np.concatenate([[0], np.cumsum(sizes)])
        dist = np.linalg.norm(pos[keys[:, 4]] + keys[:, :3] @ cell - pos[keys[:, 3]], axis=1)
        ref_bytes += encode(keys, raw["H"], 1e-5, "scaleoffset")[0]
        sym = ham.atoms.get_chemical_symbols()
        for c in cutoffs:
            reach = stored_range(sym, "DZVP-MOLOPT-SR-GTH", {"cutoff": c, "range_eps": a.range_eps})
            keep = dist <= reach[keys[:, 3], keys[:, 4]] + 1e-9
            flat = np.concatenate([raw["H"][offs[i]:offs[i + 1]] for i in np.nonzero(keep)[0]])
            for d, scheme in ((d, e) for d in decimals for e in schemes):
                if scheme == "none" and d != decimals[0]:
                    continue
                nbytes, q = encode(keys[keep], flat, d, scheme)
                H, start = {}, 0
                for k in map(tuple, keys[keep].tolist()):
                    n = dims[k[3]] * dims[k[4]]
                    H[k] = q[start:start + n].reshape(dims[k[3]], dims[k[4]])
                    start += n
                for k, b in list(H.items()):
                    H.setdefault((-k[0], -k[1], -k[2], k[4], k[3]), b.T)
                H |= {k: np.zeros_like(v) for k, v in ham.S.items() if k not in H}
                cut = Hamiltonian(ham.atoms, ham.basis, H, ham.S, ham.fermi_level)
                e = np.abs(cut.eigenvalues(ks) - ref) * 1000
                r = rows[(c, d, scheme)]
                r["bytes"] += nbytes
                r["err"].append((float(e[sel].max()), sid))
                r["err_near"].append((float(e[near].max()) if near.any() else 0.0, sid))
    out = {"dataset": a.dataset if a.dft else a.dataset[0], "range_eps": a.range_eps, "n_sample": len(sample), "seed": a.seed, "reference_KiB_per_structure":
           round(ref_bytes / len(sample) / 1024, 1), "seconds": round(time.time() - t0, 1), "variants": []}
    for (c, d, scheme), r in rows.items():
        if not r["err"]:
            continue
        err = np.array([x for x, _ in r["err"]])
        near = np.array([x for x, _ in r["err_near"]])
        out["variants"].append({
            "cutoff_A": c, "step_eV": d, "scheme": scheme, "bytes_vs_reference": round(r["bytes"] / ref_bytes, 3),
            "KiB_per_structure": round(r["bytes"] / len(sample) / 1024, 1),
            "band_err_meV": {"median": round(float(np.median(err)), 3), "p90": round(float(np.percentile(err, 90)), 3),
                             "max": round(float(err.max()), 3), "worst": max(r["err"])[1]},
            "near_EF_err_meV": {"median": round(float(np.median(near)), 3),
                                "p90": round(float(np.percentile(near, 90)), 3), "max": round(float(near.max()), 3),
                                "worst": max(r["err_near"])[1]}})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

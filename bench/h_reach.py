"""How far the DFT Hamiltonian reaches, per element, measured on a built dataset: what a model's edge
cutoff must cover.

Usage: python bench/h_reach.py DATASET [--thresholds 1e-2,1e-3,1e-4] [--model-cutoff 8]

Only structures stored with a per-pair range (``range_eps`` in their record: H kept out to max(cutoff,
the pair's basis range), so nothing above ~1e-4 eV is cut) are used. For each stored block H_ij(R) at
distance d = |r_j + R - r_i| (Angstrom) the largest |element| (eV) is taken; the reach of an element pair at
threshold t is the largest d with a block above t. Per element: the largest reach over the pairs that
contain it (any partner) and over its homonuclear pairs. Per structure: how many atom pairs (graph edges,
both directions) a model needs to hold every block above t, relative to a fixed ``--model-cutoff`` graph.
Elements with a pair whose reach lies within 0.5 A of the farthest block stored for that pair (the store's
range or CP2K's own neighbour list, whichever ends first) are listed: there the reach is a lower bound. Prints one JSON object; stderr gets a one-line summary per threshold.
"""
import argparse
import json
from collections import defaultdict

import h5py
import numpy as np

from uniham.data.encoding import read_group
from uniham.data.store import DatasetStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--thresholds", default="1e-2,1e-3,1e-4")
    ap.add_argument("--model-cutoff", type=float, default=8.0)
    args = ap.parse_args()
    ts = [float(x) for x in args.thresholds.split(",")]
    store = DatasetStore(args.dataset)
    recs = {sid: r for sid, r in store.manifest["structures"].items() if r.get("range_eps")}
    from uniham.dft.cp2k_basis import load_basis

    dims: dict[str, int] = {}
    pair_reach = {t: defaultdict(float) for t in ts}  # (a, b) sorted -> reach (A)
    pair_stored = defaultdict(float)  # (a, b) sorted -> farthest stored block (A): a reach this close is a lower bound
    edges = {t: [] for t in ts}  # per structure: edges needed / edges within model cutoff
    by_shard = defaultdict(list)
    for sid, r in recs.items():
        by_shard[r["shard"]].append(sid)
    for shard, ids in sorted(by_shard.items()):
        with h5py.File(store.shards / shard, "r") as f:
            for sid in ids:
                raw = read_group(f[sid])
                sym, keys, h = raw["symbols"], raw["keys"], raw["H"]
                pos, cell = np.asarray(raw["positions"]), np.asarray(raw["cell"])
                for x in sym:
                    if x not in dims:
                        dims[x] = load_basis(x, raw["basis"]).orbital_basis().dim
                sizes = np.array([dims[sym[i]] * dims[sym[j]] for i, j in keys[:, 3:]])
                starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
                hmax = np.maximum.reduceat(np.abs(h), starts) if len(h) else np.zeros(0)
                d = np.linalg.norm(pos[keys[:, 4]] + keys[:, :3] @ cell - pos[keys[:, 3]], axis=1)
                # a stored half key (i < j, or i == j with R >= 0) stands for two directed edges unless R = 0, i = j
                mult = np.where((keys[:, 3] == keys[:, 4]) & ~keys[:, :3].any(axis=1), 0, 2)
                n_model = int(mult[d <= args.model_cutoff + 1e-8].sum())
                for (i, j), dd in zip(keys[:, 3:], d):
                    p = tuple(sorted((sym[i], sym[j])))
                    pair_stored[p] = max(pair_stored[p], float(dd))
                for t in ts:
                    above = hmax > t
                    reach_pairs = {}
                    for (i, j), dd in zip(keys[above, 3:], d[above]):
                        p = tuple(sorted((sym[i], sym[j])))
                        pair_reach[t][p] = max(pair_reach[t][p], float(dd))
                        reach_pairs[(i, j)] = max(reach_pairs.get((i, j), 0.0), float(dd))
                    # edges a per-atom-pair cutoff graph holds: every block out to that pair's reach
                    need = sum(int(m) for (i, j), dd, m in zip(keys[:, 3:], d, mult)
                               if dd <= max(reach_pairs.get((i, j), 0.0), reach_pairs.get((j, i), 0.0)) + 1e-8)
                    edges[t].append(need / max(n_model, 1))
    out = {"dataset": args.dataset, "n_structures": len(recs), "model_cutoff_A": args.model_cutoff,
           "block_measure": "max |H element| of the block (eV)", "thresholds_eV": {}}
    for t in ts:
        per_el, homo, capped = defaultdict(float), {}, set()
        for (a, b), r in pair_reach[t].items():
            per_el[a] = max(per_el[a], r)
            per_el[b] = max(per_el[b], r)
            if a == b:
                homo[a] = r
            if r > pair_stored[(a, b)] - 0.5:  # within 0.5 A of the store's edge: H may go on beyond
                capped |= {a, b}
        ratio = np.array(edges[t])
        beyond = sorted(x for x, r in per_el.items() if r > args.model_cutoff)
        out["thresholds_eV"][str(t)] = {
            "reach_A_per_element": {x: round(per_el[x], 2) for x in sorted(per_el, key=lambda x: -per_el[x])},
            "reach_A_homonuclear": {x: round(homo[x], 2) for x in sorted(homo, key=lambda x: -homo[x])},
            "elements_beyond_model_cutoff": beyond,
            "elements_with_a_pair_at_store_edge": sorted(capped),
            "edges_vs_model_cutoff": {"median": round(float(np.median(ratio)), 3), "p90": round(float(np.quantile(ratio, 0.9)), 3),
                                      "max": round(float(ratio.max()), 3)},
        }
        print(f"|H| > {t:g} eV: {len(beyond)} of {len(per_el)} elements reach beyond {args.model_cutoff:g} A; "
              f"per-pair graph / {args.model_cutoff:g} A graph: median {np.median(ratio):.2f}, max {ratio.max():.2f}",
              file=__import__("sys").stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

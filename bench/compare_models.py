"""Paired comparison of models' band errors on the same structures (is a new model really better?).

Each input is NAME=FILE: a `uniham evaluate --json` result (its ``band_metric_per_structure``) or a
`bench/guard_tau.py` result (its ``per_structure`` at ``--tau``). The first is the reference. Printed as JSON:
per model the median and 90th percentile, and against the reference the median per-structure difference, and
the share of structures and of compositions (a structure's perturbed copies count once, by their mean) where
the model is better, with a two-sided sign-test p-value over compositions. The median of ~100 compositions
moves by a few meV between checkpoints of equal quality; the paired figures say whether a change is real.

    python bench/compare_models.py v1=ev_v1.json c4=ev_c4.json --json bench/results/model_soup/test.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import run_meta  # noqa: E402


def per_structure(path: Path, tau: float) -> dict[str, float]:
    d = json.loads(path.read_text())
    if "band_metric_per_structure" in d:
        return {r["id"]: r["band_mae_meV"] for r in d["band_metric_per_structure"]}
    return {r["id"]: r[f"tau={tau:g}"] for r in d["per_structure"]}


def composition(structure_id: str) -> str:
    """db1 ids end in -SUPERCELL-COPY (…-1x1x1-0, -1, -2: the ideal cell and its perturbed copies)."""
    return structure_id.rsplit("-", 2)[0]


def sign_test(wins: int, n: int) -> float:
    """Two-sided binomial sign test, p for at least this lopsided a split of n ties-free pairs."""
    k = min(wins, n - wins)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def compare(named: dict[str, dict[str, float]]) -> dict:
    names = list(named)
    ref = named[names[0]]
    ids = sorted(set.intersection(*(set(v) for v in named.values())))
    out = {"reference": names[0], "n_structures": len(ids), "models": {}}
    for name in names:
        vals = np.array([named[name][i] for i in ids])
        row = {"median_meV": float(np.median(vals)), "p90_meV": float(np.percentile(vals, 90))}
        if name != names[0]:
            d = vals - np.array([ref[i] for i in ids])
            by_comp: dict[str, list[float]] = {}
            for i, x in zip(ids, d):
                by_comp.setdefault(composition(i), []).append(x)
            c = np.array([np.mean(v) for v in by_comp.values()])
            c = c[c != 0]
            row |= {"median_difference_meV": float(np.median(d)), "better_structures": float(np.mean(d < 0)),
                    "better_compositions": float(np.mean(c < 0)), "n_compositions": int(c.size),
                    "sign_test_p": sign_test(int((c < 0).sum()), int(c.size))}
        out["models"][name] = row
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", metavar="NAME=FILE")
    ap.add_argument("--tau", type=float, default=0.01, help="the guard of guard_tau.py inputs (default 0.01)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    named = {}
    for x in a.inputs:
        name, _, f = x.partition("=")
        named[name] = per_structure(Path(f), a.tau)
    out = compare(named) | {"inputs": a.inputs} | run_meta()
    text = json.dumps(out, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""The overlap guard's τ for a ΔH model, on a split of its data (the validation split picks τ; never the test).

For every structure of the split the network runs once; its ΔH is then guarded with each τ
(``uniham.conditioning``: F δ F, F = S(k)(S(k) + τ)⁻¹; τ = 0 is no guard) and the one band metric
(``uniham.properties.band_metric``: bands within E_F ± 2 eV at Γ and 7 fixed k, after the median shift) is
taken for each. Printed as JSON: per τ the median and 90th percentile over the structures, the count worse
than H⁽⁰⁾ alone, and per structure every value (for the tail).

    python bench/guard_tau.py --model campaigns/c_delta_prior/weights.pt --data data/db1_dh \
        --split validation --json bench/results/guard_tau/c_delta_prior_stretch5.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import run_meta  # noqa: E402

TAUS = (0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def scan(model: str, data: list[str], split: str, taus=TAUS, limit: int | None = None, threads: int = 1) -> dict:
    import torch

    from uniham.model.checkpoint import load_checkpoint
    from uniham.model.data import discover
    from uniham.model.evaluate import delta_inputs, predicted_pairs, split_items, zeroth_step_alone
    from uniham.model.predict import LoadedModel
    from uniham.pretrained import resolve
    from uniham.properties.band_metric import band_metric, summarize

    torch.set_num_threads(threads)
    path = resolve(model)[0]
    items, _ = split_items(discover(data), load_checkpoint(path), split)
    items = [it for it in items if it.target == "delta_h0"][:limit]
    lm = LoadedModel(path)
    rows, t0 = [], time.perf_counter()
    for it in tqdm(items, desc=f"guard scan ({split})", unit="structure"):
        inputs = delta_inputs(it)
        ref, preds = predicted_pairs(it, lm, inputs, tuple(taus))
        row = {"id": it.id, "h0_alone": band_metric(zeroth_step_alone(it, inputs)[1], ref)["band_mae_meV"]}
        row |= {f"tau={t:g}": band_metric(p, ref)["band_mae_meV"] for t, p in zip(taus, preds)}
        rows.append(row)
    per_tau = {}
    for t in taus:
        vals = [r[f"tau={t:g}"] for r in rows]
        per_tau[f"{t:g}"] = summarize(vals) | {
            "worse_than_h0_alone": int(sum(v > r["h0_alone"] for v, r in zip(vals, rows)))}
    best = min(per_tau, key=lambda k: (per_tau[k]["p90_meV"], per_tau[k]["median_meV"]))
    return {"model": str(path), "split": split, "n_structures": len(rows), "taus": list(taus), "per_tau": per_tau,
            "h0_alone": summarize(r["h0_alone"] for r in rows), "lowest_p90_tau": float(best),
            "wall_s": round(time.perf_counter() - t0, 1), "per_structure": rows} | run_meta()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint or a shipped model's name")
    ap.add_argument("--data", nargs="+", required=True, help="ΔH stores (db1 beside them)")
    ap.add_argument("--split", default="validation", choices=("train", "validation", "test"))
    ap.add_argument("--taus", type=float, nargs="+", default=list(TAUS))
    ap.add_argument("--limit", type=int, default=None, help="the first N structures of the split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    out = scan(a.model, a.data, a.split, tuple(a.taus), a.limit, a.threads)
    text = json.dumps(out, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text)
    print(json.dumps({k: v for k, v in out.items() if k != "per_structure"}, indent=1))


if __name__ == "__main__":
    main()

"""Which prior: H⁽⁰⁾ (the atoms' densities) or H⁽¹⁾ (one density update later)? Bands of each against the SCF.

For a sample of the test split of db1_dh (the ideal cell of every N-th test composition, and the ideal cells
of the compositions where uniham-v1 is worst), CP2K runs 2 SCF iterations from the atomic guess with the
structure's own SCF settings (basis, cutoff, its k-mesh, smearing; ``Cp2kSettings.scf_steps = 2``): iteration 1
builds H⁽⁰⁾ and diagonalizes it on the k-mesh, the density is mixed (Broyden, ALPHA ``--alpha``: the share of
the new density), and iteration 2 builds H⁽¹⁾ on it. H⁽¹⁾ is cut to the stored SCF blocks, as H⁽⁰⁾ is, and both
are scored by the one band metric against the stored SCF H. Printed as JSON: per structure the band metric of
H⁽⁰⁾ alone, of H⁽¹⁾ for each alpha, of uniham-v1 (from its evaluation JSON, if given), and the CP2K wall times
(H⁽¹⁾ here; H⁽⁰⁾ and the SCF as their stores recorded them, on other runs of the same machine).

    python bench/first_step_prior.py --every 4 --worst 8 --alpha 0.3 1.0 \
        --model-json bench/results/model_soup/test_uniham-v1.json --json bench/results/first_step_prior/db1_test.json
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
from compare_models import composition  # noqa: E402


def sample(items: list, every: int, worst: int, model_rows: dict[str, float]) -> list:
    """The ideal cells (id ending -0) of every ``every``-th test composition, then those of the ``worst``
    compositions by the model's band metric (its mean over the composition's copies)."""
    ideal = sorted((it for it in items if it.id.endswith("-0")), key=lambda it: it.id)
    picked = ideal[::every]
    if model_rows and worst:
        comp = {}
        for sid, v in model_rows.items():
            comp.setdefault(composition(sid), []).append(v)
        bad = sorted(comp, key=lambda c: -np.mean(comp[c]))[:worst]
        picked += [it for it in ideal if composition(it.id) in bad and it not in picked]
    return picked


def first_step(item, scf_record: dict, ref, dft: dict, alpha: float):
    """(H⁽¹⁾ cut to ref's blocks as a Hamiltonian, CP2K seconds) for a db1_dh item and its SCF's store record."""
    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft
    from uniham.hamiltonian import Hamiltonian

    settings = Cp2kSettings(**(dft | {"basis": item.prior["basis"], "ecut": scf_record["dft"]["ecut_Ry"],
                                      "kmesh": tuple(scf_record["dft"]["kmesh"]), "scf_steps": 2,
                                      "mixing_alpha": alpha, "n_check_kpoints": 0}))
    h1 = run_dft(ref.atoms, settings)
    missing = [k for k in ref.H if k not in h1.H]
    if missing:
        raise RuntimeError(f"{item.id}: {len(missing)} stored blocks have no H1 block (image labels differ)")
    ham = Hamiltonian(ref.atoms, ref.basis, {k: h1.H[k] for k in ref.H}, ref.S, None, ref.n_electrons, False)
    return ham, h1.provenance["timing"]["cp2k_s"]


def main(argv=None) -> None:
    from uniham.data.recipe import load_recipe
    from uniham.data.store import DatasetStore
    from uniham.model.checkpoint import load_checkpoint
    from uniham.model.data import discover
    from uniham.model.evaluate import delta_inputs, split_items, zeroth_step_alone
    from uniham.pretrained import resolve
    from uniham.properties.band_metric import band_metric, summarize

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/db1_dh")
    ap.add_argument("--source", default="data/db1")
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--worst", type=int, default=8)
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.3])
    ap.add_argument("--model-json", type=Path, help="a `uniham evaluate --split test --json` result to compare with")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    model_rows = ({r["id"]: r["band_mae_meV"] for r in json.loads(a.model_json.read_text())["band_metric_per_structure"]}
                  if a.model_json else {})
    items, _ = split_items(discover([a.data]), load_checkpoint(resolve(None)[0]), "test")
    scf_recs = DatasetStore(a.source).manifest["structures"]
    dft = dict(load_recipe(Path(a.source) / "recipe.toml").dft)
    rows = []
    for it in tqdm(sample(items, a.every, a.worst, model_rows), desc="H1 by CP2K", unit="structure"):
        scf = scf_recs[it.key]
        inputs = delta_inputs(it)
        ref = inputs[0]
        row = {"id": it.id, "atoms": len(ref.atoms), "kmesh": scf["dft"]["kmesh"],
               "h0_alone": band_metric(zeroth_step_alone(it, inputs)[1], ref)["band_mae_meV"],
               "model": model_rows.get(it.id), "h0_cp2k_s": it.record.get("cp2k_s"),
               "scf_wall_s": scf.get("wall_s"), "scf_cycles": scf["dft"].get("scf_cycles")}
        for alpha in a.alpha:
            try:
                h1, t = first_step(it, scf, ref, dft, alpha)
                row |= {f"h1_alpha={alpha:g}": band_metric(h1, ref)["band_mae_meV"], f"h1_cp2k_s_alpha={alpha:g}": t}
            except Exception as exc:  # noqa: BLE001 - a failed structure is recorded, the sample goes on
                row[f"h1_alpha={alpha:g}_error"] = str(exc)[:200]
        rows.append(row)
    keys = ["h0_alone", "model", *[f"h1_alpha={x:g}" for x in a.alpha]]
    out = {"n_structures": len(rows),
           "summary": {k: summarize(r[k] for r in rows if r.get(k) is not None) for k in keys},
           "per_structure": rows, "t": time.strftime("%Y-%m-%dT%H:%M:%S")} | run_meta()
    text = json.dumps(out, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "per_structure"}, indent=1))


if __name__ == "__main__":
    main()

"""Wall time of `uniham predict` (H0 by CP2K + the network's ΔH + S) next to the CP2K SCF of the same structure,
measured in the same run, by cell size (diamond Si; the timing does not depend on the weights' values).

Usage: python bench/predict_vs_scf.py --model NAME|CKPT [--cells prim,1x1x1,2x1x1,2x2x2] [--scf-up-to 64]
       [--repeats 1] [--out FILE]

Cells: "prim" the 2-atom cell, "AxBxC" repeats of the 8-atom cubic cell. The SCF runs at uniham's defaults
(DZVP-MOLOPT-SR, k-spacing 0.25 1/A); each timing is a separate process. Cells above ``--scf-up-to`` atoms get the
prediction only, and the SCF's time there is extrapolated from the measured ones by a power law in the atom count
(labelled "extrapolated"). The band metric of each prediction against its SCF is reported where both exist.
Prints one JSON object (and writes it to ``--out``).
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import run_meta  # noqa: E402

CHILD = r"""
import json, sys, time, resource
import torch
torch.set_num_threads(1)
from ase.build import bulk
cell, what, model, out = sys.argv[1:5]
atoms = bulk("Si", "diamond", a=5.431) if cell == "prim" else \
    bulk("Si", "diamond", a=5.431, cubic=True).repeat(tuple(int(x) for x in cell.split("x")))
atoms.rattle(0.02, seed=1)
t = time.perf_counter()
if what == "scf":
    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft
    ham = run_dft(atoms, Cp2kSettings(n_check_kpoints=0))
    timing = {}
else:
    from uniham.model.predict import predict
    ham = predict(atoms, None if model == "default" else model, fermi=False)
    timing = ham.provenance["timing"]
wall = time.perf_counter() - t
from uniham.io import write_hamiltonian
write_hamiltonian(ham, out, "deeph-dock")
print(json.dumps({"atoms": len(atoms), "orbitals": ham.norb, "wall_s": wall, "timing": timing,
                  "peak_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run(cell: str, what: str, model: str, out: Path, timeout: float) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, cell, what, model, str(out)], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode:
        raise RuntimeError(f"{what} {cell}: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--cells", default="prim,1x1x1,2x1x1")
    ap.add_argument("--scf-up-to", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--work", default="/tmp/uniham-predict-vs-scf")
    ap.add_argument("--out")
    a = ap.parse_args()
    from uniham.io import read_hamiltonian
    from uniham.properties.band_metric import band_metric

    work = Path(a.work)
    rows = []
    for cell in a.cells.split(","):
        pred = [run(cell, "predict", a.model, work / f"{cell}-pred", a.timeout) for _ in range(a.repeats)]
        row = {"cell": cell, "atoms": pred[0]["atoms"], "orbitals": pred[0]["orbitals"],
               "predict_wall_s": statistics.median(r["wall_s"] for r in pred),
               "predict_h0_s": statistics.median(r["timing"].get("h0_s", 0.0) for r in pred),
               "predict_network_s": statistics.median(r["timing"]["network_s"] for r in pred)}
        if row["atoms"] <= a.scf_up_to:
            scf = [run(cell, "scf", a.model, work / f"{cell}-scf", a.timeout) for _ in range(a.repeats)]
            row["scf_wall_s"] = statistics.median(r["wall_s"] for r in scf)
            row["ratio_predict_over_scf"] = row["predict_wall_s"] / row["scf_wall_s"]
            ref, got = read_hamiltonian(work / f"{cell}-scf"), read_hamiltonian(work / f"{cell}-pred")
            row["band_metric_meV"] = band_metric(got, ref)["band_mae_meV"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    measured = [r for r in rows if "scf_wall_s" in r]
    if len(measured) >= 2:
        x, y = np.log([r["atoms"] for r in measured]), np.log([r["scf_wall_s"] for r in measured])
        slope, icpt = np.polyfit(x, y, 1)
        for r in rows:
            if "scf_wall_s" not in r:
                r["scf_wall_s_extrapolated"] = float(np.exp(icpt) * r["atoms"] ** slope)
                r["ratio_predict_over_scf_extrapolated"] = r["predict_wall_s"] / r["scf_wall_s_extrapolated"]
        scaling = {"scf_exponent": float(slope), "fit_over_atoms": [r["atoms"] for r in measured]}
    else:
        scaling = None
    res = {"benchmark": "predict_vs_scf", **run_meta(), "model": a.model, "repeats": a.repeats, "rows": rows,
           "scf_scaling": scaling,
           "note": "diamond Si rattled by 0.02 A; SCF at uniham defaults (DZVP-MOLOPT-SR, k-spacing 0.25 1/A); "
                   "one torch thread, one CP2K process"}
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

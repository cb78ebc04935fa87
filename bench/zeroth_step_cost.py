"""Cost of the zeroth-step H0 (CP2K MAX_SCF 1, 1x1x1 k) next to the SCF, by cell size, on this machine.

Usage: python bench/zeroth_step_cost.py [--cells prim,1x1x1,2x1x1] [--h0-only 2x2x2,4x2x2] [--basis DZVP-MOLOPT-SR-GTH]
       [--repeats 3] [--timeout 1200]

Cells: diamond Si, "prim" the 2-atom cell, "AxBxC" repeats of the 8-atom cubic cell; the
SCF at the default settings (k-spacing 0.25 1/A, EPS_DEFAULT 1e-12, 500 Ry) and H0 at the same settings. Each run
is a separate process (bench/_isolated.py): wall time (median of ``--repeats``), the peak RSS of CP2K. The H0
entries are checked against the SCF's blocks (mean |H - H0|, meV: they must differ). Prints one JSON object.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import run_meta  # noqa: E402

CHILD = r"""
import json, sys, time, resource
import numpy as np
from ase.build import bulk
from uniham.dft.cp2k_engine import Cp2kSettings, run_dft
cell, basis, zeroth = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
atoms = bulk("Si", "diamond", a=5.431) if cell == "prim" else \
    bulk("Si", "diamond", a=5.431, cubic=True).repeat(tuple(int(x) for x in cell.split("x")))
t = time.perf_counter()
ham = run_dft(atoms, Cp2kSettings(basis=basis, zeroth_step=zeroth, n_check_kpoints=0))
wall = time.perf_counter() - t
out = {"atoms": len(atoms), "orbitals": ham.norb, "wall_s": wall, "kmesh": ham.provenance["settings"]["kmesh"],
       "peak_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
np.savez(sys.argv[4], **{",".join(map(str, k)): v for k, v in ham.H.items()})
print(json.dumps(out))
"""


def run(n: str, basis: str, zeroth: bool, timeout: float, tag: str) -> dict:
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, str(n), basis, "1" if zeroth else "0", tag],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300], "wall_s": time.perf_counter() - t}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="prim,1x1x1,2x1x1")
    ap.add_argument("--h0-only", default="2x2x2,4x2x2")
    ap.add_argument("--basis", default="DZVP-MOLOPT-SR-GTH")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--out", help="also write the JSON here, after every cell (a stopped run keeps its rows)")
    args = ap.parse_args()
    rows = []
    tmp = Path("/tmp/uniham-zeroth-cost")
    tmp.mkdir(exist_ok=True)
    plan = [(n, True) for n in args.cells.split(",") if n] + [(n, False) for n in args.h0_only.split(",") if n]
    for n, with_scf in plan:
        row = {"cell": n}
        for what, zeroth in (("h0", True), ("scf", False)):
            if what == "scf" and not with_scf:
                continue
            runs = [run(n, args.basis, zeroth, args.timeout, str(tmp / f"{what}{n}.npz")) for _ in range(args.repeats)]
            ok = [r for r in runs if "error" not in r]
            if not ok:
                row[what] = runs[0]
                continue
            row[what] = ok[0] | {"wall_s_median": statistics.median(r["wall_s"] for r in ok), "n_runs": len(ok)}
            row["atoms"], row["orbitals"] = ok[0]["atoms"], ok[0]["orbitals"]
        if "wall_s_median" in row.get("scf", {}) and "wall_s_median" in row.get("h0", {}):
            row["h0_over_scf"] = row["h0"]["wall_s_median"] / row["scf"]["wall_s_median"]
            h0, scf = np.load(tmp / f"h0{n}.npz"), np.load(tmp / f"scf{n}.npz")
            common = [k for k in h0.files if k in scf.files]
            row["mean_abs_h_minus_h0_meV"] = 1e3 * float(np.mean(np.concatenate([np.abs(scf[k] - h0[k]).ravel() for k in common])))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        if args.out:
            Path(args.out).write_text(json.dumps(run_meta() | {"basis": args.basis, "rows": rows}, indent=1))
    print(json.dumps(run_meta() | {"basis": args.basis, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

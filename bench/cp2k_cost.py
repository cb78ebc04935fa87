"""Where a database structure's CP2K time goes, and what cheaper precision settings would cost in H(R).

For a few typical db1 structures (a one-atom metal on an 11^3 mesh, a rattled Si2 cell, a strained
rocksalt cell) each variant of the db1 settings (``data/recipes/db1.toml``: kspacing 0.3 1/A,
EPS_DEFAULT 1e-10, EPS_SCF 1e-7 Ha, per-element cutoff) is run once and compared with the db1
settings on the blocks both keep within the 10 A store cutoff: max and mean |dH| (meV, after removing
the mean on-site shift, which is a gauge for the model), blocks lost, wall time and SCF cycles. The
top of CP2K's own timing report of the db1 run is printed too.

    python bench/cp2k_cost.py [OUTFILE.json]
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from ase.build import bulk

from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

CUT = 10.0
BASE = Cp2kSettings(kspacing=0.3, eps_default=1e-10, n_check_kpoints=1)
VARIANTS = {"eps_default 1e-8": {"eps_default": 1e-8}, "eps_scf 1e-6": {"eps_scf": 1e-6},
            "kspacing 0.4": {"kspacing": 0.4}}


def structures() -> dict:
    rng = np.random.default_rng(0)
    si = bulk("Si", "diamond", a=5.43)
    si.positions += rng.normal(0, 0.05, si.positions.shape)
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    nacl.set_cell(nacl.cell.array @ np.diag([1.02, 0.99, 1.0]), scale_atoms=True)
    return {"Pd fcc": bulk("Pd", "fcc", a=3.89), "Si2 rattled": si, "NaCl strained": nacl}


def blocks_within(ham) -> dict:
    pos, cell = ham.atoms.positions, ham.atoms.cell.array
    return {k: v for k, v in ham.H.items()
            if np.linalg.norm(pos[k[4]] + np.asarray(k[:3]) @ cell - pos[k[3]]) <= CUT}


def compare(a: dict, b: dict) -> dict:
    common = sorted(set(a) & set(b))
    onsite = [k for k in common if k[:3] == (0, 0, 0) and k[3] == k[4]]
    shift = np.mean([np.mean(np.diag(b[k]) - np.diag(a[k])) for k in onsite])
    d = []
    for k in common:
        x = b[k] - a[k]
        if k in onsite:
            x = x - shift * np.eye(len(x))
        d.append(np.abs(x).ravel())
    d = np.concatenate(d) * 1000
    return {"max_dH_meV": float(d.max()), "mean_dH_meV": float(d.mean()), "onsite_shift_meV": float(shift * 1000),
            "blocks_lost": len(set(a) - set(b)), "blocks_gained": len(set(b) - set(a))}


def timing_report(workdir: Path, n: int = 10) -> list[str]:
    text = (workdir / "uniham.out").read_text()
    rows = text.split("SUBROUTINE")[-1].splitlines()[3:3 + n]
    return [" ".join(r.split()) for r in rows if re.match(r"\s+\w", r)]


def main() -> None:
    out = {"settings": {"base": "db1: kspacing 0.3, eps_default 1e-10, eps_scf 1e-7, cutoff per element"}, "systems": {}}
    for name, atoms in structures().items():
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            ref = run_dft(atoms, replace(BASE, workdir=tmp))
            res = {"base": {"wall_s": round(time.perf_counter() - t, 1), "scf_cycles": ref.provenance["scf"]["cycles"],
                            "kmesh": ref.provenance["settings"]["kmesh"], "timing_top": timing_report(Path(tmp))}}
        a = blocks_within(ref)
        for vname, change in VARIANTS.items():
            t = time.perf_counter()
            ham = run_dft(atoms, replace(BASE, **change))
            res[vname] = {"wall_s": round(time.perf_counter() - t, 1), "scf_cycles": ham.provenance["scf"]["cycles"],
                          "kmesh": ham.provenance["settings"]["kmesh"]} | compare(a, blocks_within(ham))
        out["systems"][name] = res
        print(name, json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "timing_top"} for k, v in res.items()}),
              file=sys.stderr, flush=True)
    text = json.dumps(out, indent=1)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

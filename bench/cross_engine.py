"""PySCF vs CP2K: same structure, same CP2K basis definition, same GTH-PBE pseudopotential, same
Fermi-Dirac smearing and the same Gamma-centred k-mesh; band energies compared at the mesh k-points.

PySCF's eigenvalues come straight from its converged SCF (no interpolation); CP2K's from uniham's
H(R), S(R) of the CP2K run at the same fractional k. Printed: max |difference| over bands within
E_F +- 3 eV, raw and after removing the mean offset (the two codes' average-potential conventions
and grids differ slightly).

    python bench/cross_engine.py [BASIS] [SYSTEM ...]   # prints JSON; default SZV-MOLOPT-SR-GTH Si MgO
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
from ase.build import bulk

from uniham.dft.cp2k_engine import Cp2kSettings
from uniham.dft.cp2k_engine import run_dft as run_cp2k
from uniham.dft.pyscf_engine import DFTSettings, build_cell, run_scf
from uniham.units import HARTREE_EV

SYSTEMS = {"Si": lambda: bulk("Si", "diamond", a=5.431), "MgO": lambda: bulk("MgO", "rocksalt", a=4.212)}


def compare(name: str, basis: str, kmesh=(3, 3, 3), smearing: float = 0.05, ecut_ry: float | None = None,
            match_grid: bool = True) -> dict:
    atoms = SYSTEMS[name]()
    t0 = time.perf_counter()
    ham = run_cp2k(atoms, Cp2kSettings(basis=basis, kmesh=kmesh, smearing=smearing, ecut=ecut_ry, n_check_kpoints=0))
    t_cp2k = time.perf_counter() - t0
    # Same plane-wave grid in both codes: CP2K's CUTOFF (Ry) bounds G^2 (bohr^-2) of the density;
    # PySCF's ke_cutoff (Hartree) bounds G^2/2, so ke_cutoff = CUTOFF/2 Ha. PySCF's own default for
    # Mg's semicore exponents is a 139^3 mesh, which made the MgO run take hours.
    ecut = ham.provenance["settings"]["ecut_Ry"]
    s = DFTSettings(basis=basis, kmesh=kmesh, smearing=smearing,
                    ke_cutoff=ecut / 2 * HARTREE_EV if match_grid else None)
    t0 = time.perf_counter()
    cell = build_cell(atoms, s)
    kmf = run_scf(cell, kmesh, s)
    t_pyscf = time.perf_counter() - t0
    kfrac = cell.get_scaled_kpts(kmf.kpts)
    e_pyscf = np.array(kmf.mo_energy) * HARTREE_EV
    e_cp2k = ham.eigenvalues(kfrac)
    nb = min(e_pyscf.shape[1], e_cp2k.shape[1])
    e_pyscf, e_cp2k = e_pyscf[:, :nb], e_cp2k[:, :nb]
    fermi = ham.fermi_level
    sel = np.abs(e_cp2k - fermi) <= 3.0
    d = e_pyscf[sel] - e_cp2k[sel]
    return {"basis": basis, "kmesh": list(kmesh), "smearing_eV": smearing,
            "cp2k_ecut_Ry": ham.provenance["settings"]["ecut_Ry"],
            "pyscf_ke_cutoff_eV": float(cell.ke_cutoff) * HARTREE_EV if cell.ke_cutoff else None,
            "pyscf_fft_mesh": list(map(int, cell.mesh)),
            "n_bands_compared": int(sel.sum()),
            "max_raw_meV": round(1000 * float(np.abs(d).max()), 3),
            "max_aligned_meV": round(1000 * float(np.abs(d - d.mean()).max()), 3),
            "mean_offset_meV": round(1000 * float(d.mean()), 3),
            "wall_s": {"cp2k": round(t_cp2k, 1), "pyscf_scf": round(t_pyscf, 1)}}


def main(argv: list[str]) -> None:
    basis = argv[0] if argv else "SZV-MOLOPT-SR-GTH"
    names = argv[1:] or list(SYSTEMS)
    out = {}
    for n in names:
        out[n] = compare(n, basis)
        print(json.dumps({n: out[n]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

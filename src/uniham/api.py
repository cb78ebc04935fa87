"""The Python API, mirroring the CLI, for notebooks: structures in, Hamiltonians and their physics out.

    import uniham
    pred = uniham.predict(atoms)  # ASE Atoms, pymatgen Structure or a file path; the shipped default model
    pred = uniham.predict(atoms, model="runs/db1/best.pt")   # or a checkpoint of one's own
    pred.bands()                  # dict as `uniham bands --json` writes it (energies in eV, fractional k)
    pred.dos(broadening=0.1)      # (energies eV, DOS states/eV/cell)
    pred.optics(kmesh=(8, 8, 8))  # chi_ab(omega), eps_r = 1 + chi (SI), omega in eV
    pred.write("out/Si")          # a DeepH-dock folder every `uniham` command reads

``uniham.load(path)`` wraps any Hamiltonian file or folder the readers know (DFT output included) the same way.
Units: eV and Angstrom; k fractional (H(k) = sum_R H(R) exp(2 pi i k.R)); eigen-solves in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uniham.hamiltonian import Hamiltonian


@dataclass
class Result:
    """A Hamiltonian (``.hamiltonian``: H(R), S(R) blocks in eV, the atoms, the basis) with its physics."""

    hamiltonian: Hamiltonian

    @property
    def fermi_level(self) -> float | None:
        """E_F in eV: electron counting for a prediction, the DFT code's own for its output."""
        return self.hamiltonian.fermi_level

    def bands(self, kpath: str = "auto", npoints: int = 120, kpoints=None) -> dict:
        """Band energies (eV, absolute) along ``kpath`` ("auto": seekpath; or labels "G X W L G") or at
        ``kpoints`` (nk, 3) fractional: {"kpoints_frac", "labels", "energies_eV", "fermi_level_eV", "gap"}."""
        from uniham.properties.bands import bands_result
        from uniham.properties.kpath import auto_labels, build_path, parse_kpath

        if kpoints is not None:
            kpts, labels = np.asarray(kpoints, float).reshape(-1, 3), []
        else:
            segs = auto_labels(self.hamiltonian.atoms) if kpath == "auto" else parse_kpath(kpath)
            kpts, labels = build_path(self.hamiltonian.atoms, segs, npoints)
        return bands_result(self.hamiltonian, kpts, labels, self.fermi_level)

    def dos(self, kmesh=None, broadening: float = 0.1, energies=None) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian-broadened DOS (states/eV per cell, spin included) on a Gamma-centred ``kmesh`` (default: spacing
        0.15 1/A) at ``energies`` (eV; default the whole spectrum in 0.01 eV steps)."""
        from uniham.properties.bands import gaussian_dos, mesh_eigenvalues

        k, eigs = mesh_eigenvalues(self.hamiltonian, kmesh)
        if energies is None:
            energies = np.arange(eigs.min() - 5 * broadening, eigs.max() + 5 * broadening, 0.01)
        energies = np.asarray(energies, float)
        return energies, gaussian_dos(eigs, np.ones(len(k)), energies, broadening)

    def optics(self, kmesh=None, omega=None, broadening: float = 0.1, components=("xx", "yy", "zz")) -> dict:
        """Independent-particle chi_ab(omega) (Kubo-Greenwood, SI, dimensionless) and eps_r = 1 + chi at photon
        energies ``omega`` (eV, default 0..20 in 0.01) on ``kmesh`` (default: spacing 0.15 1/A)."""
        from uniham.properties.kpath import auto_mesh
        from uniham.properties.optics import susceptibility

        omega = np.arange(0.0, 20.0 + 1e-9, 0.01) if omega is None else np.asarray(omega, float)
        mesh = kmesh or auto_mesh(self.hamiltonian.atoms)
        return susceptibility(self.hamiltonian, mesh, omega, broadening, components=components, progress=False)

    def write(self, path) -> None:
        """Write the Hamiltonian as a DeepH-dock folder (POSCAR, info.json, hamiltonian.h5, overlap.h5)."""
        from uniham.io import write_hamiltonian

        write_hamiltonian(self.hamiltonian, path, "deeph-dock")


def predict(structure, model=None, fermi: bool = True) -> Result:
    """The predicted Hamiltonian of ``structure`` (ASE ``Atoms``, pymatgen ``Structure``/``Molecule`` or a
    structure file) with ``model`` (None: the shipped default; a shipped model's name; or a checkpoint path);
    E_F by electron counting when ``fermi``. An experimental shipped model warns once (``UserWarning``)."""
    import warnings

    from uniham.model.predict import predict as _predict
    from uniham.pretrained import notice
    from uniham.structure import read_structure

    res = Result(_predict(read_structure(structure), model, fermi=fermi))
    prov = res.hamiltonian.provenance
    for line in [notice(prov.get("shipped_model")), *prov.get("warnings", [])]:
        if line:
            warnings.warn(line, stacklevel=2)
    return res


def load(path, fmt: str | None = None) -> Result:
    """Any Hamiltonian file or folder uniham reads (DeepH-dock, legacy DeepH, SIESTA, ABACUS, FHI-aims, predictions)."""
    from uniham.io import read_hamiltonian

    return Result(read_hamiltonian(path, fmt))

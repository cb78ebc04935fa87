"""Periodic Kohn-Sham DFT with PySCF (GTH pseudopotentials, GTH Gaussian bases) -> H(R), S(R).

Method:
1. SCF on a Gamma-centred k-mesh (``KRKS``; FFT or multigrid density fitting).
2. Non-self-consistent H(k) = T + V_pp + J + V_xc on a denser "interpolation" mesh
   (``get_hcore(cell, k)`` + ``get_veff(cell, dm, kpts=scf_kpts, kpts_band=k)``), using
   H(-k) = H(k)* to halve the work.
3. H(R) = (1/N) sum_k H(k) e^{-2 pi i k.R}. PySCF's Bloch sum A(k) = sum_R e^{+ik.R} A(0,R) with
   A(0,R)_{mu nu} = <mu(r)|A|nu(r-R)> is exactly uniham's convention (lattice gauge, fractional k).
   Each (i, j, R) is folded into the Wigner-Seitz supercell of the mesh *per atom pair* (the image
   with the shortest |tau_j + R - tau_i|, shared equally among equidistant images).
4. S(R) straight from analytic overlap integrals between the home cell and the cell shifted by R.
5. Truncation error: bands from the truncated H(R), S(R) vs PySCF's own H(k), S(k) at random
   off-mesh k-points, for bands up to E_F + 5 eV, recorded in the provenance.

Energies in eV. The energy zero is PySCF's (average electrostatic potential of the cell = 0).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms

from uniham.basis import OrbitalBasis, code_to_uniham_basis
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.properties.kpath import auto_mesh, monkhorst_pack
from uniham.structure import ensure_box
from uniham.units import BOHR_ANG, HARTREE_EV

log = logging.getLogger(__name__)


@dataclass
class DFTSettings:
    """Settings of one PySCF run. kmesh/interp_mesh None = automatic (see :func:`choose_meshes`)."""

    basis: str = "gth-szv"
    xc: str = "pbe"
    pseudo: str = "gth-pbe"
    kmesh: tuple[int, int, int] | None = None
    interp_mesh: tuple[int, int, int] | None = None
    cutoff: float | None = None  # Angstrom; None = every block the interpolation mesh resolves
    smearing: float = 0.0  # eV, Fermi-Dirac
    ke_cutoff: float | None = None  # eV; None = PySCF's choice for the basis
    density_fit: str = "fft"  # "fft" or "multigrid"
    conv_tol: float = 1e-10  # Hartree
    max_cycle: int = 100
    kspacing_scf: float = 0.7  # 1/Angstrom (2 pi included) for the automatic SCF mesh
    interp_range: float = 24.0  # Angstrom: the automatic interpolation supercell spans at least this
    n_check_kpoints: int = 3
    seed: int = 0
    # no SCF: H0 = hcore + V_eff of PySCF's superposition of (occupation-averaged, spherical) atomic densities,
    # get_init_guess(key="atom"); as CP2K's zeroth step, with PySCF's atoms and energy zero
    zeroth_step: bool = False


def build_cell(atoms: Atoms, s: DFTSettings):
    """PySCF cell of ``atoms``, which must have three cell vectors (see :func:`ensure_box`)."""
    from pyscf.pbc import gto

    cell = gto.Cell()
    cell.atom = [(a.symbol, tuple(a.position)) for a in atoms]
    cell.a = atoms.cell.array
    cell.unit = "A"
    cell.basis, cell.pseudo = _basis_and_pseudo(atoms.get_chemical_symbols(), s)
    cell.verbose = 0
    if s.ke_cutoff:
        cell.ke_cutoff = s.ke_cutoff / HARTREE_EV
    try:
        cell.build()
    except Exception as exc:  # PySCF raises KeyError/RuntimeError for missing basis/pseudo data
        missing = [el for el in dict.fromkeys(atoms.get_chemical_symbols())]
        raise UnihamError(f"PySCF cannot build the cell with basis {s.basis!r} / pseudo {s.pseudo!r} "
                          f"for {', '.join(missing)}: {type(exc).__name__}: {exc}") from None
    return cell


def _basis_and_pseudo(symbols, s: DFTSettings):
    """PySCF basis/pseudo specs. A CP2K basis name (e.g. ``SZV-MOLOPT-SR-GTH``) takes the definition from
    CP2K's data files and the GTH potential with the basis' valence, so both engines use the same basis."""
    if not (s.basis.upper().endswith("-GTH") and "MOLOPT" in s.basis.upper()):
        return s.basis, s.pseudo
    from uniham.dft.cp2k_basis import load_basis, potential_name

    bases = {x: load_basis(x, s.basis) for x in dict.fromkeys(symbols)}
    return ({x: b.pyscf_basis() for x, b in bases.items()},
            {x: potential_name(b, s.xc).lower() for x, b in bases.items()})


def atom_bases(cell) -> tuple[list[OrbitalBasis], np.ndarray]:
    """Per-atom OrbitalBasis in PySCF's AO order (contractions, then m) and AO offsets (n_atoms+1,)."""
    bases, offsets = [], [0]
    for a, (sh0, sh1, ao0, ao1) in enumerate(cell.aoslice_by_atom()):
        shells = []
        for b in range(sh0, sh1):
            shells += [int(cell.bas_angular(b))] * int(cell.bas_nctr(b))
        bases.append(OrbitalBasis(tuple(shells)))
        offsets.append(int(ao1))
    return bases, np.array(offsets)


def choose_meshes(atoms: Atoms, s: DFTSettings) -> tuple[tuple, tuple]:
    kmesh = s.kmesh or auto_mesh(atoms, s.kspacing_scf)
    if s.interp_mesh:
        return kmesh, s.interp_mesh
    cell = atoms.cell.array
    vol = abs(np.linalg.det(cell))
    mesh = []
    for ax in range(3):
        if not atoms.pbc[ax]:
            mesh.append(1)
            continue
        height = vol / np.linalg.norm(np.cross(cell[(ax + 1) % 3], cell[(ax + 2) % 3]))
        mesh.append(max(kmesh[ax], int(np.ceil(s.interp_range / height))))
    return kmesh, tuple(mesh)


def run_scf(cell, kmesh, s: DFTSettings):
    from pyscf.pbc import dft, scf

    kpts = cell.make_kpts(kmesh)
    kmf = dft.KRKS(cell, kpts)
    kmf.xc = s.xc
    kmf.conv_tol = s.conv_tol
    kmf.max_cycle = s.max_cycle
    kmf.verbose = 0
    if s.density_fit == "multigrid":
        from pyscf.pbc.dft import multigrid

        kmf.with_df = multigrid.MultiGridFFTDF(cell, kpts)
    if s.smearing > 0:
        kmf = scf.addons.smearing_(kmf, sigma=s.smearing / HARTREE_EV, method="fermi")
    elif cell.nelectron % 2:
        raise UnihamError(f"{cell.nelectron} electrons per cell (odd): spinless DFT needs --smearing (spin-polarized runs are not supported yet)")
    kmf.kernel()
    if not kmf.converged:
        raise UnihamError(f"SCF did not converge in {s.max_cycle} cycles (conv_tol {s.conv_tol} Ha); "
                          "try --smearing, a denser --kmesh or a larger --ke-cutoff")
    return kmf


def hk_at(kmf, dm, kfrac: np.ndarray) -> np.ndarray:
    """PySCF's H(k) (nk, nao, nao) in Hartree at fractional k-points."""
    cell = kmf.cell
    kabs = cell.get_abs_kpts(np.asarray(kfrac).reshape(-1, 3))
    hcore = np.asarray(kmf.get_hcore(cell, kabs))
    veff = np.asarray(kmf.get_veff(cell, dm, kpts=kmf.kpts, kpts_band=kabs))
    return (hcore + veff).reshape(len(kabs), cell.nao, cell.nao)


def interpolation_hk(kmf, dm, mesh, progress: bool, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """H(k) on the full mesh (nk, nao, nao), computed on half of it via H(-k) = H(k)*."""
    from tqdm import tqdm

    kfrac = monkhorst_pack(mesh)
    ints = np.rint(kfrac * mesh).astype(int)
    index = {tuple(v): n for n, v in enumerate(ints)}
    partner = np.array([index[tuple((-v) % mesh)] for v in ints])
    todo = [n for n in range(len(kfrac)) if n <= partner[n]]
    hk = np.zeros((len(kfrac), kmf.cell.nao, kmf.cell.nao), dtype=complex)
    # each get_veff call rebuilds the density (~4 s for Si2): few large chunks, still a progress bar
    chunk = chunk or max(32, -(-len(todo) // 4))
    bar = tqdm(total=len(todo), desc="H(k) on interpolation mesh", unit="k", disable=not progress, leave=False)
    for start in range(0, len(todo), chunk):
        sel = todo[start:start + chunk]
        hk[sel] = hk_at(kmf, dm, kfrac[sel])
        bar.update(len(sel))
    bar.close()
    for n in range(len(kfrac)):
        if n > partner[n]:
            hk[n] = hk[partner[n]].conj()
    return kfrac, hk


def fourier_blocks(hk: np.ndarray, kfrac: np.ndarray, mesh, atoms: Atoms, offsets: np.ndarray,
                   cutoff: float | None) -> tuple[dict, float]:
    """H(R) blocks from H(k) on the mesh, folded per atom pair into the Wigner-Seitz supercell.

    Returns ({(R1,R2,R3,i,j): block (complex->real)}, max |imaginary part| dropped).
    """
    mesh = np.array(mesh)
    rbase = np.stack(np.meshgrid(*[np.arange(n) for n in mesh], indexing="ij"), -1).reshape(-1, 3)
    phase = np.exp(-2j * np.pi * kfrac @ rbase.T)  # (nk, nR)
    hr = np.einsum("kr,kab->rab", phase, hk) / len(kfrac)
    max_imag = float(np.abs(hr.imag).max())
    hr = hr.real
    cell = atoms.cell.array
    pos = atoms.positions
    shifts = np.stack(np.meshgrid(*[np.arange(-2, 3) if n > 1 else np.array([0]) for n in mesh], indexing="ij"),
                      -1).reshape(-1, 3)
    sep = pos[None, :, None, :] - pos[:, None, None, :]  # (na, na, 1, 3): tau_j - tau_i
    blocks: dict = {}
    for r_index, r0 in enumerate(rbase):
        cands = r0[None, :] + shifts * mesh[None, :]  # (ns, 3) images of R0 in the supercell
        d = np.linalg.norm(sep + (cands @ cell)[None, None], axis=-1)  # (na, na, ns)
        dmin = d.min(axis=-1)
        for i, j in zip(*np.nonzero(dmin <= (np.inf if cutoff is None else cutoff + 1e-8))):
            best = np.nonzero(d[i, j] <= dmin[i, j] + 1e-5)[0]
            blk = hr[r_index, offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] / len(best)
            for b in best:
                blocks[tuple(int(x) for x in cands[b]) + (int(i), int(j))] = blk
    return blocks, max_imag


def overlap_blocks(cell, keys, offsets: np.ndarray) -> dict:
    """S_ij(R) from analytic integrals <home cell AOs | AOs shifted by R>, for the given keys."""
    from pyscf import gto
    from pyscf.gto.mole import PTR_COORD

    shifted = cell.copy(deep=True)
    ptr = shifted._atm[:, PTR_COORD]
    home = cell.atom_coords()  # Bohr
    lattice = cell.lattice_vectors()  # Bohr, rows
    out = {}
    for r in sorted({k[:3] for k in keys}):
        coords = home + np.asarray(r) @ lattice
        for a in range(cell.natm):
            shifted._env[ptr[a]:ptr[a] + 3] = coords[a]
        s = gto.intor_cross("int1e_ovlp", cell, shifted)
        for key in (k for k in keys if k[:3] == r):
            i, j = key[3], key[4]
            out[key] = s[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]]
    return out


def check_truncation(ham: Hamiltonian, kmf, dm, u_full: np.ndarray, fermi: float, s: DFTSettings) -> dict:
    """Bands of the truncated H(R), S(R) vs PySCF's own H(k), S(k) at random off-mesh k."""
    import scipy.linalg

    if s.n_check_kpoints <= 0:
        return {"kpoints_frac": [], "max_band_error_meV": float("nan"), "window": "not checked"}
    rng = np.random.default_rng(s.seed)
    kfrac = rng.uniform(-0.5, 0.5, size=(s.n_check_kpoints, 3)) * ham.atoms.pbc
    hks = hk_at(kmf, dm, kfrac) * HARTREE_EV
    sks = np.asarray(kmf.cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kmf.cell.get_abs_kpts(kfrac)))
    sks = sks.reshape(len(kfrac), kmf.cell.nao, kmf.cell.nao)
    worst = 0.0
    for k, hk, sk in zip(kfrac, hks, sks):
        ref = scipy.linalg.eigvalsh(u_full @ hk @ u_full.T, u_full @ sk @ u_full.T)
        try:
            ours = ham.eigh(k)
        except UnihamError:
            log.warning("truncated S(k) is not positive definite: the interpolation mesh is too coarse")
            return {"kpoints_frac": kfrac.tolist(), "max_band_error_meV": float("inf"),
                    "window": "E <= E_F + 5 eV", "note": "S(k) of the truncated S(R) not positive definite"}
        sel = ref <= fermi + 5.0
        worst = max(worst, float(np.abs(ours[sel] - ref[sel]).max()))
    return {"kpoints_frac": kfrac.tolist(), "max_band_error_meV": 1000 * worst, "window": "E <= E_F + 5 eV"}


def run_dft(atoms: Atoms, settings: DFTSettings | None = None, progress: bool = False) -> Hamiltonian:
    """Run PySCF DFT on ``atoms`` and return the real-space Hamiltonian (eV, uniham order)."""
    return run_dft_with_scf(atoms, settings, progress)[0]


def run_dft_with_scf(atoms: Atoms, settings: DFTSettings | None = None, progress: bool = False):
    """As :func:`run_dft`, also returning PySCF's converged KRKS object and the (nao, nao) matrix
    U mapping PySCF's AO order to uniham's (``M_uniham = U M_pyscf U^T``)."""
    import pyscf

    import uniham

    s = settings or DFTSettings()
    t0 = time.perf_counter()
    box = ensure_box(atoms)  # molecules and slabs get vacuum cell vectors; pbc is kept
    cell = build_cell(box, s)
    kmesh, imesh = choose_meshes(box, s)
    log.info("SCF on %s k-mesh, interpolation mesh %s", kmesh, imesh)
    if s.zeroth_step:
        from pyscf.pbc import dft

        kmf = dft.KRKS(cell, cell.make_kpts(kmesh))
        kmf.xc, kmf.verbose = s.xc, 0
        if s.density_fit == "multigrid":
            from pyscf.pbc.dft import multigrid

            kmf.with_df = multigrid.MultiGridFFTDF(cell, kmf.kpts)
        dm = kmf.get_init_guess(cell, key="atom")
    else:
        kmf = run_scf(cell, kmesh, s)
        dm = kmf.make_rdm1()
    t_scf = time.perf_counter() - t0
    kfrac, hk = interpolation_hk(kmf, dm, imesh, progress)
    t_hk = time.perf_counter() - t0 - t_scf
    bases, offsets = atom_bases(cell)
    blocks, max_imag = fourier_blocks(hk * HARTREE_EV, kfrac, imesh, box, offsets, s.cutoff)
    sblocks = overlap_blocks(cell, list(blocks), offsets)
    u = [code_to_uniham_basis("pyscf", b) for b in bases]
    u_full = np.zeros((cell.nao, cell.nao))
    for i, ui in enumerate(u):
        u_full[offsets[i]:offsets[i + 1], offsets[i]:offsets[i + 1]] = ui
    H = {k: u[k[3]] @ b @ u[k[4]].T for k, b in blocks.items()}
    S = {k: u[k[3]] @ b @ u[k[4]].T for k, b in sblocks.items()}
    basis = {}
    for sym, b in zip(atoms.get_chemical_symbols(), bases):
        basis.setdefault(sym, b)
    fermi = float("nan") if s.zeroth_step else float(np.max(kmf.get_fermi())) * HARTREE_EV
    ham = Hamiltonian(box, basis, H, S, fermi, float(cell.nelectron), False)
    truncation = check_truncation(ham, kmf, dm, u_full, fermi if np.isfinite(fermi) else np.inf, s)
    ham.provenance = {
        "engine": "pyscf",
        "versions": {"pyscf": pyscf.__version__, "uniham": uniham.__version__, "numpy": np.__version__},
        "settings": asdict(s) | {"kmesh": list(kmesh), "interp_mesh": list(imesh)},
        "ke_cutoff_eV": float(cell.ke_cutoff) * HARTREE_EV if cell.ke_cutoff else None,
        "fft_mesh": list(map(int, cell.mesh)),
        "hamiltonian": "zeroth-step H0 (superposed atomic densities, no SCF)" if s.zeroth_step else "SCF",
        "scf": {"zeroth_step": True, "converged": None, "cycles": 0} if s.zeroth_step else
               {"converged": bool(kmf.converged), "cycles": int(getattr(kmf, "cycles", -1)),
                "energy_eV": float(kmf.e_tot) * HARTREE_EV, "conv_tol_Ha": s.conv_tol},
        "fourier": {"max_imaginary_eV": max_imag, "n_blocks": len(H)},
        "truncation": truncation,
        "energy_zero": "PySCF periodic convention: average electrostatic potential of the cell is zero",
        "timing": {"scf_s": t_scf, "interpolation_s": t_hk, "total_s": time.perf_counter() - t0},
        "bohr_angstrom": BOHR_ANG,
    }
    ham.validate()
    return ham, kmf, u_full


"""Periodic Kohn-Sham DFT with CP2K (Quickstep, GTH pseudopotentials, MOLOPT bases) -> H(R), S(R).

CP2K writes the real-space Kohn-Sham and overlap matrices of every lattice image itself
(``&KS_CSR_WRITE`` / ``&S_CSR_WRITE`` with ``REAL_SPACE T``); nothing is Fourier transformed here.

Facts this module relies on (CP2K 2023.1, checked by ``tests/test_dft_cp2k.py``):

* One file per image, ``<PROJECT>-KS_SPIN_1_R_<ic>-1_0.csr`` and ``<PROJECT>-S_SPIN_1_R_<ic>-1_0.csr``;
  the map image index ic -> R (integers, in lattice vectors) is printed only in the main output after
  ``KS CSR write| N periodic images``. ``BINARY T`` files are Fortran sequential records of
  (int32 row, int32 col, float64 value), 1-based over the full AO matrix; values in Hartree.
* Convention: M_R[mu, nu] = <phi_mu(r - tau_mu)|M|phi_nu(r - tau_nu - R)>, i.e. uniham's
  (R1,R2,R3,i,j) block with H(k) = sum_R H(R) e^{2 pi i k.R}; H(-R) = H(R)^T.
* A Gamma-only run writes the image-folded sum: a k-point mesh (``&KPOINTS``) is always used.
  Meshes are Gamma-centred and odd (shifted even meshes break fcc symmetry by 5-8 meV).
* AO order: CP2K's (see :mod:`uniham.dft.cp2k_basis`) = uniham's; no conversion.
* Throughput: one single-threaded job per core (OMP_NUM_THREADS=1); when threads > 1 we set
  OMP_WAIT_POLICY=PASSIVE (busy-waiting threads were 10x slower on a loaded machine).

Energies in eV (Hartree -> eV with CODATA 2018, :data:`uniham.units.HARTREE_EV`; CP2K prints eV with
CODATA 2006, a relative difference of 9e-8). The energy zero is CP2K's (average electrostatic potential).
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from uniham.dft.cp2k_basis import (
    DEFAULT_BASIS,
    DEFAULT_BASIS_FILE,
    DEFAULT_POTENTIAL_FILE,
    Cp2kBasis,
    data_dir,
    load_basis,
    potential_name,
    potential_radius,
)
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.properties.kpath import auto_mesh
from uniham.structure import ensure_box
from uniham.units import HARTREE_EV

log = logging.getLogger(__name__)

INSTALL_HINT = ("install CP2K (Debian/Ubuntu: `apt-get install cp2k`; conda: "
                "`conda install -c conda-forge cp2k`) or point UNIHAM_CP2K at the executable")


@dataclass
class Cp2kSettings:
    """Settings of one CP2K run. ``None`` = automatic (see :func:`choose_cutoff`, :func:`choose_kmesh`)."""

    basis: str = DEFAULT_BASIS
    basis_file: str = DEFAULT_BASIS_FILE
    xc: str = "PBE"
    kmesh: tuple[int, int, int] | None = None
    kspacing: float = 0.25  # 1/Angstrom (2 pi included): automatic mesh, rounded up to odd
    ecut: float | None = None  # Rydberg, finest multigrid; None = per-element rule
    rel_cutoff: float = 60.0  # Rydberg
    smearing: float = 0.05  # eV, Fermi-Dirac kT; always on (metals and insulators alike)
    cutoff: float | None = None  # Angstrom: keep blocks with |tau_j + R - tau_i| <= cutoff; None = all written
    eps_default: float = 1e-12
    eps_scf: float = 1e-7  # Hartree, CP2K's density-matrix criterion
    max_scf: int = 200
    mixing_alpha: float = 0.3
    symmetry: bool = False  # k-point reduction by spglib (time reversal is always used)
    threads: int = 1
    executable: str | None = None
    n_check_kpoints: int = 3  # random off-mesh k compared with CP2K's own band printout
    seed: int = 0
    workdir: str | None = None  # keep CP2K's files here; None = temporary directory, removed
    zeroth_step: bool = False  # H0: the Kohn-Sham matrix of the superposed atomic densities, no SCF (see run_dft)
    # > 0: stop after this many SCF iterations from the atomic guess and keep the last Kohn-Sham matrix built
    # (2: H of the density after one diagonalization of H0 and one mixing step, on the SCF's k-mesh); not converged
    scf_steps: int = 0


def find_cp2k(executable: str | None = None) -> str:
    """Path of the CP2K executable: ``executable``, ``$UNIHAM_CP2K``, or cp2k.ssmp/.psmp/cp2k on PATH."""
    for cand in [executable, os.environ.get("UNIHAM_CP2K"), "cp2k.ssmp", "cp2k.psmp", "cp2k"]:
        if cand:
            path = shutil.which(cand)
            if path:
                return path
            if executable and cand == executable:
                raise UnihamError(f"CP2K executable {executable!r} not found; {INSTALL_HINT}")
    raise UnihamError(f"CP2K not found on PATH (cp2k.ssmp, cp2k.psmp, cp2k); {INSTALL_HINT}")


@functools.lru_cache(maxsize=8)
def cp2k_version(executable: str) -> str:
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnihamError(f"cannot run {executable}: {exc}") from None
    m = re.search(r"CP2K version\s+(\S+)", out)
    return m.group(1) if m else "unknown"


def element_bases(symbols, s: Cp2kSettings) -> dict[str, Cp2kBasis]:
    """Basis of every element present, with a clear error for elements it does not cover."""
    out, missing = {}, []
    for sym in dict.fromkeys(symbols):
        try:
            out[sym] = load_basis(sym, s.basis, s.basis_file)
            potential_name(out[sym], s.xc)
        except UnihamError:
            missing.append(sym)
    if missing:
        raise UnihamError(f"CP2K basis {s.basis} with a GTH-{s.xc.upper()} pseudopotential is not available for "
                          f"{', '.join(missing)}")
    return out


def choose_cutoff(bases: dict[str, Cp2kBasis], s: Cp2kSettings) -> float:
    """Finest-grid cutoff (Ry): ``s.ecut``, else from the hardest pseudopotential present.

    Rule: alpha = 1 / (2 r_min^2) with r_min the smallest GTH radius (Bohr) of the element's potential,
    ecut = 21 * alpha rounded up to 100 Ry, clipped to [500, 1200]. Mg (2s2p semicore, r_min 0.10 Bohr)
    gets 1000 Ry, Na 700 Ry, everything else 500 Ry. Measured by bench/cp2k_convergence.py (see there).
    """
    if s.ecut:
        return float(s.ecut)
    alpha = max(1.0 / (2.0 * potential_radius(x, potential_name(b, s.xc)) ** 2) for x, b in bases.items())
    return float(min(1200.0, max(500.0, 100.0 * np.ceil(21.0 * alpha / 100.0))))


def choose_kmesh(atoms: Atoms, s: Cp2kSettings) -> tuple[int, int, int]:
    """``s.kmesh`` or the automatic Gamma-centred mesh with spacing ``s.kspacing``, rounded up to odd."""
    if s.kmesh:
        mesh = tuple(int(n) if p else 1 for n, p in zip(s.kmesh, atoms.pbc))  # 1 along vacuum
    else:
        mesh = auto_mesh(atoms, s.kspacing)
        mesh = tuple(n + 1 - n % 2 if p else 1 for n, p in zip(mesh, atoms.pbc))
    if any(n % 2 == 0 for n in mesh):
        log.warning("even k-mesh %s: CP2K's Monkhorst-Pack mesh is then shifted off Gamma", mesh)
    return mesh


def _input(box: Atoms, bases: dict[str, Cp2kBasis], s: Cp2kSettings, kmesh, ecut: float, n_added: int,
           check_k: np.ndarray, cp2k_year: int = 2023) -> str:
    """CP2K input text. With ``s.zeroth_step``: one SCF iteration from the atomic guess (``MAX_SCF 1``,
    ``SCF_GUESS ATOMIC``), whose Kohn-Sham matrix, built before the first diagonalization, is what
    ``KS_CSR_WRITE`` prints; from CP2K 2024.1 on an unconverged SCF aborts before the prints unless
    ``IGNORE_CONVERGENCE_FAILURE`` is set (2023.1 only warns and has no such keyword)."""
    basis_file = s.basis_file if os.path.isabs(s.basis_file) else str(data_dir() / s.basis_file)
    return f"""&GLOBAL
  PROJECT uniham
  RUN_TYPE ENERGY
  PRINT_LEVEL LOW
&END GLOBAL
&FORCE_EVAL
  METHOD Quickstep
  &DFT
    BASIS_SET_FILE_NAME {basis_file}
    POTENTIAL_FILE_NAME {data_dir() / DEFAULT_POTENTIAL_FILE}
    &MGRID
      CUTOFF {ecut:.1f}
      REL_CUTOFF {s.rel_cutoff:.1f}
    &END MGRID
    &QS
      EPS_DEFAULT {s.eps_default:.3E}
    &END QS
    &KPOINTS
      SCHEME MONKHORST-PACK {kmesh[0]} {kmesh[1]} {kmesh[2]}
      SYMMETRY {"T" if s.symmetry else "F"}
      FULL_GRID F
    &END KPOINTS
{_scf_section(s, n_added, cp2k_year)}    &XC
      &XC_FUNCTIONAL {s.xc.upper()}
      &END XC_FUNCTIONAL
    &END XC
    &PRINT
      &KS_CSR_WRITE
        REAL_SPACE T
        BINARY T
      &END KS_CSR_WRITE
      &S_CSR_WRITE
        REAL_SPACE T
        BINARY T
      &END S_CSR_WRITE
{_band_section(check_k, n_added)}    &END PRINT
  &END DFT
{_subsys_section(box, bases, s.xc)}&END FORCE_EVAL
"""


def _scf_section(s: Cp2kSettings, n_added: int, cp2k_year: int) -> str:
    """&SCF: Fermi-Dirac smearing at ``s.smearing`` eV, Broyden mixing; one step from the atomic guess for H0."""
    zeroth = ""
    if s.zeroth_step or s.scf_steps:
        zeroth = "      SCF_GUESS ATOMIC\n" + ("      IGNORE_CONVERGENCE_FAILURE T\n" if cp2k_year >= 2024 else "")
    kt_kelvin = s.smearing / 8.617333262e-5
    return f"""    &SCF
      EPS_SCF {s.eps_scf:.3E}
      MAX_SCF {1 if s.zeroth_step else s.scf_steps or s.max_scf}
{zeroth}      ADDED_MOS {n_added}
      &SMEAR ON
        METHOD FERMI_DIRAC
        ELECTRONIC_TEMPERATURE [K] {kt_kelvin:.4f}
      &END SMEAR
      &MIXING
        METHOD BROYDEN_MIXING
        ALPHA {s.mixing_alpha}
        NBROYDEN 8
      &END MIXING
    &END SCF
"""


def _band_section(check_k: np.ndarray, n_added: int) -> str:
    """&BAND_STRUCTURE at the check k-points (fractional, B_VECTOR units), or nothing without any."""
    if not len(check_k):
        return ""
    # one set per point: with NPOINTS 0 CP2K prints only the first point of a set
    sets = "".join(f"""        &KPOINT_SET
          UNITS B_VECTOR
          NPOINTS 0
          SPECIAL_POINT {k[0]:.10f} {k[1]:.10f} {k[2]:.10f}
        &END KPOINT_SET
""" for k in check_k)
    return f"""      &BAND_STRUCTURE
        ADDED_MOS {n_added}
        FILE_NAME check.bs
{sets}      &END BAND_STRUCTURE
"""


def _subsys_section(box: Atoms, bases: dict[str, Cp2kBasis], xc: str) -> str:
    """&SUBSYS: the cell (Angstrom, periodic in x, y, z), the coordinates and one &KIND per element."""
    cell = box.cell.array
    kinds = "\n".join(
        f"    &KIND {sym}\n      BASIS_SET {b.name}\n      POTENTIAL {potential_name(b, xc)}\n    &END KIND"
        for sym, b in bases.items())
    coords = "\n".join(f"      {a.symbol} {a.position[0]:.12f} {a.position[1]:.12f} {a.position[2]:.12f}"
                       for a in box)
    return f"""  &SUBSYS
    &CELL
      A {cell[0, 0]:.12f} {cell[0, 1]:.12f} {cell[0, 2]:.12f}
      B {cell[1, 0]:.12f} {cell[1, 1]:.12f} {cell[1, 2]:.12f}
      C {cell[2, 0]:.12f} {cell[2, 1]:.12f} {cell[2, 2]:.12f}
      PERIODIC XYZ
    &END CELL
    &COORD
{coords}
    &END COORD
{kinds}
  &END SUBSYS
"""


class Cp2kInterrupted(UnihamError):
    """CP2K was killed from outside (SIGTERM, SIGKILL, ...): the run says nothing about the structure."""


_RUNNING: set[subprocess.Popen] = set()  # the CP2K processes this Python process has running now
_RUNNING_LOCK = threading.Lock()


def stop_running() -> int:
    """Kill every CP2K run this process started and that is still running (a stopping build calls it in
    each of its workers); their ``run_dft`` raises :class:`Cp2kInterrupted`. Returns how many were killed."""
    with _RUNNING_LOCK:
        procs = [p for p in _RUNNING if p.poll() is None]
    for p in procs:
        p.kill()
    return len(procs)


def _run(exe: str, workdir: Path, s: Cp2kSettings, progress: bool) -> str:
    """Run CP2K in ``workdir``; return the main output text. A progress bar follows the SCF steps."""
    from tqdm import tqdm

    env = dict(os.environ, OMP_NUM_THREADS=str(s.threads))
    if s.threads > 1:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out_path = workdir / "uniham.out"
    with open(workdir / "stderr.txt", "w") as err:
        proc = subprocess.Popen([exe, "-i", "uniham.inp", "-o", "uniham.out"], cwd=workdir, env=env,
                                stdout=err, stderr=subprocess.STDOUT)
        with _RUNNING_LOCK:
            _RUNNING.add(proc)
        bar = tqdm(total=s.max_scf, desc="CP2K SCF", unit="step", disable=not progress, leave=False)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if progress and out_path.exists():
                    steps = len(re.findall(r"^\s+\d+ \S+/Diag\.", out_path.read_text(errors="replace"),
                                           re.MULTILINE))
                    bar.update(max(0, steps - bar.n))
        except BaseException:
            proc.kill()
            raise
        finally:
            bar.close()
            proc.wait()
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
    text = out_path.read_text(errors="replace") if out_path.exists() else ""
    if proc.returncode < 0:  # killed by a signal (a stopped build, a time limit): not the structure's fault
        raise Cp2kInterrupted(f"CP2K was stopped by signal {-proc.returncode} before it finished")
    if proc.returncode != 0 or "ABORT" in text:
        m = re.search(r"\[ABORT\].*\n((?: \*.*\n)+)", text)
        # the message sits right of CP2K's ASCII-art box (first 15 columns)
        reason = " ".join(l[15:].rstrip(" *") for l in m.group(1).splitlines()) if m else \
            (workdir / "stderr.txt").read_text(errors="replace").strip()[-300:]
        raise UnihamError(f"CP2K failed (exit {proc.returncode}): {' '.join(reason.split()) or 'no message'}")
    return text


def cp2k_wrap_shift(box) -> np.ndarray:
    """(N, 3) integers n_j: CP2K maps every atom into the cell as s_j - ANINT(s_j) (scaled coordinates in
    [-1/2, 1/2], Fortran ANINT rounds halves away from zero), and its image index R of a block (i, j)
    refers to those wrapped positions. uniham's R refers to the positions as given, so
    R_uniham = R_cp2k - n_j + n_i (:func:`to_uniham_images`). The bands are the same either way (a phase
    per atom), which is why CP2K's own band printout cannot catch a wrong R; S from the geometry can."""
    sc = box.cell.scaled_positions(box.positions)
    return (np.sign(sc) * np.floor(np.abs(sc) + 0.5)).astype(int)


def to_uniham_images(blocks: dict, shift: np.ndarray) -> dict:
    """Relabel {(R1,R2,R3,i,j): block} from CP2K's wrapped-atom image convention to uniham's."""
    out = {}
    for (r1, r2, r3, i, j), b in blocks.items():
        d = shift[i] - shift[j]
        out[(r1 + int(d[0]), r2 + int(d[1]), r3 + int(d[2]), i, j)] = b
    return out


def _off_half_integers(box, tol: float = 1e-6):
    """The box translated by a tiny vector when a scaled coordinate sits on a half-integer, where CP2K's
    wrapping (ANINT) and ours could round differently; returns (box, translation in Angstrom (3,))."""
    sc = box.cell.scaled_positions(box.positions)
    frac = sc - np.floor(sc)
    if not (np.abs(frac - 0.5) < tol).any():
        return box, np.zeros(3)
    box = box.copy()
    t = np.array([1.1e-4, 0.7e-4, 0.9e-4]) @ box.cell.array  # fractional nudge, < 0.001 Angstrom
    box.positions = box.positions + t
    return box, t


def _image_table(text: str, tag: str) -> dict[int, tuple[int, int, int]]:
    m = re.search(tag + r" CSR write\|\s*(\d+) periodic images\s*\n\s*Number\s+X\s+Y\s+Z\s*\n", text)
    if not m:
        raise UnihamError(f"CP2K output has no '{tag} CSR write' image table")
    rows = text[m.end():].splitlines()[:int(m.group(1))]
    # rows come in index order; CP2K prints indices above 999 as "***", so the row number is the index
    return {n + 1: tuple(int(x) for x in r.split()[1:4]) for n, r in enumerate(rows)}


_CSR = np.dtype([("m1", "<i4"), ("row", "<i4"), ("col", "<i4"), ("val", "<f8"), ("m2", "<i4")])


def read_csr_images(workdir: Path, which: str, table: dict, ao_atom: np.ndarray, offsets: np.ndarray) -> dict:
    """{(R1,R2,R3,i,j): block (Hartree)} from CP2K's binary real-space CSR files of ``which`` (KS or S).

    Entries CP2K does not write are zero; blocks with no written entry are absent.
    """
    natm = len(offsets) - 1
    blocks = {}
    for ic, r in table.items():
        path = workdir / f"uniham-{which}_SPIN_1_R_{ic}-1_0.csr"
        if not path.exists() or path.stat().st_size == 0:
            continue  # CP2K leaves images without entries empty
        a = np.fromfile(path, dtype=_CSR)
        if len(a) * _CSR.itemsize != path.stat().st_size or not ((a["m1"] == 16) & (a["m2"] == 16)).all():
            raise UnihamError(f"{path.name}: not a CP2K binary CSR file (unexpected record layout)")
        rows, cols = a["row"] - 1, a["col"] - 1
        pair = ao_atom[rows] * natm + ao_atom[cols]
        order = np.argsort(pair, kind="stable")  # entries grouped by atom pair: one pass, not one scan per pair
        pair, rows, cols, vals = pair[order], rows[order], cols[order], a["val"][order]
        uniq, starts = np.unique(pair, return_index=True)
        ends = np.r_[starts[1:], len(pair)]
        for p, s0, s1 in zip(uniq.tolist(), starts.tolist(), ends.tolist()):
            i, j = divmod(p, natm)
            blk = np.zeros((offsets[i + 1] - offsets[i], offsets[j + 1] - offsets[j]))
            blk[rows[s0:s1] - offsets[i], cols[s0:s1] - offsets[j]] = vals[s0:s1]
            blocks[r + (i, j)] = blk
    return blocks


def parse_band_printout(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """CP2K's band-structure file -> (k-points (nk, 3) in reciprocal-lattice units, energies (nk, nb) eV)."""
    kpts, energies = [], []
    for line in path.read_text().splitlines():
        if re.match(r"#\s+Point\s+\d+", line):
            tok = line.split(":")[1].split()
            kpts.append([float(x) for x in tok[:3]])
            energies.append([])
        elif line.strip() and not line.startswith("#"):
            energies[-1].append(float(line.split()[1]))
    return np.array(kpts), np.array(energies)


def _year(version: str) -> int:
    """2023 from "2023.1" (CP2K's release year; 2023 when unknown, the Debian 12 package)."""
    m = re.match(r"(\d{4})", version)
    return int(m.group(1)) if m else 2023


def _zeroth_facts(text: str) -> dict:
    """What a ``MAX_SCF 1`` run says: exactly one SCF iteration (the KS matrix printed is the one built on the
    atomic guess, before any diagonalization changed the density)."""
    try:
        facts = _partial_facts(text, 1)
    except UnihamError:
        raise UnihamError("CP2K did not run exactly one SCF iteration from the atomic guess: no zeroth-step H0") from None
    return {"converged": None, "zeroth_step": True, "cycles": 1, "energy_eV": facts["energy_eV"], "fermi_eV": None}


def _partial_facts(text: str, n: int) -> dict:
    """What a ``MAX_SCF n`` run from the atomic guess says: n iterations, the last KS matrix built printed."""
    steps = re.findall(r"^\s+(\d+) \S+/Diag\.", text, re.MULTILINE)
    if steps[-1:] != [str(n)] or "ATOMIC" not in text.upper():
        raise UnihamError(f"CP2K did not run exactly {n} SCF iterations from the atomic guess")
    energy = re.findall(r"Total energy:\s+(-?\d+\.\d+)", text)
    return {"converged": None, "scf_steps": n, "cycles": n,
            "energy_eV": float(energy[-1]) * HARTREE_EV if energy else None, "fermi_eV": None}


def _scf_facts(text: str, s: Cp2kSettings) -> dict:
    if re.search(r"SCF run NOT converged", text) or not re.search(r"SCF run converged in\s+\d+ steps", text):
        raise UnihamError(f"CP2K SCF did not converge in {s.max_scf} steps (EPS_SCF {s.eps_scf:g}); "
                          "try a larger --smearing, a denser --kmesh or check the structure")
    steps = int(re.findall(r"SCF run converged in\s+(\d+) steps", text)[-1])
    energy = float(re.findall(r"Total energy:\s+(-?\d+\.\d+)", text)[-1]) * HARTREE_EV
    fermi = re.findall(r"Fermi energy:\s+(-?\d+\.\d+)", text)
    return {"converged": True, "cycles": steps, "energy_eV": energy,
            "fermi_eV": float(fermi[-1]) * HARTREE_EV if fermi else None}


def run_dft(atoms: Atoms, settings: Cp2kSettings | None = None, progress: bool = False) -> Hamiltonian:
    """Run CP2K on ``atoms`` and return the real-space Hamiltonian (eV, uniham order).

    Molecules and slabs get vacuum cell vectors (:func:`uniham.structure.ensure_box`) and a single
    k-point along non-periodic directions; CP2K itself treats the box as periodic.

    ``settings.zeroth_step``: instead of the SCF, the zeroth-step Hamiltonian H0 = H[rho_atoms], the
    Kohn-Sham matrix (kinetic + pseudopotential + Hartree + XC) of the superposition of CP2K's spherical
    atomic densities (renormalized to the electron count), in the same basis, cutoff and EPS_DEFAULT as
    the SCF would use. The density is fixed, so the k-mesh is 1x1x1 unless one is given (H0 is the same
    to 0.0 meV) and no band check is made; ``fermi_level`` is NaN (count electrons on H0 if needed).
    Its energy zero is CP2K's, as for the SCF's H.
    """
    import uniham

    s = settings or Cp2kSettings()
    t0 = time.perf_counter()
    box, nudge = _off_half_integers(ensure_box(atoms))
    image_shift = cp2k_wrap_shift(box)
    symbols = box.get_chemical_symbols()
    bases = element_bases(symbols, s)
    exe = find_cp2k(s.executable)
    # (the SCF asks after the run: a stopped build must find CP2K itself as the first child, not --version)
    version = cp2k_version(exe) if s.zeroth_step or s.scf_steps else None
    ecut = choose_cutoff(bases, s)
    # the atomic density does not depend on k: H0 of a 1x1x1 mesh (real-space images kept) is that of any mesh
    kmesh = (1, 1, 1) if s.zeroth_step and not s.kmesh else choose_kmesh(box, s)
    obases = [bases[x].orbital_basis() for x in symbols]
    offsets = np.concatenate([[0], np.cumsum([b.dim for b in obases])])
    ao_atom = np.repeat(np.arange(len(box)), np.diff(offsets))
    n_electrons = float(sum(bases[x].valence for x in symbols))
    n_added = _added_mos(int(offsets[-1]), n_electrons, s.basis, box.get_chemical_formula())
    rng = np.random.default_rng(s.seed)
    check_k = rng.uniform(-0.5, 0.5, size=(0 if s.zeroth_step else s.n_check_kpoints, 3)) * box.pbc
    log.info("CP2K %s: %d atoms, %d orbitals, cutoff %.0f Ry, k-mesh %s", exe, len(box), offsets[-1], ecut, kmesh)

    with _workdir(s.workdir) as workdir:
        (workdir / "uniham.inp").write_text(_input(box, bases, s, kmesh, ecut, n_added, check_k, _year(version or "")))
        text = _run(exe, workdir, s, progress)
        t_run = time.perf_counter() - t0
        version = version or cp2k_version(exe)
        scf = (_zeroth_facts(text) if s.zeroth_step else _partial_facts(text, s.scf_steps) if s.scf_steps
               else _scf_facts(text, s))
        H = to_uniham_images(read_csr_images(workdir, "KS", _image_table(text, "KS"), ao_atom, offsets), image_shift)
        S = to_uniham_images(read_csr_images(workdir, "S", _image_table(text, " S"), ao_atom, offsets), image_shift)
        band_k, band_e = parse_band_printout(workdir / "check.bs") if len(check_k) else (np.zeros((0, 3)), None)
    n_written = len(H)
    H, S = _kept_blocks(H, S, box, obases, s.cutoff)
    basis = {x: bases[x].orbital_basis() for x in dict.fromkeys(symbols)}
    # H0 has no Fermi level of its own (its one diagonalization is at the k of a 1x1x1 mesh): NaN, readers count
    fermi = scf["fermi_eV"] if scf["fermi_eV"] is not None and not s.zeroth_step else float("nan")  # (None: steps)
    ham = Hamiltonian(box, basis, H, S, fermi, n_electrons, False)
    check = _check_bands(ham, band_k, band_e, fermi)
    ham.provenance = {
        "engine": "cp2k",
        "hamiltonian": "zeroth-step H0 (superposed atomic densities, no SCF)" if s.zeroth_step else
                       f"after {s.scf_steps} SCF iterations from the atomic guess (not converged)" if s.scf_steps else "SCF",
        "versions": {"cp2k": version, "uniham": uniham.__version__, "numpy": np.__version__},
        "executable": exe,
        "settings": asdict(s) | {"kmesh": list(kmesh), "ecut_Ry": ecut, "added_mos": n_added},
        "basis_set": {x: {"name": b.name, "file": s.basis_file, "definition": b.text,
                          "potential": potential_name(b, s.xc)} for x, b in bases.items()},
        "scf": scf | {"eps_scf_Ha": s.eps_scf},
        "blocks": {"written_by_cp2k": n_written, "kept": len(H), "cutoff_A": s.cutoff},
        "translated_by_A": nudge.tolist(),
        "check_vs_cp2k_bands": check,
        "energy_zero": "CP2K periodic convention: average electrostatic potential of the cell is zero",
        "timing": {"cp2k_s": t_run, "total_s": time.perf_counter() - t0},
    }
    ham.validate()
    return ham


def _added_mos(n_orb: int, n_electrons: float, basis: str, formula: str) -> int:
    """Empty orbitals CP2K computes beyond the occupied ones (smearing and the band check need some)."""
    n_occ = int(np.ceil(n_electrons / 2))
    n_added = int(min(n_orb - n_occ, max(8, np.ceil(0.3 * n_occ))))
    if n_added < 1:
        raise UnihamError(f"basis {basis} has no empty orbital for {formula} "
                          f"({n_orb} orbitals, {n_electrons:g} electrons): smearing needs some; use a larger basis")
    return n_added


@contextmanager
def _workdir(path: str | None):
    """CP2K's working folder: ``path`` (kept, emptied of an earlier run's outputs, which CP2K would append to)
    or a temporary one, removed however the run ends."""
    if path:
        workdir = Path(path)
        workdir.mkdir(parents=True, exist_ok=True)
        for old in [*workdir.glob("uniham*"), workdir / "check.bs", workdir / "stderr.txt"]:
            old.unlink(missing_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="uniham-cp2k-") as tmp:
        yield Path(tmp)


def _kept_blocks(H: dict, S: dict, box: Atoms, obases: list, cutoff: float | None) -> tuple[dict, dict]:
    """H in eV and S on the same keys: CP2K writes every pair of its neighbour list, some exactly zero, so blocks
    with an entry (in H or S) are kept, within ``cutoff`` Angstrom when given."""
    H = {k: b * HARTREE_EV for k, b in H.items() if b.any() or (k in S and S[k].any())}
    if cutoff is not None:
        cell, pos = box.cell.array, box.positions
        H = {k: b for k, b in H.items()
             if np.linalg.norm(pos[k[4]] + np.asarray(k[:3]) @ cell - pos[k[3]]) <= cutoff + 1e-8}
    return H, {k: S[k] if k in S else np.zeros((obases[k[3]].dim, obases[k[4]].dim)) for k in H}


def _check_bands(ham: Hamiltonian, kpts: np.ndarray, ref: np.ndarray | None, fermi: float) -> dict:
    """Bands of uniham's H(R), S(R) vs CP2K's own printout at the same off-mesh k (E <= E_F + 5 eV)."""
    if ref is None or not len(kpts):
        return {"kpoints_frac": [], "max_band_error_meV": float("nan")}
    worst = 0.0
    for k, e_ref in zip(kpts, ref):
        ours = ham.eigh(k)[:len(e_ref)]
        sel = e_ref <= (fermi if np.isfinite(fermi) else np.inf) + 5.0
        worst = max(worst, float(np.abs(ours[sel] - e_ref[sel]).max()))
    return {"kpoints_frac": kpts.tolist(), "max_band_error_meV": 1000 * worst, "window": "E <= E_F + 5 eV",
            "note": "CP2K prints eV with CODATA 2006 Hartree (relative 9e-8 from ours)"}

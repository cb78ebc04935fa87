"""The PySCF engine on real DFT: interpolated bands vs PySCF's own get_bands, S(R) vs integrals,
and the Wigner-D covariance of every block under rotation and inversion (pins the orbital order)."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from uniham.basis import wigner_d_basis
from uniham.dft.pyscf_engine import DFTSettings, run_dft, run_dft_with_scf
from uniham.units import HARTREE_EV


@pytest.fixture(scope="module")
def si_szv():
    return run_dft_with_scf(bulk("Si", "diamond", a=5.431), DFTSettings(basis="gth-szv"))


def test_bands_match_pyscf_get_bands(si_szv):
    ham, kmf, u = si_szv
    assert ham.provenance["scf"]["converged"]
    rng = np.random.default_rng(7)
    kfrac = rng.uniform(-0.5, 0.5, size=(4, 3))
    ref, _ = kmf.get_bands(kmf.cell.get_abs_kpts(kfrac))
    nval = int(ham.n_electrons) // 2
    for k, e_ref in zip(kfrac, ref):
        ours = ham.eigh(k)
        err = np.abs(ours[: nval + 1] - np.asarray(e_ref)[: nval + 1] * HARTREE_EV).max()
        assert err < 2e-3, f"band error {err * 1000:.3f} meV at k={k}"
    assert ham.provenance["truncation"]["max_band_error_meV"] < 2.0


def test_overlap_equals_integrals(si_szv):
    ham, kmf, u = si_szv
    kfrac = np.array([[0.13, -0.27, 0.41], [0.5, 0.0, 0.25]])
    ref = kmf.cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kmf.cell.get_abs_kpts(kfrac))
    for k, s in zip(kfrac, ref):
        assert np.abs(ham.Sk(k) - u @ s @ u.T).max() < 1e-8


def test_hermitian_and_written(si_szv, tmp_path):
    from uniham.io import read_hamiltonian, write_hamiltonian

    ham = si_szv[0]
    assert ham.hermiticity_error("H") < 1e-8 and ham.hermiticity_error("S") < 1e-12
    write_hamiltonian(ham, tmp_path / "si")
    back = read_hamiltonian(tmp_path / "si")
    assert back.max_abs_difference(ham) < 1e-12
    assert back.provenance["engine"] == "pyscf" and back.n_electrons == 8


def _low_symmetry_si2() -> Atoms:
    cell = np.array([[0.0, 2.75, 2.70], [2.66, 0.1, 2.8], [2.9, 2.6, 0.2]])
    return Atoms("Si2", scaled_positions=[[0.02, 0.01, 0.0], [0.27, 0.22, 0.26]], cell=cell, pbc=True)


def test_blocks_transform_with_wigner_d_under_rotation_and_inversion():
    """Rotate (proper) and invert the structure, rerun DFT, compare every block (s, p and d shells).

    The Kohn–Sham matrix is that of the superposed (spherical) atomic densities, PySCF's zeroth step: the
    same integrals, grids and orbital conventions as an SCF's, exact at any density, with no SCF convergence
    error to budget for (three SCFs to 1e-11 Ha took 4 of the suite's minutes)."""
    s = DFTSettings(basis="gth-dzvp", kmesh=(1, 1, 1), interp_mesh=(2, 2, 2), n_check_kpoints=0, zeroth_step=True)
    atoms = _low_symmetry_si2()
    ref = run_dft(atoms, s)
    assert max(ref.basis["Si"].shells) == 2
    scale = max(np.abs(b).max() for b in ref.H.values())

    q = Rotation.from_euler("zyx", [37.0, -64.0, 121.0], degrees=True).as_matrix()
    rot = atoms.copy()
    rot.set_cell(atoms.cell.array @ q.T, scale_atoms=True)
    ham_r = run_dft(rot, s)
    d = wigner_d_basis(ref.basis["Si"], q)
    worst = 0.0
    for key, blk in ref.H.items():
        worst = max(worst, np.abs(ham_r.H[key] - d @ blk @ d.T).max())
    assert worst < 1e-5 * scale, f"rotation: max block error {worst:.2e} eV"
    # the orbital order matters: a wrong convention (e.g. PySCF's raw p order) fails this test
    assert max(np.abs(ham_r.H[k] - b).max() for k, b in ref.H.items()) > 1e-2

    inv = atoms.copy()
    inv.positions = -atoms.positions
    ham_i = run_dft(inv, s)
    p = wigner_d_basis(ref.basis["Si"], -np.eye(3))
    worst = 0.0
    for (r1, r2, r3, i, j), blk in ref.H.items():
        worst = max(worst, np.abs(ham_i.H[(-r1, -r2, -r3, i, j)] - p @ blk @ p.T).max())
    assert worst < 1e-5 * scale, f"inversion: max block error {worst:.2e} eV"

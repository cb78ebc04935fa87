import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from uniham.basis import (
    OrbitalBasis,
    code_to_uniham,
    real_spherical_harmonics,
    wigner_d,
)
from uniham.errors import UnihamError


def test_parse_and_properties():
    b = OrbitalBasis.parse("2s2p1d")
    assert b.shells == (0, 0, 1, 1, 2)
    assert b.dim == 13
    assert b.irreps == "2x0e+2x1o+1x2e"
    assert str(b) == "2s2p1d"
    assert [s.stop - s.start for s in b.slices()] == [1, 1, 3, 3, 5]
    assert list(b.orbital_m()[2:5]) == [-1, 0, 1]
    with pytest.raises(UnihamError):
        OrbitalBasis.parse("2x")


def test_real_harmonics_order_is_y_z_x_and_d_xy_first():
    r = np.array([[0.3, -0.5, 0.8]])
    y1 = real_spherical_harmonics(1, r)[0]
    u = r[0] / np.linalg.norm(r[0])
    assert np.allclose(y1 / y1[2], [u[1] / u[0], u[2] / u[0], 1.0])  # (y, z, x), all positive prefactors
    y2 = real_spherical_harmonics(2, r)[0]
    assert np.sign(y2[0]) == np.sign(u[0] * u[1])  # xy
    assert np.sign(y2[4]) == np.sign(u[0] ** 2 - u[1] ** 2)  # x^2 - y^2


@pytest.mark.parametrize("l", [0, 1, 2, 3, 4])
def test_wigner_d_is_a_representation(l):
    q1, q2 = Rotation.random(2, random_state=l).as_matrix()
    d1, d2, d12 = wigner_d(l, q1), wigner_d(l, q2), wigner_d(l, q1 @ q2)
    assert np.allclose(d1 @ d1.T, np.eye(2 * l + 1), atol=1e-10)
    assert np.allclose(d12, d1 @ d2, atol=1e-10)
    assert np.allclose(wigner_d(l, -np.eye(3)), (-1) ** l * np.eye(2 * l + 1), atol=1e-10)


@pytest.mark.parametrize("code", ["pyscf", "openmx", "siesta", "abacus", "fhiaims", "cp2k"])
@pytest.mark.parametrize("l", [0, 1, 2, 3])
def test_converters_are_signed_permutations(code, l):
    u = code_to_uniham(code, l)
    assert np.allclose(u @ u.T, np.eye(2 * l + 1))
    assert np.all(np.isin(u, [-1, 0, 1]))


def test_pyscf_p_order():
    # PySCF p = (px, py, pz) -> uniham (py, pz, px)
    assert np.allclose(code_to_uniham("pyscf", 1) @ np.array([1.0, 2.0, 3.0]), [2.0, 3.0, 1.0])


def test_overlap_reaches_its_own_range():
    """S cut where H is stored (10 A) is not positive definite for diffuse bases (a db1 Y cell); over
    the basis' own pair range (primitive overlaps down to 1e-7: Y-Y 14.7 A) it is."""
    from ase import Atoms

    from uniham.dft.cp2k_basis import load_basis, overlap_blocks, overlap_keys, overlap_range
    from uniham.hamiltonian import Hamiltonian

    bases = {"Y": load_basis("Y"), "Si": load_basis("Si")}
    rng = overlap_range(bases)
    assert rng[("Si", "Si")] == pytest.approx(10.17, abs=0.05) and rng[("Y", "Y")] == pytest.approx(14.73, abs=0.05)
    assert overlap_range(bases, 1e-5)[("Si", "Si")] == pytest.approx(8.6, abs=0.05)  # CP2K's pair list at db1
    atoms = Atoms("Y", positions=[[0, 0, 0]], cell=[[0, 0, -3.8], [-2.0404, -3.5341, 0], [-2.0404, 3.5341, 0]], pbc=True)
    keys = overlap_keys(atoms, bases)
    dist = {k: np.linalg.norm(np.asarray(k[:3]) @ atoms.cell.array) for k in keys}
    assert max(dist.values()) <= rng[("Y", "Y")] + 1e-9 and (0, 0, 0, 0, 0) in keys
    full = overlap_blocks(["Y"], atoms.positions, atoms.cell.array, bases, keys)
    cut = {k: v for k, v in full.items() if dist[k] <= 10.0}
    basis = {"Y": bases["Y"].orbital_basis()}

    def min_eig(s):
        ham = Hamiltonian(atoms, basis, {k: np.zeros_like(v) for k, v in cut.items()}, s)
        return min(np.linalg.eigvalsh(ham.Sk(k)).min() for k in ([0, 0, 0], [0.5, 0, 0], [0.2, 0.3, 0.1]))

    assert min_eig(cut) < 0 < min_eig(full)

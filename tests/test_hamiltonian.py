"""Analytic tight-binding fixtures: the Bloch sum, eigenvalues, hermiticity, gauge shift."""
import numpy as np
from ase.build import bulk

from uniham.basis import OrbitalBasis
from uniham.hamiltonian import Hamiltonian


def fcc_s_band(eps=-1.0, t=-0.5, s1=0.1):
    """One s orbital on an fcc lattice, nearest-neighbour hopping t and overlap s1."""
    atoms = bulk("Cu", "fcc", a=3.6)
    nn = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, -1, 0), (1, 0, -1), (0, 1, -1)]
    H = {(0, 0, 0, 0, 0): np.array([[eps]])}
    S = {(0, 0, 0, 0, 0): np.array([[1.0]])}
    for r in nn:
        for sgn in (1, -1):
            key = tuple(sgn * x for x in r) + (0, 0)
            H[key] = np.array([[t]])
            S[key] = np.array([[s1]])
    return Hamiltonian(atoms, {"Cu": OrbitalBasis.parse("s")}, H, S), nn


def test_bloch_sum_matches_analytic_band():
    ham, nn = fcc_s_band()
    rng = np.random.default_rng(0)
    for k in rng.uniform(-0.5, 0.5, size=(10, 3)):
        g = sum(2 * np.cos(2 * np.pi * np.dot(k, r)) for r in nn)
        expected = (-1.0 + -0.5 * g) / (1 + 0.1 * g)
        assert np.isclose(ham.eigh(k)[0], expected, atol=1e-12)
        assert np.isclose(ham.Hk(k, sparse=True).toarray()[0, 0], ham.Hk(k)[0, 0])


def test_hermiticity_and_gauge_shift():
    ham, _ = fcc_s_band()
    assert ham.hermiticity_error() == 0.0
    ham.H[(1, 0, 0, 0, 0)] = np.array([[-0.4]])
    assert np.isclose(ham.hermiticity_error(), 0.1)
    ham2, _ = fcc_s_band()
    shifted = ham2.shifted(0.7)
    k = np.array([0.1, 0.2, 0.3])
    assert np.isclose(shifted.eigh(k)[0], ham2.eigh(k)[0] + 0.7)


def test_mesh_eigenvalues_use_time_reversal_and_equal_the_full_solve(monkeypatch):
    """Real H(R), S(R): one k of each {k, -k} pair is solved and the mesh is the same to 1e-8 eV."""
    from pathlib import Path

    from uniham.data.store import DatasetStore
    from uniham.properties.bands import mesh_eigenvalues
    from uniham.properties.kpath import monkhorst_pack

    ham = DatasetStore(Path(__file__).resolve().parents[1] / "data" / "db1").load("proto-AB_hP2_187_d_a-OsTl-1x1x1-0")
    solved = []
    real = ham.eigenvalues
    monkeypatch.setattr(ham, "eigenvalues", lambda k, progress=False: solved.append(len(k)) or real(k))
    for mesh in [(4, 4, 3), (5, 3, 1)]:
        k, e = mesh_eigenvalues(ham, mesh)
        full = real(monkhorst_pack(mesh))
        assert np.abs(e - full).max() < 1e-8 and len(k) == np.prod(mesh)
    assert solved == [26, 8]  # (4·4·3 + 4 self-conjugate points) / 2, (5·3 + 1) / 2


def test_binned_gaussian_dos_equals_one_gaussian_per_level():
    from uniham.properties.bands import gaussian_dos

    rng = np.random.default_rng(0)
    eigs, w = rng.uniform(-5, 20, (300, 13)), rng.uniform(0.5, 1.5, 300)
    for step in (0.01, 0.05):
        e = np.arange(-6, 21, step)
        direct = gaussian_dos(eigs, w, e[[0, 1, 3]], 0.1)  # uneven grid: one Gaussian per level
        assert np.allclose(direct, gaussian_dos(eigs, w, e, 0.1)[[0, 1, 3]], atol=1e-3)
        ref = sum(wk / w.sum() * 2 / (np.sqrt(2 * np.pi) * 0.1) * np.exp(-0.5 * ((e[:, None] - ek) / 0.1) ** 2).sum(1)
                  for wk, ek in zip(w, eigs))
        assert np.abs(gaussian_dos(eigs, w, e, 0.1) - ref).max() < (2e-5 if step == 0.01 else 6e-4) * ref.max()
    assert abs(np.trapezoid(gaussian_dos(eigs, w, np.arange(-8, 23, 0.01), 0.1), dx=0.01) - 26) < 1e-6

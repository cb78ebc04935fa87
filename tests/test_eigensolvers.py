"""Sparse shift-invert eigensolver and supercell assembly against dense solves and k-point folding, on a
real CP2K Hamiltonian; the projection of a near-singular overlap."""
import numpy as np
import pytest
from ase.build import bulk

from uniham.errors import UnihamError
from uniham.properties import eigensolvers as E


@pytest.fixture(scope="module")
def si(cp2k):
    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

    return run_dft(bulk("Si", "diamond", a=5.431),
                   Cp2kSettings(basis="SZV-MOLOPT-SR-GTH", ecut=200, kmesh=(3, 3, 3), n_check_kpoints=0))


def test_supercell_gamma_equals_folded_primitive_k(si):
    reps = (2, 3, 1)
    h, s = E.supercell_matrices(si, reps)
    grids = [np.arange(n) / n for n in reps]
    ks = np.array(np.meshgrid(*grids, indexing="ij")).reshape(3, -1).T
    ref = np.sort(si.eigenvalues(ks).ravel())
    assert abs(h - h.conj().T).max() < 1e-12
    assert np.abs(np.sort(E.generalized_eigh(h.toarray(), s.toarray())) - ref).max() < 1e-6
    # a supercell k-point: the primitive k's it folds from
    kq = np.array([0.5, 0.0, 0.0])
    h, s = E.supercell_matrices(si, reps, kq)
    ref = np.sort(si.eigenvalues(ks * 1.0 + kq / np.array(reps)).ravel())
    assert np.abs(np.sort(E.generalized_eigh(h.toarray(), s.toarray())) - ref).max() < 1e-6


@pytest.mark.parametrize("solver", E.available_solvers())
@pytest.mark.parametrize("k", [(0.0, 0.0, 0.0), (0.21, 0.0, 0.13)])
def test_eigs_near_fermi_match_dense(si, solver, k):
    h, s = E.supercell_matrices(si, (2, 2, 2), k)
    if solver == "pardiso" and np.abs(h.data.imag).max() > 0:
        pytest.skip("PARDISO path is for real k")
    dense = np.sort(E.generalized_eigh(h.toarray(), s.toarray()))
    sigma = si.fermi_level + 0.037  # off any eigenvalue
    got, info = E.eigs_near(h, s, 12, sigma, solver)
    want = np.sort(dense[np.argsort(np.abs(dense - sigma))[:12]])
    assert info["solver"] == solver
    assert np.abs(got - want).max() < 1e-6  # eV


def test_near_singular_overlap_is_projected():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    s = a @ a.T + 6 * np.eye(6)
    h = rng.normal(size=(6, 6))
    h = h + h.T
    # a 7th orbital identical to the 1st: S singular, one direction less
    t = np.eye(7, 6)
    t[6, 0] = 1.0
    s7, h7 = t @ s @ t.T, t @ h @ t.T
    e7 = E.generalized_eigh(h7, s7)
    assert len(e7) == 6
    assert np.allclose(e7, E.generalized_eigh(h, s), atol=1e-8)
    with pytest.raises(UnihamError):
        E.generalized_eigh(h, -s)
    with pytest.raises(UnihamError):
        E.supercell_matrices(None, (0, 1, 1))


def test_bands_cli_sparse_equals_dense(si, tmp_path):
    import json

    from uniham.cli import main
    from uniham.io import write_hamiltonian

    folder = tmp_path / "si"
    write_hamiltonian(si, folder)
    js = tmp_path / "b.json"
    assert main(["bands", str(folder), "--sparse", "--nbands", "6", "--npoints", "12", "--near", "6.0",
                 "--json", str(js)]) == 0
    d = json.loads(js.read_text())
    dense = si.eigenvalues(np.array(d["kpoints_frac"]))
    for k, e in enumerate(np.array(d["energies_eV"])):
        want = np.sort(dense[k][np.argsort(np.abs(dense[k] - 6.0))[:6]])
        assert np.abs(e - want).max() < 1e-6


def test_kpm_moments_and_dos(si):
    from uniham.properties import kpm

    reps = (2, 2, 2)
    h, s = E.supercell_matrices(si, reps)
    ev = np.sort(E.generalized_eigh(h.toarray(), s.toarray()))
    bounds = (ev[0] - 1.0, ev[-1] + 1.0)
    # exact trace (all unit vectors): the Chebyshev recursion with S^{-1} reproduces sum_n T_m(x_n)
    mu = kpm.kpm_moments(h, s, bounds, 128, None, progress=False)
    a, b = (bounds[1] - bounds[0]) / 2, (bounds[1] + bounds[0]) / 2
    x = (ev - b) / a
    exact = np.array([np.cos(m * np.arccos(x)).sum() for m in range(128)])
    assert np.abs(mu - exact).max() < 1e-8 * len(ev)
    # stochastic DOS (128 random vectors): all states (spin 2) integrate exactly; the occupied count and
    # the curve agree with the exact-moment series to the stochastic error (~ 1/sqrt(R n))
    en = np.linspace(bounds[0], bounds[1], 6000)
    r = kpm.kpm_dos(h, s, en, moments=128, vectors=128, progress=False, bounds=bounds)
    ref = kpm.dos_from_moments(exact, bounds, en)
    de = en[1] - en[0]
    cum, cum_ref = np.cumsum(r["dos_per_eV"]) * de, np.cumsum(ref) * de
    assert abs(cum[-1] - 2 * len(ev)) < 0.01 * len(ev)
    mid = 0.5 * (ev[ev <= si.fermi_level].max() + ev[ev > si.fermi_level].min())
    assert abs(np.interp(mid, en, cum) - np.interp(mid, en, cum_ref)) < 0.05 * np.interp(mid, en, cum_ref)
    assert np.abs(r["dos_per_eV"] - ref).max() < 0.15 * ref.max()


def test_kpm_fermi_level_lands_in_the_gap(si):
    from uniham.properties import kpm

    h, s = E.supercell_matrices(si, (2, 2, 2))
    ev = np.sort(E.generalized_eigh(h.toarray(), s.toarray()))
    n_el = si.n_electrons * 8
    vbm, cbm = ev[int(n_el // 2) - 1], ev[int(n_el // 2)]
    ef, res = kpm.kpm_fermi_level(h, s, n_el, moments=512, vectors=16, progress=False)
    assert vbm < ef < cbm, (vbm, ef, cbm)

"""The overlap guard (uniham.conditioning) on a real nearly singular overlap: hcp Al of db1 in DZVP-MOLOPT-SR,
min eig S(k) ~ 6e-5, where a learned ΔH of meV moves bands by eV and the guarded one does not."""
from pathlib import Path

import numpy as np
import pytest

from uniham.conditioning import (DROP_EV, guard_mesh, guarded_correction, guarded_hamiltonian,
                                 overlap_min_eigenvalue)
from uniham.hamiltonian import Hamiltonian
from uniham.properties.band_metric import METRIC_KPOINTS, band_metric

ROOT = Path(__file__).resolve().parents[1]
AL = "proto-A_hP2_194_c-Al-1x1x1-0"


@pytest.fixture(scope="module")
def al():
    """(SCF H with S, H0, exact ΔH blocks) of hcp Al from data/db1 + data/db1_dh."""
    from uniham.model.data import discover, h0_from

    item = next(it for it in discover([ROOT / "data" / "db1_dh"]) if it.id.endswith(AL))
    ref = item.reference()
    stored = item.load(with_overlap=False).H
    h0 = Hamiltonian(ref.atoms, ref.basis, h0_from(ref.H, stored), ref.S, None, ref.n_electrons)
    return ref, h0, {k: ref.H[k] - h0.H[k] for k in stored}


def _noise(delta: dict, mev: float, seed: int = 0) -> dict:
    """Hermitian random blocks of ``mev`` meV rms on the keys of ``delta`` (a stand-in for a network's error)."""
    rng, out = np.random.default_rng(seed), {}
    for key, blk in delta.items():
        if key in out:
            continue
        x = 1e-3 * mev * rng.standard_normal(blk.shape)
        out[key] = x
        mirror = (-key[0], -key[1], -key[2], key[4], key[3])
        out[mirror] = 0.5 * (x + x.T) if mirror == key else x.T
    return out


def test_the_overlap_is_nearly_singular(al):
    ref = al[0]
    assert overlap_min_eigenvalue(ref, METRIC_KPOINTS) < 1e-4


def test_guard_is_exact_on_its_mesh_and_hermitian(al):
    ref, h0, delta = al
    tau, length = 0.01, 12.0
    g = guarded_correction(h0, delta, tau, length)
    mesh = guard_mesh(h0.atoms, length)
    rng = np.random.default_rng(1)
    ks = rng.integers(0, 100, (4, 3)) / mesh
    gk = Hamiltonian(h0.atoms, h0.basis, g, None)._bloch_many("H", ks)
    dk = Hamiltonian(h0.atoms, h0.basis, delta, None)._bloch_many("H", ks)
    s, u = np.linalg.eigh(h0._bloch_many("S", ks))
    f = (u * (s / (s + tau))[:, None, :]) @ np.conj(np.swapaxes(u, 1, 2))
    want = f @ dk @ f
    # blocks dropped below DROP_EV bound the difference
    assert np.abs(gk - want).max() < 1e3 * DROP_EV
    for (r1, r2, r3, i, j), blk in g.items():
        np.testing.assert_allclose(g[(-r1, -r2, -r3, j, i)], blk.T, atol=1e-12)


def test_guard_is_covariant_under_per_atom_orthogonal_changes(al):
    """F δ F transforms like δ when every atom's orbitals are mixed by an orthogonal U_i (rotations among them)."""
    ref, h0, delta = al
    rng = np.random.default_rng(2)
    off = h0.orbital_offsets
    us = [np.linalg.qr(rng.standard_normal((off[i + 1] - off[i],) * 2))[0] for i in range(len(h0.atoms))]
    rot = h0.transformed(us)
    d_rot = {k: us[k[3]] @ v @ us[k[4]].T for k, v in delta.items()}
    g, g_rot = guarded_correction(h0, delta, 0.01, 10.0), guarded_correction(rot, d_rot, 0.01, 10.0)
    for k in set(g) & set(g_rot):
        np.testing.assert_allclose(g_rot[k], us[k[3]] @ g[k] @ us[k[4]].T, atol=1e-9)
    assert all(np.abs(g[k]).max() < 2 * DROP_EV for k in set(g) ^ set(g_rot) if k in g)


def test_guard_keeps_a_mev_error_from_wrecking_the_bands(al):
    ref, h0, delta = al
    wrong = {k: delta[k] + e for k, e in _noise(delta, 1.0).items()}

    def bands_of(correction, tau):
        H, _ = guarded_hamiltonian(h0, correction, tau)
        return band_metric(Hamiltonian(ref.atoms, ref.basis, H, ref.S, None, ref.n_electrons), ref)["band_mae_meV"]

    assert guarded_correction(h0, delta, 0.0) == delta
    plain, guarded, floor = bands_of(wrong, 0.0), bands_of(wrong, 0.01), bands_of(delta, 0.01)
    assert bands_of(delta, 0.0) < 1e-3       # the exact ΔH unguarded gives the SCF bands
    assert floor < 5.0                      # the guard costs the exact ΔH a few meV at most
    assert plain > 100.0 and guarded < 20.0, (plain, guarded)

"""chi(omega) of bulk Si from a real CP2K Hamiltonian: velocities against finite differences and band
slopes, cubic symmetry of the tensor, the f-sum rule, Kramers-Kronig, and the CLI."""
import json

import numpy as np
import pytest
from ase.build import bulk

from uniham.cli import main
from uniham.properties import optics


@pytest.fixture(scope="module")
def si(cp2k, tmp_path_factory):
    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft
    from uniham.io import write_hamiltonian

    ham = run_dft(bulk("Si", "diamond", a=5.431), Cp2kSettings(ecut=300, kmesh=(5, 5, 5), n_check_kpoints=0))
    out = tmp_path_factory.mktemp("si") / "si"
    write_hamiltonian(ham, out)
    return ham, out


def test_velocities_match_finite_differences_and_band_slopes(si):
    ham, _ = si
    bloch = optics.AtomicGaugeBloch(ham)
    k = np.array([0.13, 0.27, -0.08])
    e, u, v = optics.velocities(bloch, k)
    assert np.abs(e - ham.eigh(k)).max() < 1e-9  # the atomic gauge leaves eigenvalues alone
    assert np.abs(v - np.conj(np.transpose(v, (0, 2, 1)))).max() < 1e-10  # Hermitian
    vf = optics.velocity_fd(bloch, k, u)
    assert np.abs(v - vf).max() < 1e-6 * np.abs(v).max()
    to_frac = np.linalg.inv(bloch.recip)
    K, h = bloch.cart(k), 1e-5
    for a in range(3):
        dk = np.zeros(3)
        dk[a] = h
        slope = (ham.eigh((K + dk) @ to_frac) - ham.eigh((K - dk) @ to_frac)) / (2 * h)
        assert np.abs(v[a].diagonal().real - slope)[:8].max() < 1e-5  # eV*Angstrom, non-degenerate at this k


def test_susceptibility_of_silicon_obeys_sum_rule_kk_and_cubic_symmetry(si):
    ham, _ = si
    w = np.arange(0.0, 110.0, 0.05)  # beyond the highest transition, so KK sees all of Im chi
    res = optics.susceptibility(ham, (4, 4, 4), w, broadening=0.2, components=("xx", "yy", "zz", "xy", "yz"),
                                progress=False)
    chi = res["chi"]
    assert res["insulating"] and res["gap_eV"] > 0.3
    scale = np.abs(chi["xx"]).max()
    for c in ("yy", "zz"):
        assert np.abs(chi[c] - chi["xx"]).max() < 1e-6 * scale
    for c in ("xy", "yz"):  # 5e-6 measured: the SCF's own convergence (eps_scf 1e-7) limits the symmetry
        assert np.abs(chi[c]).max() < 1e-4 * scale
    assert chi["xx"].imag.min() > -1e-8 * scale  # absorption is never negative for w > 0
    assert 5 < chi["xx"][0].real < 40  # static dielectric constant of the right order (PBE Si ~ 12-14)
    assert np.abs(chi["xx"][0].imag) < 1e-6 * scale
    fs = res["f_sum_rule"]["xx"]
    assert fs["valid"] and fs["relative_error"] < 0.06  # 4.6 % at 4^3; 0.35 % at 8^3, 0.10 % at 10^3
    assert fs["fraction_in_window"] > 0.99
    kk = res["kramers_kronig"]["xx"]
    assert kk["relative_to_max_re"] < 0.01


def test_binned_lines_equal_one_line_per_transition_and_kk_sees_the_tail(si):
    """TransitionLines (transition energies binned on a σ/40 grid) against a line per transition, and the
    Kramers-Kronig check on a window far below the highest transitions: with the whole binned spectrum it
    holds to 1e-4, from the window alone it cannot (the tail of transitions above it is missing)."""
    ham, _ = si
    w = np.arange(0.0, 12.0, 0.01)
    kw = dict(broadening=0.1, components=("xx", "xy"), progress=False)
    fast = optics.susceptibility(ham, (3, 3, 3), w, **kw)
    ref = optics.susceptibility(ham, (3, 3, 3), w, exact_lines=True, **kw)
    scale = np.abs(ref["chi"]["xx"]).max()
    for c in ("xx", "xy"):
        assert np.abs(fast["chi"][c] - ref["chi"][c]).max() < 1e-4 * scale
    kk, kk_window = fast["kramers_kronig"]["xx"], ref["kramers_kronig"]["xx"]
    assert kk["tail"] and not kk_window["tail"]
    assert kk["relative_to_max_re"] < 3e-4 and kk_window["relative_to_max_re"] > 20 * kk["relative_to_max_re"], (kk, kk_window)


def test_optics_cli_json_and_plot(si, tmp_path, capsys):
    _, folder = si
    js, png = tmp_path / "o.json", tmp_path / "eps.png"
    assert main(["optics", str(folder), "--kmesh", "3,3,3", "--omega", "0:8:0.05", "--json", str(js),
                 "--plot", str(png)]) == 0
    d = json.loads(js.read_text())
    assert set(d["eps"]) == {"xx", "yy", "zz"} and len(d["omega_eV"]) == len(d["eps"]["xx"]["re"])
    assert d["eps"]["xx"]["re"][0] > 1 and png.stat().st_size > 10_000
    assert "f-sum rule" in capsys.readouterr().out
    assert main(["optics", str(folder), "--omega", "5:1:0.1"]) == 2
    assert main(["optics", str(folder), "--components", "xq"]) == 2

import json

import numpy as np

from uniham.cli import main


def test_bands_json_and_plot(tmp_path, realdata):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["bands", str(realdata / "deephdock_Si_siesta/siesta_raw/Si.HSX"), "--kpath", "G X W L G",
                 "--npoints", "40", "--json", str(out), "--plot", str(png)]) == 0
    res = json.loads(out.read_text())
    assert {"kpoints_frac", "labels", "energies_eV", "fermi_level_eV"} <= set(res)
    assert res["labels"][0] == [0, "G"] and res["labels"][-1][1] == "G"
    k = np.array(res["kpoints_frac"])
    assert np.allclose(k[0], 0) and len(res["energies_eV"]) == len(k)
    assert png.stat().st_size > 10000


def test_kpoints_file_gives_same_energies(tmp_path, realdata):
    from uniham.io import read_hamiltonian

    src = realdata / "deephdock_MoS2_abacus/abacus_raw"
    kf = tmp_path / "k.txt"
    kf.write_text("0 0 0\n0.25 0 0\n0.5 0 0\n")
    out = tmp_path / "b.json"
    assert main(["bands", str(src), "--kpoints", str(kf), "--json", str(out)]) == 0
    e = np.array(json.loads(out.read_text())["energies_eV"])
    ham = read_hamiltonian(src)
    assert np.allclose(e[1], ham.eigh([0.25, 0, 0]))


def test_dos_and_convert(tmp_path, realdata):
    out = tmp_path / "d.json"
    assert main(["dos", str(realdata / "deephdock_Si_siesta/deeph_dock"), "--kmesh", "4,4,4", "--json", str(out),
                 "--plot", str(tmp_path / "d.png")]) == 0
    d = json.loads(out.read_text())
    e, g = np.array(d["energies_eV"]), np.array(d["dos_per_eV"])
    assert abs(np.trapezoid(g, e) - 2 * 26) < 0.05  # 26 bands, 2 electrons each
    assert main(["convert", str(realdata / "deephdock_MoTe2_openmx/deeph_legacy"), str(tmp_path / "dock")]) == 0
    assert (tmp_path / "dock" / "hamiltonian.h5").exists()

"""Bad input: one clear line on stderr, exit status 2, no traceback."""
import subprocess
import sys

import pytest

from uniham.cli import main


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


CASES = {
    "empty.cif": "",
    "unknown.xyz": "2\n\nXq 0 0 0\nSi 0 0 2.3\n",
    "overlap.xyz": "2\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nSi 0 0 0\nSi 0.1 0 0\n",
    "flat.xyz": "1\nLattice=\"5 0 0 0 5 0 0 0 0\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nSi 0 0 0\n",
    "garbage.cif": "data_x\n_cell_length_a oops\nloop_\n_atom_site_label\n",
    # a mixed Si/Ge site and a 0.6-occupied one: never rounded to full atoms
    "partial.cif": ("data_x\n_cell_length_a 5.43\n_cell_length_b 5.43\n_cell_length_c 5.43\n_cell_angle_alpha 90\n"
                    "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
                    "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
                    "_atom_site_fract_z\n_atom_site_occupancy\nSi1 Si 0 0 0 0.5\nGe1 Ge 0 0 0 0.5\n"
                    "Si2 Si 0.25 0.25 0.25 1.0\n"),
    "vacancy.cif": ("data_x\n_cell_length_a 5.43\n_cell_length_b 5.43\n_cell_length_c 5.43\n_cell_angle_alpha 90\n"
                    "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
                    "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
                    "_atom_site_fract_z\n_atom_site_occupancy\nSi1 Si 0 0 0 1.0\nSi2 Si 0.25 0.25 0.25 0.6\n"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_structures(tmp_path, capsys, name):
    p = tmp_path / name
    p.write_text(CASES[name])
    code, err = run_cli(["dft", str(p), "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    assert err.startswith("uniham: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_unparsable_cif_says_what_was_expected(tmp_path, capsys):
    # ASE's CIF parser fails on plain text with a bare AssertionError: the line must still say why
    p = tmp_path / "words.cif"
    p.write_text("garbage\n")
    code, err = run_cli(["dft", str(p), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and "not a valid CIF file" in err and err.count("\n") == 1, err


def test_missing_file_and_unknown_format(tmp_path, capsys):
    code, err = run_cli(["bands", str(tmp_path / "nope")], capsys)
    assert code == 2 and "no such file" in err
    (tmp_path / "folder").mkdir()
    code, err = run_cli(["bands", str(tmp_path / "folder")], capsys)
    assert code == 2 and "cannot tell the Hamiltonian format" in err


def test_corrupt_hdf5(tmp_path, capsys, realdata):
    import shutil

    d = tmp_path / "dock"
    shutil.copytree(realdata / "deephdock_Si_siesta/deeph_dock", d)
    (d / "hamiltonian.h5").write_bytes(b"not an hdf5 file")
    code, err = run_cli(["bands", str(d)], capsys)
    assert code == 2 and "cannot read" in err


def test_spinful_refused_from_cli(capsys, realdata):
    code, err = run_cli(["bands", str(realdata / "sislfiles_Pt2_soc_siesta/Pt2_xx.HSX")], capsys)
    assert code == 2 and "not supported yet" in err


def test_nan_blocks_refused(tmp_path, capsys, realdata):
    import shutil

    import h5py
    import numpy as np

    d = tmp_path / "dock"
    shutil.copytree(realdata / "deephdock_Si_siesta/deeph_dock", d)
    with h5py.File(d / "hamiltonian.h5", "r+") as f:
        e = f["entries"][()]
        e[3] = np.nan
        f["entries"][...] = e
    code, err = run_cli(["info", str(d)], capsys)
    assert code == 2 and "NaN" in err


def test_entry_point_exit_status(tmp_path):
    p = tmp_path / "empty.cif"
    p.write_text("")
    r = subprocess.run([sys.executable, "-m", "uniham.cli", "dft", str(p), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("uniham: error:")


@pytest.mark.parametrize("args", [["--smearing", "-1"], ["--smearing", "0"], ["--cutoff", "0"], ["--ke-cutoff", "-5"],
                                  ["--threads", "0"]])
def test_dft_options_checked_before_any_run(tmp_path, capsys, args):
    p = tmp_path / "Si.xyz"
    p.write_text(CASES["overlap.xyz"].replace("Si 0.1 0 0", "Si 1.36 1.36 1.36"))
    code, err = run_cli(["dft", str(p), "-o", str(tmp_path / "out"), *args], capsys)
    assert code == 2 and err.count("\n") == 1 and args[0] in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,what", [(["bands", "{f}", "--npoints", "-5"], "--npoints"),
                                      (["bands", "{f}", "--nbands", "x"], "not an integer"),
                                      (["dos", "{f}", "--step", "0"], "--step"),
                                      (["dos", "{f}", "--broadening", "nan"], "--broadening"),
                                      (["dos", "{f}", "--emin", "5", "--emax", "-5"], "below --emax"),
                                      (["dos", "{f}", "--step", "1e-6"], "over 10^6 points"),
                                      (["optics", "{f}", "--kT", "-1"], "--kT"),
                                      (["predict", "{f}", "-o", "{o}", "--s-guard", "2"], "<= 1"),
                                      (["dataset", "zeroth", "{f}", "--out", "{o}", "--workers", "0"], "--workers"),
                                      (["bands"], "required")])
def test_numeric_options_checked_in_one_line(si_export, tmp_path, capsys, args, what):
    """Every numeric option has a range, refused before anything runs: one line, exit status 2, nothing written."""
    argv = [a.format(f=si_export, o=tmp_path / "out") for a in args]
    code, err = run_cli(argv, capsys)
    assert code == 2 and what in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def si_export(tmp_path_factory):
    """db1's first Si structure as a DeepH-dock folder."""
    from uniham.data.store import DatasetStore

    store = DatasetStore("data/db1")
    sid = next(k for k in store.manifest["structures"] if k.startswith("el-Si-"))
    out = tmp_path_factory.mktemp("si") / "si"
    assert main(["dataset", "export", "data/db1", sid, "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("section,line,what", [("train", "lr = -3e-3", "must be > 0"), ("train", 'lr = "fast"', "expected a number"),
                                               ("train", "batch_size = 0", "must be >= 1"), ("train", "steps = -5", "must be >= 1"),
                                               ("train", 'loss = "l1"', "expected one of"),
                                               ("model", 'channels = "8"', "expected int"), ("model", "layers = 0", "must be >= 1"),
                                               ("model", "lmax = 2.5", "expected int"), ("model", "chanels = 8", "unknown keys"),
                                               ("model", "layout = [[0, 3], [5, 1]]", "0 <= l <= 3")])
def test_train_config_values_checked(tmp_path, capsys, section, line, what):
    p = tmp_path / "c.toml"
    p.write_text(f"out = \"{tmp_path / 'run'}\"\n[{section}]\n{line}\n[data]\npaths = ['x']\n")
    code, err = run_cli(["train", str(p)], capsys)
    assert code == 2 and what in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_structure_that_does_not_match_its_hamiltonian(stores, tmp_path, capsys):
    """A DeepH-dock folder whose POSCAR gained an atom: one line saying so, not "S(k) is not positive definite"."""
    from uniham.data.store import DatasetStore

    ds, _ = stores
    sid = DatasetStore(ds).ids()[0]
    assert main(["dataset", "export", str(ds), sid, "-o", str(tmp_path / "h")]) == 0
    ham_atoms = DatasetStore(ds).load(sid, with_overlap=False).atoms
    grown = ham_atoms + ham_atoms[:1]
    grown.positions[-1] += [0.9, 0.7, 0.5]
    grown.write(tmp_path / "h" / "POSCAR", format="vasp")
    capsys.readouterr()
    code, err = run_cli(["bands", str(tmp_path / "h")], capsys)
    assert code == 2 and err.count("\n") == 1 and "does not match the Hamiltonian" in err, err


def test_molecule_bands_are_its_levels(cp2k, tmp_path, capsys):
    """`uniham bands` of a molecule (no periodic direction): its levels at Gamma, a HOMO-LUMO gap, a level plot."""
    import json

    (tmp_path / "h2.xyz").write_text("2\n\nH 0 0 0\nH 0 0 0.74\n")
    assert main(["dft", str(tmp_path / "h2.xyz"), "-o", str(tmp_path / "h2"), "--basis", "SZV-MOLOPT-SR-GTH",
                 "--ke-cutoff", "2700"]) == 0
    capsys.readouterr()
    assert main(["bands", str(tmp_path / "h2"), "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "b.json").read_text())
    assert "its levels at Gamma" in out and "HOMO-LUMO gap" in out and len(res["kpoints_frac"]) == 1
    # sigma-sigma* of H2 in a minimal basis (21 eV here; PBE in a complete basis gives ~11 eV)
    assert 10 < res["gap"]["gap_eV"] < 30 and (tmp_path / "b.png").stat().st_size > 5000

"""The zeroth-step Hamiltonian H0 (CP2K, superposed atomic densities) and the ΔH = H - H0 pass over a store.

* ``run_dft(zeroth_step=True)`` is CP2K's own ``MAX_SCF 1`` Kohn-Sham matrix of the SCF's very input (same
  cutoff, EPS_DEFAULT, k-mesh of the SCF): entrywise within 1e-3 meV, for Si and NaCl, although it runs a
  1x1x1 mesh and no band check; it is not the SCF's H;
* ``uniham dataset zeroth`` stores ΔH within the cutoff, resumes without redoing anything, never writes to
  the source, and a derived store is no build target; bad input is one line.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from uniham.cli import main

from helpers import train_config
from uniham.dft import cp2k_engine as ce
from uniham.dft.cp2k_engine import Cp2kSettings, run_dft
from uniham.errors import UnihamError

TINY = Path(__file__).parent / "data" / "tiny_recipe.toml"
CELLS = {"Si": lambda: bulk("Si", "diamond", a=5.431), "NaCl": lambda: bulk("NaCl", "rocksalt", a=5.64)}


def _cp2k_max_scf_1(scf_input: str, workdir: Path, box, n: int = 1) -> dict:
    """CP2K run on the SCF's own input with only MAX_SCF set to ``n`` -> {key: block (eV)} in uniham's labels."""
    workdir.mkdir()
    (workdir / "uniham.inp").write_text(re.sub(r"MAX_SCF \d+", f"MAX_SCF {n}", scf_input))
    subprocess.run([ce.find_cp2k(), "-i", "uniham.inp", "-o", "uniham.out"], cwd=workdir, check=True,
                   env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, capture_output=True)
    text = (workdir / "uniham.out").read_text()
    dims = [ce.load_basis(x, "SZV-MOLOPT-SR-GTH").orbital_basis().dim for x in box.get_chemical_symbols()]
    offs = np.concatenate([[0], np.cumsum(dims)])
    blocks = ce.read_csr_images(workdir, "KS", ce._image_table(text, "KS"), np.repeat(np.arange(len(box)), dims), offs)
    return {k: b * ce.HARTREE_EV for k, b in ce.to_uniham_images(blocks, ce.cp2k_wrap_shift(box)).items()}


@pytest.mark.parametrize("name", list(CELLS))
def test_zeroth_step_is_cp2k_max_scf_1_of_the_scf_input(cp2k, tmp_path, name):
    kw = dict(basis="SZV-MOLOPT-SR-GTH", ecut=300, eps_default=1e-10)
    scf = run_dft(CELLS[name](), Cp2kSettings(kmesh=(3, 3, 3), workdir=str(tmp_path / "scf"), **kw))
    ref = _cp2k_max_scf_1((tmp_path / "scf" / "uniham.inp").read_text(), tmp_path / "ref", scf.atoms)
    h0 = run_dft(CELLS[name](), Cp2kSettings(zeroth_step=True, **kw))
    assert h0.provenance["settings"]["kmesh"] == [1, 1, 1] and h0.provenance["scf"]["zeroth_step"]
    assert h0.provenance["check_vs_cp2k_bands"]["kpoints_frac"] == [] and np.isnan(h0.fermi_level)
    assert set(h0.H) <= set(ref) and all(not ref[k].any() for k in set(ref) - set(h0.H))
    err = max(np.abs(h0.H[k] - ref[k]).max() for k in h0.H)
    assert 1e3 * err < 1e-3, f"H0 vs CP2K MAX_SCF 1: {1e3 * err:.2e} meV"
    dscf = max(np.abs(h0.H[k] - scf.H[k]).max() for k in h0.H if k in scf.H)
    assert dscf > 0.01, "H0 equals the SCF's H: not the zeroth step"
    assert h0.hermiticity_error("H") < 1e-9


def test_scf_steps_is_cp2k_max_scf_2_of_the_scf_input(cp2k, tmp_path):
    """``scf_steps=2`` (H after one density update, bench/first_step_prior.py) is CP2K's own MAX_SCF 2 Kohn-Sham
    matrix of the SCF's input (atomic guess, the SCF's k-mesh and mixing), entrywise; it is neither H0 nor the SCF's H,
    and it lies closer to the SCF's H than H0 does."""
    kw = dict(basis="SZV-MOLOPT-SR-GTH", ecut=300, eps_default=1e-10, kmesh=(3, 3, 3))
    scf = run_dft(CELLS["NaCl"](), Cp2kSettings(workdir=str(tmp_path / "scf"), **kw))
    ref = _cp2k_max_scf_1((tmp_path / "scf" / "uniham.inp").read_text(), tmp_path / "ref", scf.atoms, n=2)
    h1 = run_dft(CELLS["NaCl"](), Cp2kSettings(scf_steps=2, n_check_kpoints=0, **kw))
    h0 = run_dft(CELLS["NaCl"](), Cp2kSettings(zeroth_step=True, **kw))
    assert h1.provenance["scf"]["cycles"] == 2 and h1.provenance["scf"]["converged"] is None
    assert np.isnan(h1.fermi_level) and "not converged" in h1.provenance["hamiltonian"]
    assert 1e3 * max(np.abs(h1.H[k] - ref[k]).max() for k in h1.H) < 1e-3
    dist = {name: np.mean([np.abs(h.H[k] - scf.H[k]).mean() for k in scf.H if k in h.H]) for name, h in
            (("h1", h1), ("h0", h0))}
    assert 1e-5 < dist["h1"] < dist["h0"], dist


def test_zeroth_step_cli(cp2k, tmp_path, capsys):
    from uniham.io import read_hamiltonian

    p = tmp_path / "Si.xyz"
    p.write_text('2\nLattice="0 2.7155 2.7155 2.7155 0 2.7155 2.7155 2.7155 0" Properties=species:S:1:pos:R:3 '
                 'pbc="T T T"\nSi 0 0 0\nSi 1.357750 1.357750 1.357750\n')
    assert main(["dft", str(p), "-o", str(tmp_path / "h0"), "--zeroth-step", "--basis", "SZV-MOLOPT-SR-GTH",
                 "--ke-cutoff", "3000"]) == 0
    out = capsys.readouterr().out
    assert "zeroth-step" in out and "no SCF" in out
    ham = read_hamiltonian(tmp_path / "h0")
    info = json.loads((tmp_path / "h0" / "info.json").read_text())
    assert "zeroth-step" in json.dumps(info) and ham.hermiticity_error("H") < 1e-9
    assert main(["dft", str(p), "-o", str(tmp_path / "x"), "--zeroth-step", "--smearing", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("uniham: error:") and err.count("\n") == 1 and "--smearing" in err


def test_delta_pass_resumes_and_leaves_the_source_alone(stores, tmp_path, capsys):
    from uniham.data.build import build
    from uniham.data.store import DatasetStore, sha256
    from uniham.data.zeroth_step import zeroth_pass

    src = stores[0]
    before = {f.name: sha256(f) for f in (src / "shards").iterdir()} | {"manifest": sha256(src / "manifest.json")}
    s1 = zeroth_pass(src, tmp_path / "dh", cutoff=4.0, workers=1, progress=False, limit=1)
    assert s1["done"] == 1 and s1["failed"] == 0
    s2 = zeroth_pass(src, tmp_path / "dh", cutoff=4.0, workers=1, progress=False)
    assert s2["already_done"] == 1 and s2["done"] == 1  # the rest only: nothing redone
    assert {f.name: sha256(f) for f in (src / "shards").iterdir()} | {"manifest": sha256(src / "manifest.json")} == before
    dh, scf = DatasetStore(tmp_path / "dh"), DatasetStore(src)
    assert dh.manifest["derived"]["kind"] == "delta_h0" and not dh.verify() and len(dh.ids()) == 2
    sid = dh.ids()[0]
    raw, d = scf.load_raw(sid), dh.load_raw(sid)
    pos, cell = d["positions"], d["cell"]
    dist = np.linalg.norm(pos[d["keys"][:, 4]] + d["keys"][:, :3] @ cell - pos[d["keys"][:, 3]], axis=1)
    assert dist.max() <= 4.0 + 1e-8 and len(d["keys"]) < len(raw["keys"])
    # ΔH is H - H0 of a fresh zeroth-step run, to the stored step
    from ase import Atoms
    rec = dh.manifest["structures"][sid]
    h0 = run_dft(Atoms(raw["symbols"], positions=raw["positions"], cell=raw["cell"], pbc=raw["pbc"]),
                 Cp2kSettings(basis=raw["basis"], ecut=200.0, eps_default=1e-10, zeroth_step=True))
    H = scf.hamiltonian(raw, sid, with_overlap=False).H
    dims = {k: H[tuple(k)].size for k in map(tuple, d["keys"].tolist())}
    start, worst = 0, 0.0
    for k in map(tuple, d["keys"].tolist()):
        want = H[k] - h0.H[k]
        worst = max(worst, np.abs(d["H"][start:start + dims[k]].reshape(want.shape) - want).max())
        start += dims[k]
    assert worst <= rec["H_step_eV"] * 0.51 + 1e-12
    assert rec["stats"]["mean_onsite_meV"] > 0.1 and rec["stats"]["mu_eV"] is not None
    # a derived store is no build target; a pass with other settings into it is refused
    with pytest.raises(UnihamError, match="not a build target"):
        build(TINY, tmp_path / "dh", workers=1, progress=False)
    with pytest.raises(UnihamError, match="other settings"):
        zeroth_pass(src, tmp_path / "dh", cutoff=5.0, workers=1, progress=False)
    assert main(["dataset", "zeroth", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a uniham dataset" in capsys.readouterr().err


def test_delta_model_trains_evaluates_and_predicts_on_h0(stores, tmp_path, capsys):
    """A network trained on a ΔH store learns ΔH (checkpoint target delta_h0); evaluate reports the band
    metric of H - ΔH + ΔH_pred and of H0 alone; predict runs CP2K's H0 and adds the network's ΔH; a ΔH model
    refuses H data."""
    import torch

    from uniham.io import read_hamiltonian
    from uniham.model.data import discover

    ds, dh = stores
    items = discover([dh])
    assert {it.target for it in items} == {"delta_h0"} and items[0].prior["basis"] == "SZV-MOLOPT-SR-GTH"
    cfg = train_config(tmp_path, dh, "run", 30, layers=1, checkpoint_every=10)
    assert main(["train", str(cfg)]) == 0
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["target"]["kind"] == "delta_h0" and ck["target"]["h0"]["eps_default"] == 1e-10
    capsys.readouterr()
    js = tmp_path / "ev.json"
    assert main(["evaluate", "--model", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(dh),
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "H0 alone" in out and "H0 + network" in out
    ev = json.loads(js.read_text())
    assert ev["band_metric"]["n"] == 2 and ev["h0_alone_band_metric"]["n"] == 2
    assert all(np.isfinite(r["band_mae_meV"]) for r in ev["band_metric_per_structure"])
    assert main(["evaluate", "--model", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(ds)]) == 2
    assert "learns 'delta_h0'" in capsys.readouterr().err
    # predict: H0 by CP2K + ΔH; equal to H0 + the network's blocks, S positive definite
    poscar = tmp_path / "POSCAR"
    from uniham.data.store import DatasetStore
    src = DatasetStore(ds)
    sid = src.ids()[0]
    ref = src.load(sid)
    ref.atoms.write(poscar, format="vasp")
    assert main(["predict", str(poscar), "--model", str(tmp_path / "run" / "checkpoint.pt"), "-o", str(tmp_path / "p")]) == 0
    pred = read_hamiltonian(tmp_path / "p")
    assert pred.hermiticity_error("H") < 1e-6 and np.linalg.eigvalsh(pred.Sk([0.1, 0.2, 0.3])).min() > 0
    info = json.loads((tmp_path / "p" / "info.json").read_text())
    assert info["uniham"]["target"]["kind"] == "delta_h0" and info["uniham"]["timing"]["h0_s"] > 0
    # the prediction's far blocks (beyond the model's edges) are H0's, and its H is close to the SCF's
    far = [k for k in ref.H if k in pred.H and np.linalg.norm(
        ref.atoms.positions[k[4]] + np.asarray(k[:3]) @ ref.atoms.cell.array - ref.atoms.positions[k[3]]) > 6.0]
    assert far and max(np.abs(pred.H[k] - ref.H[k]).max() for k in far) < 0.05


def test_delta_model_with_h0_features(stores, tmp_path, capsys):
    """[model] prior = true: the network also takes H0 (from the ΔH and SCF stores in training and evaluation,
    from CP2K in prediction); a prior model on H data is refused in one line."""
    import torch

    from uniham.data.store import DatasetStore

    ds, dh = stores
    cfg = train_config(tmp_path, dh, "run", 10, layers=1, model={"prior": True})
    assert main(["train", str(cfg)]) == 0
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["model_config"]["prior"] and ck["target"]["kind"] == "delta_h0"
    js = tmp_path / "ev.json"
    assert main(["evaluate", "--model", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(dh),
                 "--json", str(js)]) == 0
    assert np.isfinite(json.loads(js.read_text())["band_metric"]["median_meV"])
    ref = DatasetStore(ds).load(DatasetStore(ds).ids()[0])
    ref.atoms.write(tmp_path / "POSCAR", format="vasp")
    assert main(["predict", str(tmp_path / "POSCAR"), "--model", str(tmp_path / "run" / "checkpoint.pt"),
                 "-o", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    bad = train_config(tmp_path, ds, "bad", 10, model={"prior": True})
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "prior = true needs ΔH data" in err and err.count("\n") == 1


def test_evaluation_report(stores, tmp_path, capsys):
    """`uniham evaluate --report DIR`: Markdown + PNG (per-element heat map, material figures with bands and
    Im ε(ω)), a JSON with the same figures; the band metric per family."""
    ds, dh = stores
    cfg = train_config(tmp_path, dh, "run", 10, layers=1, model={"prior": True})
    assert main(["train", str(cfg)]) == 0
    rep = tmp_path / "rep"
    assert main(["evaluate", "--model", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(dh),
                 "--report", str(rep)]) == 0
    assert f"report: {rep / 'report.md'}" in capsys.readouterr().out
    md = (rep / "report.md").read_text()
    js = json.loads((rep / "report.json").read_text())
    assert (rep / "mae_per_element.png").stat().st_size > 10_000 and "H0 alone" in md
    assert js["materials"] and all((rep / m["png"]).exists() and np.isfinite(m["im_eps_xx_mae"]) for m in js["materials"])
    assert js["by_source"][0]["n"] == 2 and "| elements | 2 |" in md


def test_model_refuses_data_of_other_settings(stores, tmp_path, capsys):
    """A ΔH model evaluated on ΔH of an H0 made with other settings: one line, exit status 2; the checkpoint
    records the CP2K version(s) of its training H0, which predict compares with the one it runs."""
    import shutil

    import torch

    ds, dh = stores
    cfg = train_config(tmp_path, dh, "run", 3, layers=1)
    assert main(["train", str(cfg)]) == 0
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["target"]["h0_cp2k_versions"] and all(re.match(r"\d{4}", v) for v in ck["target"]["h0_cp2k_versions"])
    other = tmp_path / "dh_other"
    shutil.copytree(dh, other)
    m = json.loads((other / "manifest.json").read_text())
    m["derived"]["source"] = str(ds.resolve())
    m["derived"]["dft"]["eps_default"] = 1e-8
    (other / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "H0 of other settings" in err and err.count("\n") == 1, err


def test_model_reaching_past_the_stored_delta_is_refused(stores, tmp_path, capsys):
    """[model] cutoff beyond the ΔH store's cutoff_A: edges with no ΔH target; one line, before any sample."""
    _, dh = stores
    cfg = train_config(tmp_path, dh, "far", 3, layers=1, cutoff=6.0)
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "beyond the ΔH store's 5.0 A" in err and err.count("\n") == 1, err
    assert not (tmp_path / "far" / "samples.pt").exists()

"""Shipped models (uniham.pretrained): name resolution, checksums, the experimental notice, `uniham models`;
and the model the package ships: present, checksum-verified, covering db1's elements, predicting real Si."""
import json
import shutil

import numpy as np
import pytest
import torch

import uniham.pretrained as pre
from uniham.cli import main
from uniham.errors import UnihamError

from helpers import train_config


@pytest.fixture
def shipped(tmp_path, monkeypatch, stores):
    """A package folder of shipped models holding one tiny ΔH model ("tiny", experimental, the default)."""
    ds, dh = stores
    cfg = train_config(tmp_path, dh, "run", 5, layers=1)
    assert main(["train", str(cfg)]) == 0
    folder = tmp_path / "pretrained"
    folder.mkdir()
    shutil.copyfile(tmp_path / "run" / "best.pt", folder / "tiny.pt")
    (folder / "index.json").write_text(json.dumps({"default": "tiny", "models": {"tiny": {
        "file": "tiny.pt", "sha256": pre.sha256_file(folder / "tiny.pt"), "status": "experimental",
        "card": "tiny.md", "summary": "a test model"}}}))
    monkeypatch.setattr(pre, "HERE", folder)
    monkeypatch.setattr(pre, "INDEX", folder / "index.json")
    return folder, ds


def test_resolution_checksum_and_notice(shipped, tmp_path, capsys):
    folder, ds = shipped
    path, entry = pre.resolve(None)
    assert path == folder / "tiny.pt" and entry["name"] == "tiny" and "experimental" in pre.notice(entry)
    assert pre.resolve("tiny")[0] == path and pre.resolve(str(path))[1] is None  # a path: no entry, no notice
    with pytest.raises(UnihamError, match="neither a checkpoint file nor a shipped model .shipped: tiny"):
        pre.resolve("nonesuch")
    assert main(["models"]) == 0 and "tiny (default): experimental; a test model" in capsys.readouterr().out
    # predict with no --model uses the default and says it is experimental, in one line
    from uniham.data.store import DatasetStore

    st = DatasetStore(ds)
    st.load(st.ids()[0]).atoms.write(tmp_path / "POSCAR", format="vasp")
    assert main(["predict", str(tmp_path / "POSCAR"), "-o", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert sum("is experimental" in line for line in out.splitlines()) == 1
    assert json.loads((tmp_path / "p" / "info.json").read_text())["uniham"]["shipped_model"]["name"] == "tiny"
    # one flipped byte in the shipped file: refused before torch reads it, exit status 2, one line
    raw = bytearray((folder / "tiny.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / "tiny.pt").write_bytes(bytes(raw))
    assert main(["predict", str(tmp_path / "POSCAR"), "-o", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "does not match its recorded checksum" in err and err.count("\n") == 1
    (folder / "tiny.pt").unlink()
    with pytest.raises(UnihamError, match="missing from the installation"):
        pre.resolve("tiny")


def test_no_shipped_model_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pre, "INDEX", tmp_path / "index.json")
    (tmp_path / "POSCAR").write_text("Si\n1\n0 2.7 2.7\n2.7 0 2.7\n2.7 2.7 0\nSi\n2\nCartesian\n0 0 0\n1.35 1.35 1.35\n")
    assert main(["predict", str(tmp_path / "POSCAR"), "-o", str(tmp_path / "p")]) == 2
    assert "no model ships with this uniham" in capsys.readouterr().err



def _shipped_card() -> tuple:
    path, entry = pre.resolve(None)
    return path, entry, json.loads((pre.HERE / entry["card"]).with_suffix(".json").read_text())


def test_the_shipped_model():
    """The package's default model: present, checksum as recorded, plain data, and a card that says what it is."""
    idx = json.loads(pre.INDEX.read_text())
    assert idx["default"] in idx["models"]
    path, entry, card = _shipped_card()
    assert pre.sha256_file(path) == entry["sha256"] and entry["status"] in ("default", "experimental")
    ck = torch.load(path, weights_only=True, map_location="cpu")  # never unpickles code
    n = sum(v.numel() for v in ck["state_dict"].values())
    assert n == card["parameters"] <= 2.5e6 and path.stat().st_size < 20 * 2 ** 20
    assert len(card["elements_covered"]) >= 60 and {"Si", "Cu", "O", "Fe"} <= set(card["elements_covered"])
    assert card["data"]["split_rule"]["split_by"] == "composition" and card["split"] == "test"
    bm, h0 = card["test"]["band_metric"], card["test"]["h0_alone_band_metric"]
    assert bm["n"] >= 50 and np.isfinite([bm["median_meV"], bm["p90_meV"]]).all()
    assert card["test"]["mae_per_element_meV"] and card["training"]["totals"]["cpu_core_hours"] > 0
    assert any("spin-restricted" in x for x in card["known_limits"])
    if entry["status"] == "default":  # the rule of a default: its band median beats H0 alone and the direct model
        assert bm["median_meV"] < h0["median_meV"] and bm["median_meV"] < card["baseline_direct"]["band_metric"]["median_meV"]
    assert (pre.HERE / entry["card"]).read_text().startswith(f"# Model card: {entry['name']}")


# Si_diamond.cif by `uniham dft` (CP2K 2023.1, DZVP-MOLOPT-SR, PBE, 9x9x9 k) then `uniham bands`: indirect gap 0.632 eV.
SCF_GAP_SI_EV = 0.632


def test_shipped_model_predicts_silicon(cp2k, tmp_path, capsys):
    """The README's main command: `uniham predict examples/Si_diamond.cif --bands` with the shipped model, no SCF.
    Measured: uniham-v1 after stretch 1 0.689 eV, after stretch 2 0.623 eV (SCF 0.632 eV)."""
    out = tmp_path / "Si"
    assert main(["predict", "examples/Si_diamond.cif", "-o", str(out), "--bands"]) == 0
    assert "band gap" in capsys.readouterr().out
    res = json.loads((out / "bands.json").read_text())
    assert res["fermi_level_source"] == "electron counting"
    assert abs(res["gap"]["gap_eV"] - SCF_GAP_SI_EV) < 0.12
    assert (out / "bands.png").stat().st_size > 10_000
    info = json.loads((out / "info.json").read_text())
    assert info["uniham"]["shipped_model"]["name"] == pre.resolve(None)[1]["name"]
    # `uniham info` says where it came from and, with --gap, its gap
    capsys.readouterr()
    assert main(["info", str(out), "--gap"]) == 0
    text = capsys.readouterr().out
    assert f"model {pre.resolve(None)[1]['name']} (H0 + ΔH" in text and "band gap" in text


def test_python_api_predicts_with_the_shipped_model_by_default(cp2k):
    """`uniham.predict(atoms)` (the README's Python tour): ASE Atoms in, the shipped default model, bands out."""
    from ase.build import bulk

    import uniham

    res = uniham.predict(bulk("Si", "diamond", a=5.431))
    assert res.hamiltonian.provenance["shipped_model"]["name"] == pre.resolve(None)[1]["name"]
    assert abs(res.bands(npoints=30)["gap"]["gap_eV"] - SCF_GAP_SI_EV) < 0.12

"""Training mechanics on a real CP2K Hamiltonian: learning, kill + resume = uninterrupted run, checkpoints
as plain data, predict/evaluate round trip."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from uniham.cli import main

from helpers import train_config


@pytest.fixture(scope="module")
def si_dock(cp2k, tmp_path_factory):
    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft
    from uniham.io import write_hamiltonian

    atoms = bulk("Si", "diamond", a=5.431)
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    ham = run_dft(atoms, Cp2kSettings(basis="SZV-MOLOPT-SR-GTH", ecut=200, kmesh=(3, 3, 3), n_check_kpoints=0))
    out = tmp_path_factory.mktemp("si") / "si"
    write_hamiltonian(ham, out)
    return out


def _config(tmp_path: Path, data: Path, name: str, steps: int, model: dict | None = None, **train) -> Path:
    return train_config(tmp_path, data, name, steps, model, **train)


def test_learns_and_checkpoint_is_plain_data(si_dock, tmp_path, capsys):
    cfg = _config(tmp_path, si_dock, "a", 150, ema=0.0)
    assert main(["train", str(cfg)]) == 0
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    first, last = float(rows[1].split(",")[4]), float(rows[-1].split(",")[4])
    assert last < 0.5 * first, (first, last)
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 150 and ck["model_config"]["kind"] == "so2" and ck["config"]["train"]["steps"] == 150
    # no validation set: best.pt is this run's final model
    assert torch.load(tmp_path / "a" / "best.pt", weights_only=True)["step"] == 150
    assert (tmp_path / "a" / "learning_curve.png").stat().st_size > 1000
    # predict and evaluate with it
    capsys.readouterr()
    assert main(["predict", str(si_dock / "POSCAR"), "--model", str(tmp_path / "a" / "checkpoint.pt"),
                 "-o", str(tmp_path / "pred")]) == 0
    from uniham.io import read_hamiltonian

    pred = read_hamiltonian(tmp_path / "pred")
    assert pred.hermiticity_error("H") < 1e-5 and np.linalg.eigvalsh(pred.Sk([0.1, 0.2, 0.3])).min() > 0
    assert main(["evaluate", "--model", str(tmp_path / "a" / "checkpoint.pt"), "--data", str(si_dock),
                 "--json", str(tmp_path / "ev.json")]) == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert {"mae_meV", "mae_per_element_meV", "n_structures"} <= set(ev) and ev["n_structures"] == 1
    # the MAE by distance shell covers every entry once: on-site blocks, then off-site shells
    assert sum(ev["entries_by_distance"].values()) == ev["n_entries"] and "on-site" in ev["mae_by_distance_meV"]
    tot = sum(ev["mae_by_distance_meV"][k] * n for k, n in ev["entries_by_distance"].items())
    assert abs(tot / ev["n_entries"] - ev["mae_meV"]) < 1e-6 * ev["mae_meV"]
    assert abs(ev["mae_meV"] - last) < 0.5 * last + 5  # same data, EMA off: close to the last training MAE


def test_killed_run_resumes_exactly(si_dock, tmp_path):
    """SIGTERM mid-run, then --resume: same final weights and optimizer state as an uninterrupted run."""
    ref = _config(tmp_path, si_dock, "ref", 60)
    assert main(["train", str(ref)]) == 0
    cut = _config(tmp_path, si_dock, "cut", 60)
    proc = subprocess.Popen([sys.executable, "-m", "uniham.cli", "train", str(cut)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ck = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    stopped = torch.load(ck, weights_only=True)
    assert stopped["step"] < 60, "the run ended before the signal: make it longer"
    assert main(["train", str(cut), "--resume"]) == 0
    a = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)
    b = torch.load(ck, weights_only=True)
    assert a["step"] == b["step"] == 60
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6, rtol=1e-5), k
    for k in a["ema_state_dict"]:
        assert torch.allclose(a["ema_state_dict"][k], b["ema_state_dict"][k], atol=1e-6, rtol=1e-5), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.allclose(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"], atol=1e-9, rtol=1e-5) for i in sa)
    # no validation set: the killed run's best.pt (its weights at the signal) is replaced by the final model
    assert torch.load(tmp_path / "cut" / "best.pt", weights_only=True)["step"] == 60


def test_bad_config_and_checkpoint(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nstepz = 3\n[data]\npaths = ['x']\n")
    assert main(["train", str(p)]) == 2 and "unknown [train] keys" in capsys.readouterr().err
    p.write_text("[model]\nrange_eps = 1e-9\n[data]\npaths = ['x']\n")
    assert main(["train", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad [model] section: range_eps 1e-09" in err and "Traceback" not in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    (tmp_path / "s.xyz").write_text("1\n\nSi 0 0 0\n")
    assert main(["predict", str(tmp_path / "s.xyz"), "--model", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "not a uniham checkpoint" in capsys.readouterr().err
    assert os.path.exists(bad)


def test_sample_cache_round_trip(si_dock, tmp_path):
    """The compact cache restores graphs, masks and blocks exactly; a stale key is ignored."""
    from uniham.model.data import (
        discover,
        layout_for,
        load_sample_cache,
        load_samples,
        save_sample_cache,
    )

    items = discover([si_dock])
    layout = layout_for(items)
    samples = load_samples(items, 5.0, layout, progress=False)
    save_sample_cache(tmp_path / "s.pt", "k1", {"train": samples}, {"layout": [list(x) for x in layout.counts]})
    assert load_sample_cache(tmp_path / "s.pt", "other") is None
    sets, meta = load_sample_cache(tmp_path / "s.pt", "k1")
    back = sets["train"][0]
    assert meta["layout"] == [list(x) for x in layout.counts]
    assert set(back) == set(samples[0])
    for k, v in samples[0].items():
        if torch.is_tensor(v):
            assert torch.equal(back[k], v), k
        else:
            assert back[k] == v


def test_distributed_data_parallel_two_ranks(si_dock, tmp_path):
    """torchrun with 2 CPU ranks (gloo): one summary (rank 0), a finite checkpoint at the last step."""
    cfg = _config(tmp_path, si_dock, "ddp", 6, ema=0.0)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "uniham.cli", "train", str(cfg)], capture_output=True, text=True, env=env,
                       timeout=600, check=False)
    assert p.returncode == 0, [l for l in p.stderr.splitlines() if "uniham" in l or "Error" in l][-8:]
    summaries = [line for line in p.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["step"] == 6
    ck = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 6 and all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


def test_per_pair_ranges_through_training_and_prediction(si_dock, tmp_path):
    """range_eps in [model]: graphs and targets reach each pair's basis range of the data's own basis
    family (SZV here), the checkpoint keeps those ranges, and predict writes H out to them."""
    from uniham.io import read_hamiltonian
    from uniham.model.graph import inverse_exponents

    cfg = _config(tmp_path, si_dock, "p", 3, model={"range_eps": 1e-4})
    assert main(["train", str(cfg)]) == 0
    ck = torch.load(tmp_path / "p" / "checkpoint.pt", weights_only=True)
    assert ck["basis_family"] == "SZV-MOLOPT-SR-GTH" and ck["model_config"]["range_eps"] == 1e-4
    ia = ck["state_dict"]["inv_alpha"].double().numpy()
    assert np.allclose(ia, inverse_exponents("SZV-MOLOPT-SR-GTH"), rtol=1e-6)
    assert main(["predict", str(si_dock / "POSCAR"), "--model", str(tmp_path / "p" / "checkpoint.pt"),
                 "-o", str(tmp_path / "pp")]) == 0
    pred = read_hamiltonian(tmp_path / "pp")
    cell, pos = pred.atoms.cell.array, pred.atoms.positions
    far = max(np.linalg.norm(pos[k[4]] + np.asarray(k[:3]) @ cell - pos[k[3]]) for k in pred.H)
    assert 5.0 < far < 8.0, far  # past the 5 A floor, within Si-Si SZV's range at 1e-4


def test_band_loss_is_the_first_order_band_shift(si_dock, tmp_path):
    """The band loss's window matrix W = C^† δH(k) C: its diagonal equals the exact shift of the DFT bands
    near E_F under a small Hermitian change δH of the graph's blocks (to second order), and a run with
    band_weight trains."""
    from uniham.hamiltonian import Hamiltonian
    from uniham.io import read_hamiltonian
    from uniham.model.band_loss import band_kpoint, band_sample, window_matrix
    from uniham.model.data import make_sample
    from uniham.model.graph import collate
    from uniham.model.layout import Layout

    ref = read_hamiltonian(si_dock)
    layout = Layout.from_bases(ref.basis.values())
    s = make_sample(ref, 5.0, layout, torch.float64)
    s |= band_sample(ref, s, layout, "si")
    rng = np.random.default_rng(0)
    eps = 1e-4
    rs = torch.zeros_like(s["h_site"])
    re = torch.zeros_like(s["h_edge"])
    H = {k: v.copy() for k, v in ref.H.items()}
    sym = ref.atoms.get_chemical_symbols()
    idx = {x: layout.element_index(b) for x, b in ref.basis.items()}
    for a in range(len(sym)):
        x = rng.normal(size=(ref.basis[sym[a]].dim,) * 2) * eps
        x = x + x.T
        H[(0, 0, 0, a, a)] = H[(0, 0, 0, a, a)] + x
        rs[a][np.ix_(idx[sym[a]], idx[sym[a]])] = torch.tensor(x)
    i, j = s["edge_index"].numpy()
    rev = s["reverse"].numpy()
    for e in range(len(i)):
        if rev[e] < e:
            continue
        k = (*s["shift"][e].tolist(), int(i[e]), int(j[e]))
        kr = (*(-s["shift"][e]).tolist(), int(j[e]), int(i[e]))
        x = rng.normal(size=H[k].shape) * eps
        H[k] = H[k] + x
        H[kr] = H[kr] + x.T
        re[e][np.ix_(idx[sym[i[e]]], idx[sym[j[e]]])] = torch.tensor(x)
        re[rev[e]][np.ix_(idx[sym[j[e]]], idx[sym[i[e]]])] = torch.tensor(x.T)
    batch = collate([s])
    w = window_matrix(rs, re, batch)[0].numpy()
    kp = band_kpoint("si", ref.atoms.pbc)
    e0 = ref.eigenvalues(kp[None])[0]
    e1 = Hamiltonian(ref.atoms, ref.basis, H, ref.S, ref.fermi_level, ref.n_electrons).eigenvalues(kp[None])[0]
    m = s["band_m"].numpy()
    assert m.sum() >= 2 and np.abs(w - w.conj().T).max() < 1e-5 * np.abs(w).max()  # (C in complex64)
    from uniham.properties.band_metric import reference_energy

    e_ref, _ = reference_energy(e0[None], ref.n_electrons, ref.fermi_level)
    win = np.sort(np.argsort(np.abs(e0 - e_ref))[:16])
    win = win[np.abs(e0[win] - e_ref) <= 2.0]
    assert len(win) == m.sum()
    first, exact = np.diag(w).real[:m.sum()], (e1 - e0)[win]
    assert np.abs(first - exact).max() < 50 * eps ** 2, (first, exact)
    assert np.abs(exact).max() > 1e-2 * eps  # the shifts are not trivially zero
    cfg = _config(tmp_path, si_dock, "b", 20, band_weight=1.0)
    assert main(["train", str(cfg)]) == 0


def test_predict_bands_api_and_uncovered_elements(si_dock, tmp_path, capsys):
    """`uniham predict --bands` writes bands.json (the schema of `uniham bands`) and a plot; an element the model
    never saw is refused in one line (exit 2); the Python API gives the same bands and a DOS."""
    import uniham
    from ase.build import bulk

    cfg = _config(tmp_path, si_dock, "m", 10)
    assert main(["train", str(cfg)]) == 0
    ck = str(tmp_path / "m" / "best.pt")
    capsys.readouterr()
    assert main(["predict", str(si_dock / "POSCAR"), "--model", ck, "-o", str(tmp_path / "p"), "--bands",
                 "--npoints", "30"]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "p" / "bands.json").read_text())
    assert {"kpoints_frac", "labels", "energies_eV", "fermi_level_eV", "gap"} <= set(res) and "bands:" in out
    assert (tmp_path / "p" / "bands.png").stat().st_size > 5000
    api = uniham.predict(si_dock / "POSCAR", ck)
    b = api.bands(npoints=30)
    assert np.allclose(b["energies_eV"], res["energies_eV"], atol=1e-6)
    e, dos = api.dos(kmesh=(3, 3, 3), broadening=0.2)
    assert abs(np.trapezoid(dos, e) - 2 * api.hamiltonian.norb) < 0.05 * api.hamiltonian.norb
    (tmp_path / "C.cif").write_text("")
    bulk("C", "diamond", a=3.57).write(tmp_path / "C.cif")
    assert main(["predict", str(tmp_path / "C.cif"), "--model", ck, "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "not trained on C" in err and err.count("\n") == 1


def test_campaign_stretches_continue_from_the_committed_weights(si_dock, tmp_path):
    """scripts/campaign.py: two stretches; the second warm-starts from the first's exported weights (its first
    evaluation is far below the first stretch's start), the tally adds up, the weights load as plain data and predict."""
    import csv

    camp = tmp_path / "camp"
    camp.mkdir()
    cfg = _config(tmp_path, si_dock, "local", 10 ** 6, eval_every=5, checkpoint_every=50)
    (camp / "config.toml").write_text(cfg.read_text())
    script = Path(__file__).resolve().parents[1] / "scripts" / "campaign.py"
    for k in range(2):
        p = subprocess.run([sys.executable, str(script), "run", str(camp), "--hours", str(15 / 3600)],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
    state = json.loads((camp / "state.json").read_text())
    s1, s2 = state["stretches"]
    assert not s1["warm_start"] and s2["warm_start"] and s1["kept"]
    assert abs(state["totals"]["cpu_core_hours"] - (s1["wall_h"] + s2["wall_h"])) < 1e-3
    assert state["totals"]["steps"] == s1["steps"] + s2["steps"]
    rows = list(csv.DictReader(open(camp / "learning_curve.csv")))
    first = [float(r["train_mae_meV"]) for r in rows if r["stretch"] == "1"]  # (no validation set here)
    second = [float(r["train_mae_meV"]) for r in rows if r["stretch"] == "2"]
    assert second[0] < 0.5 * first[0], (first[:3], second[:3])
    # (the last evaluation of a stretch cut by its time budget may come a few steps before its end)
    assert state["totals"]["steps"] - 10 <= int(rows[-1]["campaign_step"]) <= state["totals"]["steps"]
    ck = torch.load(camp / "weights.pt", weights_only=True)
    assert ck["optimizer"] is None if "optimizer" in ck else True
    assert main(["predict", str(si_dock / "POSCAR"), "--model", str(camp / "weights.pt"), "-o", str(tmp_path / "p")]) == 0
    assert (camp / "learning_curve.png").stat().st_size > 1000
    # a run of the same config made outside the campaign is adopted as its next stretch; another architecture is not
    other = _config(tmp_path, si_dock, "outside", 20)
    assert main(["train", str(other)]) == 0
    p = subprocess.run([sys.executable, str(script), "adopt", str(camp), str(tmp_path / "outside"), "--note", "t"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    s3 = json.loads((camp / "state.json").read_text())["stretches"][2]
    assert s3["steps"] == 20 and not s3["warm_start"] and s3["note"] == "t" and s3["n_train"] == 1
    wide = _config(tmp_path, si_dock, "wide", 5, model={"channels": 16})
    assert main(["train", str(wide)]) == 0
    p = subprocess.run([sys.executable, str(script), "adopt", str(camp), str(tmp_path / "wide")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "another architecture" in p.stderr


def test_hostile_and_damaged_checkpoints_are_one_line(si_dock, tmp_path, capsys):
    """Foreign torch files, a malicious pickle, an edited config, a missing or reshaped weight and altered
    weights (checksum) each give one line and exit 2 from predict, never a traceback or torch's advice to
    disable weights_only."""
    import pickle

    cfg = _config(tmp_path, si_dock, "m", 3)
    assert main(["train", str(cfg)]) == 0
    good = torch.load(tmp_path / "m" / "best.pt", weights_only=True)
    assert len(good["weights_sha256"]) == 64

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    cases = {"foreign_dict": {"foo": torch.zeros(2)}, "a_list": [torch.zeros(2)]}
    edited = dict(good, model_config=dict(good["model_config"], channels=16))
    cases["edited_config"] = edited
    sd = dict(good["state_dict"])
    sd.pop(next(iter(sd)))
    cases["missing_key"] = dict(good, state_dict=sd, weights_sha256=None)
    sd = {k: v.clone() for k, v in good["state_dict"].items()}
    k0 = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    sd[k0] += 1.0
    cases["altered_weights"] = dict(good, state_dict=sd)
    capsys.readouterr()
    for name, obj in [*cases.items(), ("malicious", None)]:
        path = tmp_path / f"{name}.pt"
        if obj is None:
            path.write_bytes(pickle.dumps(Evil()))
        else:
            torch.save(obj, path)
        code = main(["predict", str(si_dock / "POSCAR"), "--model", str(path), "-o", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(path) in err, (name, err)
        assert "weights_only=False" not in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "pwned").exists()


def test_gpu_stretch_packs_a_slice_and_trains_from_it_alone(si_dock, tmp_path):
    """scripts/gpu_stretch.py: a CPU stretch, then `pack` (a self-contained LZMA slice of the sample cache) and
    `run` on it with the database moved away (what a GPU node without the data sees): a warm start, the
    campaign's tally and learning curve advanced, the weights and state copied to OUT; a damaged slice is
    one line."""
    camp = tmp_path / "camp"
    camp.mkdir()
    cfg = _config(tmp_path, si_dock, "local", 10 ** 6, eval_every=5, checkpoint_every=50)
    (camp / "config.toml").write_text(cfg.read_text())
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    p = subprocess.run([sys.executable, str(scripts / "campaign.py"), "run", str(camp), "--hours", str(10 / 3600)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    p = subprocess.run([sys.executable, str(scripts / "gpu_stretch.py"), "pack", str(camp), "--mib", "1"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    packed = json.loads(p.stdout)
    assert packed["train_structures"] == 1 and packed["k"] == 0 and packed["mib"] < 1
    moved = si_dock.with_name("si_moved")
    si_dock.rename(moved)
    try:
        p = subprocess.run([sys.executable, str(scripts / "gpu_stretch.py"), "run", str(camp), "--minutes", "0.2",
                            "--device", "cpu", "--out", str(tmp_path / "OUT")],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        moved.rename(si_dock)
    assert p.returncode == 0, p.stderr[-2000:]
    state = json.loads((camp / "state.json").read_text())
    s1, s2 = state["stretches"]
    assert s2["warm_start"] and s2["n_train"] == 1 and state["totals"]["steps"] == s1["steps"] + s2["steps"]
    assert {"weights.pt", "state.json", "learning_curve.csv", "log.csv"} <= {f.name for f in (tmp_path / "OUT").iterdir()}
    ck = torch.load(camp / "weights.pt", weights_only=True)
    assert ck["elements_seen"] == [14] and ck["split_keys"]["train"]
    Path(packed["slice"]).write_bytes(b"\xfd7zXZ\x00 not really")
    p = subprocess.run([sys.executable, str(scripts / "gpu_stretch.py"), "run", str(camp), "--minutes", "0.1",
                        "--device", "cpu"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_soup_of_campaign_stretches_from_the_git_history(si_dock, tmp_path):
    """scripts/campaign.py soup: the stretches' weights are found in git by the sha256 state.json recorded, their
    mean is written (every tensor the average of the members'), predicts, and records its members; weights of
    another architecture are refused in one line."""
    import hashlib

    from uniham.errors import UnihamError
    from uniham.model.checkpoint import average_weights

    for name, steps in (("m1", 3), ("m2", 6)):
        assert main(["train", str(_config(tmp_path, si_dock, name, steps))]) == 0
    repo, git = tmp_path / "repo", ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    camp = repo / "camp"
    camp.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (camp / "config.toml").write_text("")
    stretches = []
    for n, name in enumerate(("m1", "m2"), 1):
        blob = (tmp_path / name / "best.pt").read_bytes()
        (camp / "weights.pt").write_bytes(blob)
        stretches.append({"stretch": n, "kept": True, "weights_sha256": hashlib.sha256(blob).hexdigest()})
        (camp / "state.json").write_text(json.dumps({"stretches": stretches, "totals": {}, "best_val_mae_meV": None}))
        subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(repo), "commit", "-qm", f"stretch {n}"], check=True)
    script = Path(__file__).resolve().parents[1] / "scripts" / "campaign.py"
    p = subprocess.run([sys.executable, str(script), "soup", str(camp), "--stretches", "1", "2", "-o",
                        str(tmp_path / "soup.pt")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    soup = torch.load(tmp_path / "soup.pt", weights_only=True)
    a, b = (torch.load(tmp_path / n / "best.pt", weights_only=True) for n in ("m1", "m2"))
    part = "ema_state_dict" if a.get("ema_state_dict") else "state_dict"
    diff = [k for k in a[part] if a[part][k].is_floating_point() and not torch.equal(a[part][k], b[part][k])]
    assert diff  # the two members differ, so the mean is a test
    for k in diff:
        assert torch.allclose(soup[part][k], (a[part][k].double() + b[part][k].double()).div(2).float(), atol=1e-7)
    assert [m["stretch"] for m in soup["soup"]["members"]] == [1, 2] and soup.get("optimizer") is None
    assert main(["predict", str(si_dock / "POSCAR"), "--model", str(tmp_path / "soup.pt"), "-o", str(tmp_path / "p")]) == 0
    assert main(["train", str(_config(tmp_path, si_dock, "wide", 2, model={"channels": 16}))]) == 0
    wide = torch.load(tmp_path / "wide" / "best.pt", weights_only=True)
    with pytest.raises(UnihamError, match="model_config differs"):
        average_weights([a, wide], ["m1", "wide"])

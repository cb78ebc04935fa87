"""Dataset recipes, the Dask builder and the store: determinism, kill -9 and resume, export, splits."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from uniham.cli import main
from uniham.data.build import split_ids
from uniham.data.recipe import load_recipe, plan, plan_json
from uniham.data.store import DatasetStore
from uniham.errors import UnihamError

TINY = Path(__file__).parent / "data" / "tiny_recipe.toml"

RICH = """
name = "rich"
seed = 3
elements = ["H", "B", "C", "N", "O", "Na", "Mg", "Al", "Si", "S", "Cl", "Ti", "Cu", "Zn", "Ga", "As", "Mo", "Se"]
[limits]
max_atoms = 6
[[sources]]
kind = "elements"
copies = 1
strain = 0.03
rattle = [0.02, 0.1]
supercells = [[1, 1, 1], [2, 1, 1]]
[[sources]]
kind = "prototypes"
max_atoms = 2
per_prototype = 2
copies = 1
rattle = 0.05
[[sources]]
kind = "molecules"
names = ["H2O", "CH4", "NH3", "LiF"]
[[sources]]
kind = "layers"
metals = ["Mo"]
chalcogens = ["S", "Se"]
pairs = [["B", "N"]]
copies = 1
rattle = 0.03
"""


def test_same_recipe_same_plan(tmp_path):
    p = tmp_path / "rich.toml"
    p.write_text(RICH)
    r1, r2 = load_recipe(p), load_recipe(p)
    (e1, s1), (e2, s2) = plan(r1), plan(r2)
    assert plan_json(r1, e1, s1) == plan_json(r2, e2, s2)
    assert len(e1) > 40 and {e.source for e in e1} == {"elements", "prototypes", "molecules", "layers"}
    assert any("LiF" == s["label"] for s in s1)  # Li not in the recipe: skipped with a reason
    layer = next(e for e in e1 if e.source == "layers")
    assert tuple(layer.atoms.pbc) == (True, True, False)
    # another seed gives other perturbations
    p2 = tmp_path / "rich2.toml"
    p2.write_text(RICH.replace("seed = 3", "seed = 4"))
    e3, _ = plan(load_recipe(p2))
    assert [e.id for e in e3] != [e.id for e in e1] or any(
        not np.allclose(a.atoms.positions, b.atoms.positions) for a, b in zip(e1, e3))


def test_bad_recipes(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("name = 'x'\n[[sources]]\nkind = 'nonsense'\n")
    with pytest.raises(UnihamError, match="source kind"):
        load_recipe(p)
    p.write_text("name = [\n")
    with pytest.raises(UnihamError, match="not a valid TOML"):
        load_recipe(p)


def _build(out, *extra, recipe=TINY):
    return subprocess.Popen([sys.executable, "-m", "uniham.cli", "dataset", "build", str(recipe), "--out", str(out),
                             "--workers", "1", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _running_cp2k(proc):
    """The first CP2K process started by the build ``proc`` (a psutil.Process), once there is one."""
    import psutil

    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        victim = next((c for c in psutil.Process(proc.pid).children(recursive=True)
                       if c.name().startswith("cp2k")), None)
        if victim is not None:
            return victim
    raise AssertionError("no CP2K process started within 300 s")


def _records(store: DatasetStore) -> dict:
    import h5py

    recs = {k: v for k, v in store.manifest["structures"].items()}
    for f in store.staging.glob("*.h5"):
        with h5py.File(f) as h5:
            recs[f.name[:-3]] = json.loads(h5.attrs["record"])
    return recs


def test_kill_9_and_resume(cp2k, tmp_path):
    out = tmp_path / "ds"
    proc = _build(out)
    deadline = time.time() + 300
    store = DatasetStore(out)
    while time.time() < deadline:
        time.sleep(0.2)
        if (out / "staging").exists() and len(list((out / "staging").glob("*.h5"))) >= 2:
            break
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the runner, its Dask workers and CP2K
    proc.wait()
    store = DatasetStore(out)
    before = _records(store)
    assert len(before) >= 2
    proc = _build(out)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode(), err.decode()[-2000:]  # a clean finish logs no dask shutdown noise
    store = DatasetStore(out)
    after = store.manifest["structures"]
    entries, _ = plan(load_recipe(TINY))
    assert set(after) | set(store.manifest["failures"]) == {e.id for e in entries}  # nothing lost
    for sid, rec in before.items():  # nothing redone: same run token and finish time
        assert after[sid]["run"] == rec["run"] and after[sid]["finished"] == rec["finished"]
    assert len({r["run"] for r in after.values()}) == 2
    assert store.verify() == [] and not list(store.staging.iterdir())
    assert sum(s["n_structures"] for s in store.manifest["shards"].values()) == len(after)
    for sid, rec in after.items():  # H rounded to the coarsest step that keeps the bands within 1 meV
        assert rec["H_step_eV"] in (5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6), sid
        assert rec["H_rounding_band_error_meV"] <= 1.0 or rec["H_step_eV"] == 1e-6, sid
    assert any(rec["H_step_eV"] == 5e-5 for rec in after.values())
    # a third run has nothing to do
    proc = _build(out)
    outp, err = proc.communicate(timeout=300)
    assert json.loads(outp.decode().strip().splitlines()[-1])["submitted"] == 0

    # export: a DeepH-dock folder, both halves, S from PySCF integrals, positive definite S(k)
    from uniham.io import read_hamiltonian

    sid = next(s for s in after if s.startswith("el-Si"))
    subprocess.run([sys.executable, "-m", "uniham.cli", "dataset", "export", str(out), sid, "-o",
                    str(tmp_path / "si")], check=True, capture_output=True)
    ham = read_hamiltonian(tmp_path / "si")
    assert ham.hermiticity_error("H") < 1e-6 and ham.hermiticity_error("S") < 1e-12
    assert np.linalg.eigvalsh(ham.Sk([0.1, 0.2, 0.3])).min() > 0
    # H kept out to each pair's basis range (beyond the 6 A cutoff), recorded with the structure
    from uniham.data.build import stored_range

    raw = store.load_raw(sid)
    keys = raw["keys"]
    dist = np.linalg.norm(raw["positions"][keys[:, 4]] + keys[:, :3] @ raw["cell"] - raw["positions"][keys[:, 3]], axis=1)
    reach = stored_range(raw["symbols"], raw["basis"], load_recipe(TINY).store)
    assert 6.0 < dist.max() <= reach.max() + 1e-6 and after[sid]["range_eps"] == 1e-6
    # and `dataset plan --size` counts exactly what the store holds, without DFT
    from uniham.data.build import stored_elements

    recipe = load_recipe(TINY)
    for e in entries:
        if e.id in after:
            assert stored_elements(e.atoms, recipe.dft["basis"], recipe.store) == store.load_raw(e.id)["H"].size, e.id
    info = json.loads(subprocess.run([sys.executable, "-m", "uniham.cli", "dataset", "info", str(out), "--json"],
                                     check=True, capture_output=True).stdout)
    assert info["n_structures"] == len(after) and info["elements"]["Si"] >= 2 and "n_failed" in info

    # remove: the structure leaves the manifest (kept under "removed" with the reason), shards stay
    # verified, new records are marked with the fixed image convention, and the next build redoes it
    from uniham.data.store import wrong_image_ids

    assert wrong_image_ids(store) == []  # built with the fixed CP2K reader
    assert all(r.get("image_convention") == "uniham" for r in after.values())
    assert main(["dataset", "remove", str(out), sid, "--reason", "test"]) == 0
    store = DatasetStore(out)
    assert sid not in store.manifest["structures"] and store.manifest["removed"][sid]["reason"] == "test"
    assert store.verify() == []
    proc = _build(out)
    outp, err = proc.communicate(timeout=300)
    assert json.loads(outp.decode().strip().splitlines()[-1])["submitted"] == 1, err.decode()[-2000:]
    assert "Traceback" not in err.decode(), err.decode()[-2000:]
    assert sid in DatasetStore(out).manifest["structures"]

    # merge: a new folder takes every structure with its data and record; a second merge takes only
    # what is missing; a folder from another recipe is refused
    import h5py

    merged = tmp_path / "merged"
    assert main(["dataset", "merge", str(merged), str(out)]) == 0
    a, b = DatasetStore(out), DatasetStore(merged)
    assert set(b.manifest["structures"]) == set(a.manifest["structures"]) and b.verify() == []
    for s_id, rec in a.manifest["structures"].items():
        rb = b.manifest["structures"][s_id]
        assert rb["run"] == rec["run"] and rb["merged_from"].startswith("ds/")
        with h5py.File(a.shards / rec["shard"]) as fa, h5py.File(b.shards / rb["shard"]) as fb:
            assert np.array_equal(fa[s_id]["Hq"][()], fb[s_id]["Hq"][()])
    b.remove([sid], "test")
    b = DatasetStore(merged)
    assert b.merge(DatasetStore(out)) == {"structures": 1, "failures": 0, "already_here": len(after) - 1}
    assert sid in DatasetStore(merged).manifest["structures"]
    # --skip-from: another machine's build leaves out what a folder of the same recipe already holds
    from uniham.data.build import build

    summary = build(TINY, tmp_path / "elsewhere", skip_from=[out], progress=False)
    assert summary["already_done"] == len(after) and summary["submitted"] == 0
    other = tmp_path / "other.toml"
    other.write_text(TINY.read_text().replace("seed = 11", "seed = 12"))
    assert main(["dataset", "build", str(other), "--out", str(tmp_path / "o"), "--limit", "0"]) == 0
    with pytest.raises(UnihamError, match="another recipe"):
        DatasetStore(merged).merge(DatasetStore(tmp_path / "o"))


def test_stopped_cp2k_is_not_a_failure(cp2k, tmp_path):
    """A CP2K run killed from outside (a stopped build) is not recorded as the structure's failure: the
    build goes on and the next build redoes it."""
    out = tmp_path / "ds"
    proc = _build(out)
    _running_cp2k(proc).terminate()
    outp, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(outp.decode().strip().splitlines()[-1])
    assert summary["interrupted"] == 1 and summary["failed"] == 0
    store = DatasetStore(out)
    assert store.manifest["failures"] == {} and len(store.manifest["structures"]) == summary["submitted"] - 1
    proc = _build(out)
    outp, err = proc.communicate(timeout=600)
    assert json.loads(outp.decode().strip().splitlines()[-1])["submitted"] == 1, err.decode()[-2000:]
    assert "Traceback" not in err.decode(), err.decode()[-2000:]
    assert len(DatasetStore(out).manifest["structures"]) == summary["submitted"]
    # such runs recorded as failures by uniham <= 0.1.1 are forgotten (and redone) by the next build
    from uniham.data.build import build

    sid = next(iter(DatasetStore(out).manifest["structures"]))
    store = DatasetStore(out)
    store.remove([sid], "test")
    store.stage({"id": sid, "ok": False, "record": {"reason": "CP2K failed (exit -15): no message"}})
    store.consolidate(force=True)
    assert sid in DatasetStore(out).manifest["failures"]
    assert build(TINY, out, limit=0, progress=False)["already_failed"] == 0
    assert DatasetStore(out).manifest["failures"] == {}


def test_stopped_build_stops_its_cp2k(cp2k, tmp_path):
    """SIGTERM (or ^C) to the build alone: the CP2K runs in flight on its workers are killed, not left
    running as orphans; the build exits with one line, records no failure and leaves the store consistent."""
    import psutil

    out, slow = tmp_path / "ds", tmp_path / "slow.toml"  # a dense k-mesh: each CP2K run lasts a while
    slow.write_text(TINY.read_text().replace("kmesh = [3, 3, 3]", "kmesh = [14, 14, 14]"))
    proc = _build(out, recipe=slow)
    victim = _running_cp2k(proc)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)  # the runner only, as a batch system's time limit or `kill PID`
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "uniham: interrupted" in err.decode().splitlines(), err.decode()
    assert "1 CP2K runs in flight killed" in err.decode()
    try:
        victim.wait(timeout=10)
    except psutil.TimeoutExpired:
        victim.kill()
        raise AssertionError("the build's CP2K run outlived the stopped build")
    store = DatasetStore(out)
    assert store.manifest["failures"] == {} and store.verify() == [] and not list(store.staging.iterdir())


def test_time_budget_stops_cleanly(cp2k, tmp_path):
    """--hours: once the budget is spent no new structure starts; the running ones finish and are packed,
    and the next run does the rest."""
    from uniham.data.build import build

    out = tmp_path / "ds"
    summary = build(TINY, out, workers=1, hours=1e-9, progress=False)
    assert summary["started"] == 2 and summary["done"] + summary["failed"] == 2  # the first round: 2 per worker
    assert summary["not_started"] == summary["submitted"] - 2 > 0
    assert summary["wall_h"] > 0 and summary["per_hour"] == round(2 / summary["wall_h"], 1)
    store = DatasetStore(out)
    assert len(store.manifest["structures"]) == summary["done"] and store.verify() == []
    assert not list(store.staging.iterdir())
    rest = build(TINY, out, workers=1, progress=False)
    assert rest["submitted"] == summary["not_started"] and rest["not_started"] == 0
    assert main(["dataset", "build", str(TINY), "--out", str(out), "--hours", "0"]) == 2
    # coverage figure: a real PNG of the periodic table
    import matplotlib.image

    assert main(["dataset", "info", str(out), "--plot", str(tmp_path / "cov.png")]) == 0
    img = matplotlib.image.imread(tmp_path / "cov.png")
    assert img.shape[1] > img.shape[0] > 300


def test_build_on_a_running_scheduler(cp2k, tmp_path):
    """--scheduler: the structures run on the workers of a Dask scheduler started elsewhere (as on SLURM,
    where dask-jobqueue submits the workers as batch jobs), here a scheduler and one worker as separate
    processes; the build, which alone writes the store, takes their results."""
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                       "--local-directory", str(tmp_path / "worker")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                      start_new_session=True))
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            worker_pids = set(client.run(os.getpid).values())
        assert os.getpid() not in worker_pids
        out = tmp_path / "ds"
        assert main(["dataset", "build", str(TINY), "--out", str(out), "--scheduler", address, "--hours", "1e-9"]) == 0
        store = DatasetStore(out)
        recs = store.manifest["structures"]
        assert len(recs) + len(store.manifest["failures"]) == 2  # the first round: two per worker thread
        assert recs and store.verify() == [] and not list(store.staging.iterdir())
        for sid in recs:
            assert store.load(sid, with_overlap=False).H  # real H(R) from the remote worker's CP2K run
        with Client(address, timeout=60) as client:  # the DFT tasks ran there, not on a cluster of the build's own
            prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
        assert [k for k in prefixes if k.startswith("dft")], prefixes
    finally:
        for proc in procs[::-1]:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_plan_file_and_parts(tmp_path):
    """Plan once, build anywhere: a plan file gives the same entries; parts are disjoint and cover the plan."""
    from uniham.data.build import load_plan, parse_part, select_part

    p = tmp_path / "rich.toml"
    p.write_text(RICH)
    recipe = load_recipe(p)
    entries, skipped = plan(recipe)
    assert main(["dataset", "plan", str(p), "-o", str(tmp_path / "plan.json")]) == 0
    again, _ = load_plan(tmp_path / "plan.json", recipe)
    assert [e.to_json() for e in again] == [e.to_json() for e in entries]
    parts = [select_part(entries, (i, 3)) for i in (1, 2, 3)]
    ids = [e.id for part in parts for e in part]
    assert sorted(ids) == sorted(e.id for e in entries) and len(set(ids)) == len(ids)
    assert parse_part("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "x", "1/2/3"):
        with pytest.raises(UnihamError, match="--part"):
            parse_part(bad)
    p2 = tmp_path / "rich2.toml"
    p2.write_text(RICH.replace("seed = 3", "seed = 4"))
    with pytest.raises(UnihamError, match="another recipe"):
        load_plan(tmp_path / "plan.json", load_recipe(p2))
    # the CLI: a part of the plan file, nothing computed with --limit 0
    out = tmp_path / "ds"
    assert main(["dataset", "build", str(p), "--out", str(out), "--plan", str(tmp_path / "plan.json"),
                 "--part", "2/3", "--limit", "0"]) == 0


def test_balanced_order():
    """Build order: every copy 0 before any copy 1; within a copy the rarest element first; same set."""
    from ase import Atoms

    from uniham.data.build import balanced_order
    from uniham.data.recipe import Entry

    def entry(sid, symbols):
        return Entry(sid, "prototypes", sid, Atoms(symbols))

    todo = [entry("a-SiO-0", "SiO"), entry("b-SiC-1", "SiC"), entry("c-NaCl-0", "NaCl"), entry("d-SiO-1", "SiO"),
            entry("e-FeO-0", "FeO"), entry("f-Si-0", "Si"), entry("g-Na-0", "Na")]
    order = [e.id for e in balanced_order(todo, {"Si": 5, "O": 3, "Na": 1})]
    assert sorted(order) == sorted(e.id for e in todo)
    # NaCl and FeO both hold an element never seen (plan order breaks the tie); Na then has 2, Fe 1
    assert order == ["c-NaCl-0", "e-FeO-0", "g-Na-0", "a-SiO-0", "f-Si-0", "b-SiC-1", "d-SiO-1"]


def test_splits_deterministic_and_grouped():
    ids = [f"s{i}" for i in range(200)]
    a = split_ids(ids, seed=1)
    assert a == split_ids(list(reversed(ids)), seed=1)
    assert sorted(a["train"] + a["validation"] + a["test"]) == sorted(ids)
    assert 130 < len(a["train"]) < 190
    groups = {s: f"g{int(s[1:]) % 7}" for s in ids}
    b = split_ids(ids, seed=1, groups=groups, holdout={"g3"})
    for name, members in b.items():
        for g in {groups[s] for s in members}:
            assert all(groups[s] != g for other, m in b.items() if other != name for s in m)
    assert {groups[s] for s in b["test"]} >= {"g3"}


def test_h_encoding_precision(tmp_path):
    """H is stored to 1e-5 eV (zigzag fixed point) whatever its magnitude and sign; keys and metadata exactly;
    smaller than the scale-offset encoding of uniham <= 0.1.1, whose shards still read."""
    import h5py

    from uniham.data.encoding import read_group, write_group

    rng = np.random.default_rng(0)
    # like a Hamiltonian: a few large on-site and near-neighbour elements, many small far ones
    h = np.concatenate([rng.normal(0, 20, 500), rng.normal(0, 1e-3, 5000) * rng.exponential(1, 5000),
                        [0.0, -87.123456, 1e-7, -6e-6, 6e-6, 21000.0]])
    data = {"symbols": ["Si", "C"], "cell": np.eye(3) * 4, "positions": np.zeros((2, 3)), "pbc": np.ones(3, bool),
            "fermi_eV": 1.5, "n_electrons": 8.0, "basis": "DZVP-MOLOPT-SR-GTH",
            "keys": np.arange(10).reshape(2, 5), "H": h}
    with h5py.File(tmp_path / "x.h5", "w") as f:
        write_group(f, "a", data)
        new_bytes = f["a/Hq"].id.get_storage_size()
        old = f.create_group("old")  # the format of uniham <= 0.1.1
        for name in ("cell", "positions", "pbc", "symbols", "fermi_eV", "n_electrons", "basis"):
            old.attrs[name] = f["a"].attrs[name]
        old.create_dataset("keys", data=data["keys"].astype(np.int32))
        old.create_dataset("H", data=h.astype(np.float32), scaleoffset=5, compression="gzip", shuffle=True)
        old_bytes = old["H"].id.get_storage_size()
    with h5py.File(tmp_path / "x.h5") as f:
        back, back_old = read_group(f["a"]), read_group(f["old"])
    assert np.abs(back["H"] - h).max() <= 5.0001e-6  # rounding to the 1e-5 grid only
    assert back["H"][-4:-1].tolist() == [0.0, -1e-5, 1e-5]
    assert np.abs(back_old["H"] - h).max() <= 1.3e-5 * max(1, np.abs(h).max() / 90)  # two float32 roundings
    assert new_bytes < 0.8 * old_bytes, (new_bytes, old_bytes)
    with pytest.raises(UnihamError, match="fixed-point range"):
        with h5py.File(tmp_path / "y.h5", "w") as f:
            write_group(f, "b", data | {"H": np.array([3e4])})
    assert (back["keys"] == data["keys"]).all() and back["symbols"] == ["Si", "C"]


def test_store_options_change_is_adopted(tmp_path):
    """[store] is not part of a recipe's identity: a folder takes a recipe that changes only how H is kept
    (also one hashed by uniham <= 0.1.1 over the whole text), and refuses one with other structures or DFT."""
    from uniham.data.store import DatasetStore

    p = tmp_path / "r.toml"
    p.write_text(RICH)
    r0 = load_recipe(p)
    p2 = tmp_path / "r2.toml"
    p2.write_text(RICH.replace("[limits]", "# another comment\n[store]\ncutoff = 9.0\nrange_eps = 1e-6\n[limits]"))
    r1 = load_recipe(p2)
    assert r1.hash == r0.hash and r1.store == {"cutoff": 9.0, "range_eps": 1e-6}
    store = DatasetStore(tmp_path / "ds")
    store.create(r0)
    store.manifest["recipe_hash"] = "0123456789abcdef"  # as uniham <= 0.1.1 hashed it
    store._save_manifest()
    store = DatasetStore(tmp_path / "ds")
    store.create(r1)
    m = DatasetStore(tmp_path / "ds").manifest
    assert m["recipe_hash"] == r1.hash and m["recipe_history"][0]["recipe_hash"] == "0123456789abcdef"
    assert load_recipe(tmp_path / "ds" / "recipe.toml").store["range_eps"] == 1e-6
    p3 = tmp_path / "r3.toml"
    p3.write_text(RICH.replace("seed = 3", "seed = 4"))
    with pytest.raises(UnihamError, match="another recipe"):
        DatasetStore(tmp_path / "ds").create(load_recipe(p3))


def test_stored_range_per_pair():
    """With range_eps, H is kept out to each pair's basis range (never below the cutoff): Cs reaches far
    beyond 10 A, Si does not."""
    from uniham.data.build import stored_range
    from uniham.dft.cp2k_basis import load_basis, overlap_range

    flat = stored_range(["Cs", "Si"], "DZVP-MOLOPT-SR-GTH", {"cutoff": 10.0})
    assert (flat == 10.0).all()
    r = stored_range(["Cs", "Si", "Cs"], "DZVP-MOLOPT-SR-GTH", {"cutoff": 10.0, "range_eps": 1e-6})
    b = {x: load_basis(x, "DZVP-MOLOPT-SR-GTH") for x in ("Cs", "Si")}
    assert np.allclose(r, r.T) and r[0, 2] == r[0, 0] == overlap_range(b, 1e-6)[("Cs", "Cs")] > 16
    assert r[1, 1] == 10.0 and 10.0 < r[0, 1] < r[0, 0]


DB1 = Path(__file__).resolve().parents[1] / "data" / "db1"


def _as_old_format(store: DatasetStore, shard: str, sid: str) -> None:
    """Rewrite one group of ``shard`` as uniham <= 0.1.1 stored it (float32, HDF5 scale-offset 5 decimals)."""
    import h5py

    from uniham.data.encoding import read_group
    from uniham.data.store import sha256

    with h5py.File(store.shards / shard, "a") as h5:
        h = read_group(h5[sid])["H"]
        del h5[sid]["Hq"]
        del h5[sid].attrs["H_step_eV"]
        h5[sid].create_dataset("H", data=h.astype(np.float32), scaleoffset=5, compression="gzip", shuffle=True)
    f = store.shards / shard
    store.manifest["shards"][shard] |= {"sha256": sha256(f), "bytes": f.stat().st_size}
    store._save_manifest()


def test_repack(tmp_path, monkeypatch, capsys):
    """`dataset repack` rewrites shards in the current encoding (blocks by distance): zigzag groups bit for
    bit, float32 groups of uniham <= 0.1.1 onto the 1e-5 eV grid (<= 5e-6 eV), or at a coarser step within
    half a step (band energies within a few meV); a kill mid-way leaves the folder as it was."""
    db = DatasetStore(DB1)
    ids = ["el-Si-1x1x1-0", "el-Cs-1x1x1-0", "layer-BN-1x1x1-0"]
    store = DatasetStore(tmp_path / "ds")
    store.merge(db, ids=ids)
    (shard,) = store.manifest["shards"]
    _as_old_format(store, shard, "el-Cs-1x1x1-0")
    import h5py

    with h5py.File(store.shards / shard, "r") as h5:  # (db1's first shards were all float32)
        zigzag = {sid for sid in ids if "Hq" in h5[sid]}
    assert "float32" in store.shard_steps()[shard] and store.verify() == []
    before = {sid: store.load_raw(sid) for sid in ids}
    hams = {sid: store.load(sid) for sid in ids}

    def as_dict(raw):
        from uniham.data.encoding import block_sizes

        offs = np.concatenate([[0], np.cumsum(block_sizes(raw["symbols"], raw["basis"], raw["keys"]))])
        return {tuple(k): raw["H"][offs[i]:offs[i + 1]] for i, k in enumerate(raw["keys"].tolist())}

    # killed between writing the new shard and saving the manifest: recovery drops the orphan
    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(DatasetStore, "_save_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        store.repack()
    monkeypatch.undo()
    store = DatasetStore(tmp_path / "ds")
    assert store.recover() == {"orphan shard": 1} and store.verify() == [] and list(store.manifest["shards"]) == [shard]

    n = store.repack()
    assert n["shards"] == 1 and n["structures"] == 3 and n["bytes_after"] < n["bytes_before"], n
    store = DatasetStore(tmp_path / "ds")
    assert store.verify() == [] and not (store.shards / shard).exists()
    assert store.shard_steps() == {shard.replace(".h5", "p.h5"): {1e-5}}
    for sid in ids:
        raw, old = store.load_raw(sid), before[sid]
        new_h, old_h = as_dict(raw), as_dict(old)
        assert new_h.keys() == old_h.keys()
        pos, cell = raw["positions"], raw["cell"]
        d = [np.linalg.norm(pos[k[4]] + np.array(k[:3]) @ cell - pos[k[3]]) for k in raw["keys"].tolist()]
        assert np.all(np.diff(np.round(d, 6)) >= 0), sid  # blocks by distance
        err = max(np.abs(new_h[k] - old_h[k]).max() for k in old_h)
        assert err == 0 if sid in zigzag else 0 < err <= 5e-6 + 1e-12, (sid, err)
        rec = store.manifest["structures"][sid]
        assert rec["H_step_eV"] == 1e-5 and rec["repacked"][-1]["from"] == shard

    from uniham.data.encoding import ROUNDING_KPTS

    # 5e-5 eV where the bands stay within 1 meV; Cs (17 A of small far elements adding up: ~10 meV at
    # 5e-5 eV) takes a finer step, and from a 1e-5 grid never 2e-5 (ties at every odd value)
    assert store.repack(step=5e-5, band_tol=1.0)["structures"] == 3
    store = DatasetStore(tmp_path / "ds")
    assert store.verify() == []
    steps = {sid: store.manifest["structures"][sid]["H_step_eV"] for sid in ids}
    assert steps["layer-BN-1x1x1-0"] == 5e-5 and steps["el-Cs-1x1x1-0"] == 1e-5, steps
    for sid in ids:
        new_h, old_h = as_dict(store.load_raw(sid)), as_dict(before[sid])
        assert max(np.abs(new_h[k] - old_h[k]).max() for k in old_h) <= steps[sid] / 2 + 5e-6 + 1e-9, sid
        ham = store.load(sid)
        e0, e1 = hams[sid].eigenvalues(ROUNDING_KPTS), ham.eigenvalues(ROUNDING_KPTS)
        window = e0 <= hams[sid].fermi_level + 5.0  # (above: near-linear-dependent states of the basis)
        err = 1e3 * np.abs(e1 - e0)[window].max()
        assert err <= 1.0 + 0.3 and err == pytest.approx(store.manifest["structures"][sid]["H_rounding_band_error_meV"],
                                                        abs=0.3), sid  # (+ the float32 regrid of Cs above)
    with pytest.raises(UnihamError, match="finer"):
        store.repack(step=1e-5)
    assert main(["dataset", "repack", str(tmp_path / "ds")]) == 0
    assert "nothing to repack" in capsys.readouterr().out
    assert main(["dataset", "repack", str(tmp_path / "ds"), "--h-step", "0.01"]) == 2
    assert "expected 0 < step" in capsys.readouterr().err


def test_store_step_from_recipe(tmp_path):
    """[store] h_step is checked when the recipe is read, and a folder records a change of [store] even
    when the recipe's identity is unchanged."""
    p = tmp_path / "r.toml"
    p.write_text(RICH.replace("[limits]", "[store]\ncutoff = 9.0\nh_step = 0.01\n[limits]"))
    with pytest.raises(UnihamError, match="h_step"):
        load_recipe(p)
    p.write_text(RICH.replace("[limits]", "[store]\ncutoff = 9.0\nstep = 1e-5\n[limits]"))
    with pytest.raises(UnihamError, match="unknown \\[store\\] keys"):
        load_recipe(p)
    p.write_text(RICH.replace("[limits]", "[store]\ncutoff = 9.0\n[limits]"))
    r0 = load_recipe(p)
    store = DatasetStore(tmp_path / "ds")
    store.create(r0)
    p.write_text(RICH.replace("[limits]", "[store]\ncutoff = 9.0\nh_step = 5e-5\n[limits]"))
    r1 = load_recipe(p)
    assert r1.hash == r0.hash
    DatasetStore(tmp_path / "ds").create(r1)
    m = DatasetStore(tmp_path / "ds").manifest
    assert m["recipe_history"][-1]["store"] == {"cutoff": 9.0}
    assert load_recipe(tmp_path / "ds" / "recipe.toml").store["h_step"] == 5e-5


def test_nearly_singular_overlap_is_a_failure(cp2k):
    """A converged structure whose rounded H cannot keep its bands within h_band_tol even at the finest step
    (Al compressed to 2.3 A with the diffuse DZVP basis: S(k) near singular) is a failure with the reason,
    not a stored structure whose bands nobody can reproduce; the same cell at Al's own volume is stored."""
    from ase.build import bulk

    from uniham.data.build import compute
    from uniham.data.recipe import Entry

    dft = {"basis": "DZVP-MOLOPT-SR-GTH", "ecut": 200.0, "kmesh": [3, 3, 3]}
    store = {"cutoff": 6.0, "range_eps": 1e-6, "h_step": 5e-5, "h_band_tol": 1.0}
    squeezed = compute(Entry("al-squeezed", "elements", "A_cF4", bulk("Al", "fcc", a=3.25), {}).to_json(), dft, store)
    assert not squeezed["ok"] and "overlap nearly singular" in squeezed["record"]["reason"], squeezed["record"]
    normal = compute(Entry("al", "elements", "A_cF4", bulk("Al", "fcc", a=4.05), {}).to_json(), dft, store)
    assert normal["ok"] and normal["record"]["H_rounding_band_error_meV"] <= 1.0, normal["record"]


def test_remove_without_redo_records_a_failure(tmp_path, capsys):
    """`uniham dataset remove --no-redo`: the structure leaves the shards and becomes a failure with the
    reason (and its record), which a build skips; the folder stays verified."""
    db1 = Path(__file__).resolve().parents[1] / "data" / "db1"
    sub = tmp_path / "sub"
    assert main(["dataset", "subset", str(db1), "-o", str(sub), "--n", "3"]) == 0
    sid = sorted(DatasetStore(sub).ids())[0]
    assert main(["dataset", "remove", str(sub), sid, "--reason", "S singular", "--no-redo"]) == 0
    assert "build` skips them" in capsys.readouterr().out
    store = DatasetStore(sub)
    assert sid not in store.ids() and sid in store.failed_ids() and sid not in store.manifest.get("removed", {})
    assert store.manifest["failures"][sid]["reason"] == "S singular" and "dft" in store.manifest["failures"][sid]
    assert store.verify() == [] and len(store.ids()) == 2


def test_damaged_store_is_detected_and_rebuilt(stores, tmp_path, capsys):
    """A flipped byte or a deleted shard: `info --verify` exits 2 naming it, reading a structure of it is one line,
    and the next build redoes exactly the structures of that shard (the rest is kept)."""
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(stores[0], ds)
    store = DatasetStore(ds)
    shard = next(iter(store.manifest["shards"]))
    ids = sorted(store.manifest["structures"])
    f = ds / "shards" / shard
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["dataset", "info", str(ds), "--verify"]) == 2
    err = capsys.readouterr().err
    assert shard in err and err.count("\n") == 1
    code = main(["dataset", "export", str(ds), ids[0], "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    # (the flipped byte may sit in another structure's data: then this one reads fine)
    assert code == 0 or (code == 2 and err.count("\n") == 1 and "Traceback" not in err), err
    f.unlink()
    assert main(["dataset", "info", str(ds), "--verify"]) == 2 and shard in capsys.readouterr().err
    assert main(["dataset", "export", str(ds), ids[0], "-o", str(tmp_path / "y")]) == 2
    assert "missing" in capsys.readouterr().err
    from uniham.data.build import build

    s = build(TINY, ds, workers=1, progress=False, limit=len(ids))
    assert s["submitted"] == len(ids) and s["done"] == len(ids)
    again = DatasetStore(ds)
    assert sorted(again.manifest["structures"]) == ids and not again.verify()
    assert set(again.manifest["lost"]) == set(ids)


def test_repair_restores_a_truncated_manifest_and_adopts_unlisted_shards(stores, tmp_path, capsys):
    """A truncated manifest: reading says so and names `dataset repair`, which restores it from the previous copy
    and adopts the shards that copy does not list (their structures carry their records); a deleted shard is
    forgotten by repair with the command that redoes exactly its structures."""
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(stores[0], ds)
    want = DatasetStore(ds).manifest["structures"]
    (ds / "manifest.prev.json").write_text(json.dumps(DatasetStore(ds).manifest | {"shards": {}, "structures": {}}))
    raw = (ds / "manifest.json").read_bytes()
    (ds / "manifest.json").write_bytes(raw[: len(raw) // 2])
    capsys.readouterr()
    assert main(["dataset", "info", str(ds)]) == 2
    err = capsys.readouterr().err
    assert "corrupt manifest" in err and "dataset repair" in err and err.count("\n") == 1
    assert main(["dataset", "repair", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "restored from manifest.prev.json" in out and f"adopted {len(want)} structures" in out and "verified" in out
    store = DatasetStore(ds)
    assert {k: {**v} for k, v in store.manifest["structures"].items()} == want and store.verify() == []
    shard = next(iter(store.manifest["shards"]))
    (ds / "shards" / shard).unlink()
    assert main(["dataset", "repair", str(ds)]) == 0
    out = capsys.readouterr().out
    assert f"{len(want)} structures of missing or damaged shards forgotten" in out and "dataset build" in out
    assert main(["dataset", "info", str(ds), "--verify"]) == 0

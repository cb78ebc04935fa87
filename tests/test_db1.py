"""The committed database data/db1 is intact and physical: checksums, provenance, and CP2K's own electron
count at CP2K's own Fermi level reproduced by the stored H(R) with S(R) recomputed from the basis."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from uniham.data.recipe import load_recipe
from uniham.data.encoding import H_STEP_EV
from uniham.data.store import DatasetStore
from uniham.properties.kpath import monkhorst_pack

ROOT = Path(__file__).resolve().parents[1]
DB1 = ROOT / "data" / "db1"


@pytest.fixture(scope="module")
def db() -> DatasetStore:
    return DatasetStore(DB1)


def test_db1_checksums_recipe_and_provenance(db):
    assert db.verify() == []
    assert (DB1 / "recipe.toml").read_text() == (ROOT / "data/recipes/db1.toml").read_text()
    assert load_recipe(DB1 / "recipe.toml").hash == db.manifest["recipe_hash"]
    info = db.info()
    assert info["n_elements"] >= 50
    for sid, rec in db.manifest["structures"].items():
        dft = rec["dft"]
        assert dft["converged"] and dft["basis"] == "DZVP-MOLOPT-SR-GTH" and dft["xc"] == "PBE", sid
        assert dft["check_vs_cp2k_bands_meV"] < 1.0, sid  # H, S as written reproduce CP2K's eigenvalues
        # the stored (rounded) H keeps its bands within 1 meV; hcp Be (5 meV) was stored when 1e-5 eV was the finest
        assert rec.get("H_rounding_band_error_meV", 0.0) <= 1.0 or rec["H_step_eV"] >= 1e-5, sid
        assert rec["shard"] in db.manifest["shards"], sid
    assert all(f["reason"] for f in db.manifest["failures"].values())


@pytest.mark.parametrize("sid", ["el-Si-1x1x1-0", "el-Cs-1x1x1-0", "proto-A_cF4_225_a-Pt-1x1x1-0",
                                 "layer-BN-1x1x1-0", "mol-NCCN-1x1x1-0"])
def test_db1_electron_count_at_cp2k_fermi_level(db, sid):
    """sum_k w_k sum_n 2 f_FD((e_nk - E_F) / kT) = N on CP2K's own k-mesh, with CP2K's E_F and smearing.

    Off by at most ~1e-4 electrons in the metals (the stored range cut moves bands by ~meV); a wrong
    image convention, a missing block, a wrong S or an eV/Hartree slip would be off by far more."""
    ham = db.load(sid)
    rec = db.manifest["structures"][sid]["dft"]
    eigs = ham.eigenvalues(monkhorst_pack(rec["kmesh"]))
    n = 2 * expit(-(eigs - ham.fermi_level) / rec["smearing_eV"]).sum(axis=1).mean()
    assert abs(n - ham.n_electrons) < 2e-3, (sid, n, ham.n_electrons)
    hk = ham.Hk([0.1, 0.2, 0.3])
    assert np.abs(hk - hk.conj().T).max() < H_STEP_EV  # Hermitian to the storage step (CP2K's own on-site blocks: ~1e-6 eV)


def test_samples_without_overlap_skip_the_integrals(db, monkeypatch):
    """Graphs and H targets need no S: with_overlap=False gives the same samples minus s_*, and never calls
    the overlap integrals (which cost ~1 s per structure through PySCF)."""
    import torch

    import uniham.dft.cp2k_basis as cb
    from uniham.model.data import discover, layout_for, load_samples
    from uniham.model.graph import EdgeRange

    items = [it for it in discover([DB1]) if it.id.endswith(("el-Si-1x1x1-0", "layer-BN-1x1x1-0"))]
    rng = EdgeRange.for_basis(0.0, 1e-5)
    layout = layout_for(items)
    full = load_samples(items, rng, layout, progress=False)

    def forbidden(*a, **k):
        raise AssertionError("overlap integrals computed")

    monkeypatch.setattr(cb, "overlap_over_range", forbidden)
    bare = load_samples(items, rng, layout, progress=False, with_overlap=False)
    for a, b in zip(full, bare):
        assert set(a) - set(b) == {"s_site", "s_edge"}
        for k, v in b.items():
            assert torch.equal(a[k], v) if torch.is_tensor(v) else a[k] == v, k


def _tiny_config(path: Path, out: Path, data: Path, data_keys: str, train_keys: str) -> Path:
    """A one-core training config of a tiny network (seconds per step) on ``data``."""
    path.write_text(f"""out = "{out}"
[data]
paths = ["{data}"]
{data_keys}
[model]
cutoff = 4.0
lmax = 2
mmax = 2
channels = 8
layers = 1
heads = 2
[train]
threads = 1
{train_keys}
""")
    return path


def test_training_on_db1_computes_s_only_when_the_loss_needs_it(tmp_path, monkeypatch):
    """The absolute-gauge MSE trains without S; the "free" gauge (c S removed per structure) gets S."""
    import uniham.dft.cp2k_basis as cb
    from uniham.cli import main

    calls = []
    real = cb.overlap_over_range
    monkeypatch.setattr(cb, "overlap_over_range", lambda *a, **k: calls.append(1) or real(*a, **k))
    for gauge in ("absolute", "free"):
        cfg = _tiny_config(tmp_path / f"{gauge}.toml", tmp_path / gauge, DB1, "max_structures = 2\nfractions = [1.0, 0.0, 0.0]",
                           f'steps = 2\nbatch_size = 1\neval_every = 2\ngauge = "{gauge}"')
        calls.clear()
        assert main(["train", str(cfg)]) == 0
        assert (len(calls) > 0) == (gauge == "free"), (gauge, len(calls))


def test_subset_is_a_faithful_deterministic_copy(db, tmp_path):
    """`uniham dataset subset`: the same structures for the same seed, a superset for a bigger n, identical
    data and records (plus where they came from), each structure in the split it has in the full store."""
    from uniham.cli import main
    from uniham.data.build import split_ids, subset_ids

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["dataset", "subset", str(DB1), "-o", str(a), "--n", "12", "--seed", "3"]) == 0
    assert main(["dataset", "subset", str(DB1), "-o", str(b), "--n", "20", "--seed", "3"]) == 0
    sa, sb = DatasetStore(a), DatasetStore(b)
    assert len(sa.ids()) == 12 and set(sa.ids()) < set(sb.ids()) and set(sa.ids()) <= set(db.ids())
    assert sa.verify() == [] and sa.manifest["recipe_hash"] == db.manifest["recipe_hash"]
    for sid in sa.ids():
        ra, r0 = sa.manifest["structures"][sid], db.manifest["structures"][sid]
        assert {k: v for k, v in ra.items() if k not in ("shard", "merged_from")} == \
               {k: v for k, v in r0.items() if k not in ("shard", "merged_from")}
        da, d0 = sa.load_raw(sid), db.load_raw(sid)
        assert np.array_equal(da["keys"], d0["keys"]) and np.array_equal(da["H"], d0["H"])
    full, part = split_ids(db.ids()), split_ids(sb.ids())
    for name, members in part.items():
        assert set(members) <= set(full[name])
    big = split_ids(subset_ids(db.manifest["structures"], 400))  # all three splits, as in the full store
    assert 0.7 < len(big["train"]) / 400 < 0.9 and len(big["validation"]) > 20 and len(big["test"]) > 20
    # taking it again adds nothing; an element filter keeps structures of those elements alone
    assert sa.merge(db, sa.ids())["structures"] == 0
    c = tmp_path / "c"
    assert main(["dataset", "subset", str(DB1), "-o", str(c), "--elements", "Si", "O"]) == 0
    recs = DatasetStore(c).manifest["structures"]
    assert recs and all(set(r["elements"]) <= {"Si", "O"} for r in recs.values())
    assert "el-Si-1x1x1-0" in recs
    assert main(["dataset", "subset", str(DB1), "-o", str(tmp_path / "d"), "--elements", "Xx"]) != 0


def test_training_splits_are_the_dataset_split(db, tmp_path):
    """`uniham train` puts every structure where `uniham dataset split` does (same seed, fractions, grouping,
    held-out prototype), whatever the store's folder is called: a subset or a copy keeps each structure's split."""
    import json

    from uniham.cli import main
    from uniham.model.train import load_checkpoint

    sub = tmp_path / "renamed"
    assert main(["dataset", "subset", str(DB1), "-o", str(sub), "--n", "30", "--seed", "5"]) == 0
    recs, info = DatasetStore(sub).manifest["structures"], DatasetStore(sub).info()
    assert sum(info["prototypes"].values()) == info["sources"]["prototypes"]  # the labels `dataset info` lists
    held = next(iter(info["prototypes"]))
    assert main(["dataset", "split", str(sub), "-o", str(tmp_path / "s.json"), "--by", "prototype",
                 "--holdout", held, "--fractions", "0.6,0.2,0.2", "--seed", "4"]) == 0
    want = json.loads((tmp_path / "s.json").read_text())
    assert set(want["test"]) >= {k for k, r in recs.items() if r["label"] == held}
    cfg = _tiny_config(tmp_path / "t.toml", tmp_path / "run", sub,
                       f'fractions = [0.6, 0.2, 0.2]\nseed = 4\nsplit_by = "prototype"\nholdout = ["{held}"]',
                       "steps = 1\nbatch_size = 4\neval_every = 1")
    assert main(["train", str(cfg)]) == 0
    got = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["splits"]
    assert {k: sorted(i.removeprefix("renamed/") for i in v) for k, v in got.items()} == want
    # resuming with other split options (or after the rule changed) keeps the run's own splits
    cfg.write_text(cfg.read_text().replace("seed = 4", "seed = 9").replace("steps = 1", "steps = 2"))
    assert main(["train", str(cfg), "--resume"]) == 0
    ck2 = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck2["step"] == 2 and ck2["splits"] == got and ck2["split_rule"]["seed"] == 4
    cfg.write_text(cfg.read_text().replace("seed = 9", "seed = 4"))
    # evaluated on a bigger subset (as on the full store): the test split by the run's rule, never a trained structure
    from uniham.model.data import discover
    from uniham.model.evaluate import split_items

    big = tmp_path / "big"
    assert main(["dataset", "subset", str(DB1), "-o", str(big), "--n", "60", "--seed", "5"]) == 0
    assert main(["dataset", "split", str(big), "-o", str(tmp_path / "b.json"), "--by", "prototype",
                 "--holdout", held, "--fractions", "0.6,0.2,0.2", "--seed", "4"]) == 0
    big_split = json.loads((tmp_path / "b.json").read_text())
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    items = discover([big])
    test, unseen = split_items(items, ckpt, "test")
    assert sorted(it.key for it in test) == sorted(set(big_split["test"]) - set(want["train"]))
    assert set(want["test"]) <= {it.key for it in test} and unseen == len(test) - len(want["test"]) > 0
    assert sorted(it.key for it in split_items(items, ckpt, "train")[0]) == want["train"]
    assert main(["evaluate", "--model", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(big),
                 "--split", "test", "--bands", "0", "--json", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["n_structures"] == len(test) and e["n_not_in_training_data"] == unseen
    # a held-out group that matches nothing (a typo) is an error, not a silently empty test set
    bad = cfg.read_text().replace(f'holdout = ["{held}"]', 'holdout = ["A_cF4_225_x"]')
    cfg.write_text(bad)
    assert main(["train", str(cfg)]) != 0
    cfg.write_text(bad.replace('split_by = "prototype"', 'split_by = "element"'))
    assert main(["train", str(cfg)]) != 0

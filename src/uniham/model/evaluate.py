"""``uniham evaluate``: H MAE (overall, per element, per orbital pair) and band comparisons DFT vs model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from uniham.conditioning import GUARD_TAU
from uniham.model.data import discover, h0_from, load_samples
from uniham.model.checkpoint import load_checkpoint, model_from_checkpoint
from uniham.model.train import evaluate_samples


def split_items(items: list, ckpt: dict, split: str) -> tuple[list, int]:
    """The structures of ``items`` in ``split`` by the training run's own rule (fractions, seed, split_by,
    holdout), minus any structure the run trained on, and how many of them the run never had at all.

    Splits hash a structure's id inside its store, so on the run's own data this is the run's split, and
    on a bigger folder (the full store a subset was taken from) it adds structures the model never saw.
    Checkpoints without a ``split_rule`` (uniham before 2026-11-27 hashed FOLDER/ID): the run's own list."""
    from uniham.data.build import split_group, split_ids

    d = ckpt.get("split_rule")
    if d is None:
        wanted = set(ckpt.get("splits", {}).get(split, []))
        return [it for it in items if it.id in wanted], 0
    groups = {it.id: split_group(it.key, it.record, d["split_by"]) for it in items}
    holdout = set(d["holdout"]) & set(groups.values())
    chosen = set(split_ids([it.id for it in items], tuple(d["fractions"]), d["seed"], groups, holdout)[split])
    keys = ckpt["split_keys"]
    trained, known = set(keys["train"]), set().union(*keys.values())
    if split == "train":
        out = [it for it in items if it.key in trained]
    else:
        out = [it for it in items if it.id in chosen and it.key not in trained]
    return out, sum(it.key not in known for it in out)


def evaluate(ckpt_path, data_paths, n_bands: int = 3, plots=None, gauge: str | None = None,
             split: str | None = None, max_band_structures: int | None = None, report=None) -> dict:
    """H MAE (of what the model learns: H, or ΔH = the H MAE of H0 + ΔH_pred within its range) and the band
    metric on every structure (``max_band_structures``: the first N); band plots of the first ``n_bands``
    with ``plots``. ``split`` ("train", "validation", "test"): only the structures of that split
    (:func:`split_items`). ``report``: a folder for the Markdown + PNG report (:mod:`uniham.model.report`)."""
    from uniham.errors import UnihamError
    from uniham.pretrained import resolve

    ckpt_path = resolve(ckpt_path)[0]  # a file or a shipped model's name
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, path=ckpt_path)
    model.eval()
    gauge = gauge or ckpt["config"]["train"]["gauge"]
    items = discover(data_paths)
    # the run's own [data] restrict_to (e.g. a direct model trained on the structures a ΔH store covers) applies
    # here too, so that models of different targets are scored on the same structures
    restrict = [p for p in ckpt["config"].get("data", {}).get("restrict_to", []) if Path(p).exists()]
    if restrict:
        from uniham.data.store import DatasetStore

        keep = set().union(*(DatasetStore(p).manifest["structures"] for p in restrict))
        items = [it for it in items if it.key in keep]
    unseen = None
    if split:
        items, unseen = split_items(items, ckpt, split)
        if not items:
            raise UnihamError(f"no structure of the {split!r} split of {ckpt_path} is in {data_paths}")
    target = ckpt.get("target") or {"kind": "H"}
    if {it.target for it in items} != {target["kind"]}:
        raise UnihamError(f"{ckpt_path} learns {target['kind']!r}; {data_paths} hold "
                          f"{sorted({it.target for it in items})}: evaluate on data of the model's kind")
    if target["kind"] == "delta_h0":  # ΔH of another H0 (basis, cutoff, EPS_DEFAULT) is not what the model adds to
        other = sorted({json.dumps(it.prior, sort_keys=True) for it in items} - {json.dumps(target["h0"], sort_keys=True)})
        if other:
            raise UnihamError(f"{data_paths} hold ΔH on an H0 of other settings ({other[0]}) than the model's "
                              f"({json.dumps(target['h0'], sort_keys=True)}): evaluate on data made like its training data")
    else:
        from uniham.model.train import _basis_family

        family = _basis_family(items)
        if family and ckpt.get("basis_family") and family != ckpt["basis_family"]:
            raise UnihamError(f"{data_paths} are in the {family} basis, the model in {ckpt['basis_family']}: "
                              "evaluate on data made like its training data")
    samples = load_samples(items, model.edge_range(), model.layout, with_overlap=gauge == "free",
                           prior=model.cfg.prior)
    res = evaluate_samples(model, samples, model.layout, gauge, torch.device("cpu"), torch.float32)
    res |= {"checkpoint": str(ckpt_path), "step": ckpt["step"], "gauge": gauge, "split": split, "target": target,
            "n_not_in_training_data": unseen}
    from tqdm import tqdm

    from uniham.model.predict import LoadedModel

    lm = LoadedModel(ckpt_path)  # one load (and checksum) for the band table, the plots and the report
    res |= band_table(items, lm, max_structures=max_band_structures)
    res["bands"] = [compare_bands(it, lm, plots) for it in tqdm(items[:n_bands], desc="band plots", unit="structure",
                                                                 leave=False, disable=not plots)]
    if report:
        from uniham.model.report import write_report

        res["report"] = str(write_report(res, items[:max_band_structures], lm, report))
    return res


def delta_inputs(item) -> tuple:
    """(SCF Hamiltonian with S, stored ΔH blocks) of a delta_h0 item, read once for the comparisons below."""
    return item.reference(), item.load(with_overlap=False).H


def predicted_pair(item, lm, inputs: tuple | None = None, guard: float = GUARD_TAU) -> tuple:
    """(DFT Hamiltonian, predicted one) of a data item. A delta_h0 item's prediction is H0 + ΔH_pred with
    H0 = H - ΔH_stored (beyond the stored blocks H0 ≈ H, as its record says), so no CP2K run, and ΔH_pred kept
    off S's near-null space as ``uniham predict`` does (``guard``: τ of :mod:`uniham.conditioning`, 0 = off);
    ``inputs``: its :func:`delta_inputs`, if already read."""
    ref, (pred,) = predicted_pairs(item, lm, inputs, (guard,))
    return ref, pred


def predicted_pairs(item, lm, inputs: tuple | None = None, guards: tuple = (GUARD_TAU,)) -> tuple:
    """(DFT Hamiltonian, [prediction with each overlap guard τ in ``guards``]) from one network call; a
    direct-model item has one prediction whatever ``guards`` says (it has no H0 to fall back to)."""
    from uniham.conditioning import guarded_hamiltonian
    from uniham.hamiltonian import Hamiltonian
    from uniham.model.predict import predict

    if item.target != "delta_h0":
        ref = item.load()
        return ref, [predict(ref.atoms, lm, fermi=False, strict=False)] * len(guards)
    ref, stored = inputs or delta_inputs(item)
    h0 = h0_from(ref.H, stored)
    net = lm.blocks(ref.atoms, lm.bases(ref.atoms.get_chemical_symbols()), h0 if lm.model.cfg.prior else None)
    net = {k: v for k, v in net.items() if k in h0}
    zeroth = Hamiltonian(ref.atoms, ref.basis, h0, ref.S)
    preds = []
    for tau in guards:
        H, _ = guarded_hamiltonian(zeroth, net, tau)
        preds.append(Hamiltonian(ref.atoms, ref.basis, H, ref.S, None, ref.n_electrons, False))
    return ref, preds


def zeroth_step_alone(item, inputs: tuple | None = None):
    """The H0 of a delta_h0 item (H - ΔH_stored), as a Hamiltonian: the "no network" baseline."""
    from uniham.hamiltonian import Hamiltonian

    ref, stored = inputs or delta_inputs(item)
    return ref, Hamiltonian(ref.atoms, ref.basis, h0_from(ref.H, stored), ref.S, None, ref.n_electrons, False)


def band_table(items, ckpt_path, max_structures: int | None = None, progress: bool = True) -> dict:
    """(``ckpt_path``: a checkpoint or a :class:`uniham.model.predict.LoadedModel`.) The band metric (:mod:`uniham.properties.band_metric`) of the model on every item (or the first
    ``max_structures``): per structure and summarized (median, 90th percentile); for ΔH data also that of H0
    alone, the baseline a delta model must beat."""
    from tqdm import tqdm

    from uniham.conditioning import overlap_min_eigenvalue
    from uniham.model.predict import LoadedModel
    from uniham.properties.band_metric import METRIC_KPOINTS, band_metric, summarize

    lm = ckpt_path if isinstance(ckpt_path, LoadedModel) else LoadedModel(ckpt_path)
    rows = []
    for it in tqdm(items[:max_structures], desc="band metric", unit="structure", leave=False, disable=not progress):
        inputs = delta_inputs(it) if it.target == "delta_h0" else None  # (S by integrals: once per structure)
        ref, (pred, unguarded) = predicted_pairs(it, lm, inputs, (GUARD_TAU, 0.0))
        row = {"id": it.id} | band_metric(pred, ref)
        if inputs is not None:
            row["h0_alone_band_mae_meV"] = band_metric(zeroth_step_alone(it, inputs)[1], ref)["band_mae_meV"]
            row["unguarded_band_mae_meV"] = band_metric(unguarded, ref)["band_mae_meV"]
            row["overlap_min_eigenvalue"] = overlap_min_eigenvalue(ref, METRIC_KPOINTS * np.asarray(ref.atoms.pbc, float))
        rows.append(row)
    out = {"band_metric": summarize(r["band_mae_meV"] for r in rows), "band_metric_per_structure": rows}
    if rows and "h0_alone_band_mae_meV" in rows[0]:
        out["h0_alone_band_metric"] = summarize(r["h0_alone_band_mae_meV"] for r in rows)
        out["unguarded_band_metric"] = summarize(r["unguarded_band_mae_meV"] for r in rows)
        out["overlap_guard_tau"] = GUARD_TAU
    return out


def compare_bands(item, lm, plots=None) -> dict:
    from uniham.model.predict import band_errors

    ref, pred = predicted_pair(item, lm)
    out = {"id": item.id} | band_errors(pred, ref)
    if plots:
        _plot(ref, pred, Path(plots) / f"{item.id.replace('/', '_')}.png", out)
    return out


def _plot(ref, pred, png: Path, errs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uniham.properties.kpath import auto_labels, build_path

    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        kpts, _ = build_path(ref.atoms, auto_labels(ref.atoms), 60)
    except Exception:  # noqa: BLE001 - molecules and odd cells: a straight line through the zone
        kpts = np.linspace([0, 0, 0], [0.5, 0.5, 0.5], 60) * ref.atoms.pbc
    er, ep = ref.eigenvalues(kpts), pred.eigenvalues(kpts)
    ep = ep - errs["mean_shift_meV"] / 1000
    ef = errs["fermi_ref_eV"]
    x = np.arange(len(kpts))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(x, er - ef, color="k", lw=1.2)
    ax.plot(x, ep[:, :er.shape[1]] - ef, color="tab:red", lw=0.9, ls="--")
    ax.plot([], [], color="k", label="DFT")
    ax.plot([], [], color="tab:red", ls="--", label=f"model (aligned, max err {errs['aligned_meV']:.1f} meV)")
    ax.set_ylim(-6, 6)
    ax.set_ylabel("E - E_F (eV)")
    ax.set_xticks([])
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)

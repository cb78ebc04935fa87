"""``uniham evaluate``: H MAE (overall, per element, per orbital pair) and band comparisons DFT vs model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uniham.model.data import discover, load_samples
from uniham.model.train import evaluate_samples, load_checkpoint, model_from_checkpoint


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
             split: str | None = None) -> dict:
    """``split`` ("train", "validation", "test"): only the structures of that split (:func:`split_items`)."""
    from uniham.errors import UnihamError

    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)
    model.eval()
    gauge = gauge or ckpt["config"]["train"]["gauge"]
    items = discover(data_paths)
    unseen = None
    if split:
        items, unseen = split_items(items, ckpt, split)
        if not items:
            raise UnihamError(f"no structure of the {split!r} split of {ckpt_path} is in {data_paths}")
    samples = load_samples(items, model.edge_range(), model.layout, with_overlap=gauge == "free")
    res = evaluate_samples(model, samples, model.layout, gauge, torch.device("cpu"), torch.float32)
    res |= {"checkpoint": str(ckpt_path), "step": ckpt["step"], "gauge": gauge, "split": split,
            "n_not_in_training_data": unseen, "bands": []}
    from tqdm import tqdm

    for it in tqdm(items[:n_bands], desc="bands DFT vs model", unit="structure", leave=False):
        res["bands"].append(compare_bands(it, ckpt_path, plots))
    return res


def compare_bands(item, ckpt_path, plots=None) -> dict:
    from uniham.model.predict import band_errors, predict

    ref = item.load()
    pred = predict(ref.atoms, ckpt_path, fermi=False)
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

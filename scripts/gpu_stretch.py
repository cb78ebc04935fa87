"""A campaign stretch on a lent GPU: pack a slice of the campaign's training data here, train on it there.

A lent GPU gets ~10 minutes and a carried tree of ≤ 64 MiB, and has no PySCF and no room for the database, so
the stretch trains on a *packed slice*: the graphs, targets and H⁽⁰⁾ features of as many training structures
as fit ``--mib`` (LZMA, lossless, ~86 KiB per db1_dh structure: ~500 structures in 44 MiB), cut from the
sample cache the campaign's last CPU stretch built (``runs/NAME/samples.pt``). Slices rotate: the k-th GPU
stretch of a campaign takes the k-th block of a fixed permutation of its training structures, so successive
GPU runs see different data; the validation slice is the same every time. The slice carries the campaign's
split keys and rule, so the weights it returns are evaluated on the campaign's own test split.

    # here (CPU), after a CPU stretch:  writes runs/NAME-gpu/slice.pt.xz and prints the carry list
    python scripts/gpu_stretch.py pack campaigns/c_delta_prior [--mib 44] [--val 60]
    # there (the device's `run` tool, carry = ["runs/c_delta_prior-gpu"]), ~10 minutes in all:
    python3 scripts/gpu_stretch.py run campaigns/c_delta_prior --minutes 8 --out "$OUT"
    # back here: copy $OUT's weights.pt, state.json, learning_curve.{csv,png} into the campaign and commit

``run`` is ``scripts/campaign.py run --device cuda`` with ``[data] packed`` set: a warm start from the
committed weights, kept only if it beats them on the validation slice; the tally counts GPU minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))


def _local(camp: Path) -> Path:
    import tomllib

    cfg = tomllib.loads((camp / "config.toml").read_text())
    return Path(cfg.get("out", f"runs/{camp.name}"))


def slice_ids(train_ids: list[str], k: int, n: int, seed: int = 0) -> list[str]:
    """The k-th block of n structures of a fixed permutation of ``train_ids`` (wrapping around)."""
    import numpy as np

    order = [train_ids[i] for i in np.random.default_rng(seed).permutation(len(train_ids))]
    n = min(n, len(order))
    return [order[(k * n + i) % len(order)] for i in range(n)]


def pack(camp: Path, mib: float, n_val: int) -> dict:
    from uniham.errors import UnihamError
    from uniham.model.checkpoint import load_checkpoint
    from uniham.model.data import load_sample_cache, save_packed_slice

    local = _local(camp)
    cached = load_sample_cache(local / "samples.pt", None)
    if cached is None:
        raise UnihamError(f"{local / 'samples.pt'}: no sample cache; run a CPU stretch (or `uniham train "
                          f"{camp / 'config.toml'} --prepare`) first")
    sets, meta = cached
    ck = load_checkpoint(camp / "weights.pt")
    state = json.loads((camp / "state.json").read_text())
    k = sum(s["device"].startswith("cuda") for s in state["stretches"])
    by_id = {s["id"]: s for s in sets["train"]}
    # the cache is the last CPU stretch's training set (on a grown database a superset of the weights' one)
    train_ids = sorted(by_id)
    if not train_ids:
        raise UnihamError(f"{local / 'samples.pt'} holds no training structures")
    val = sorted(sets["validation"], key=lambda s: s["id"])[:n_val]
    n = int(mib * 2 ** 20 / 86e3 * 0.95)
    dest = local.with_name(local.name + "-gpu") / "slice.pt.xz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    while True:
        ids = slice_ids(train_ids, k, n)
        info = {"layout": meta["layout"], "basis_family": meta["basis_family"], "target": ck.get("target"),
                "model_config": ck["model_config"], "splits": {"train": ids, "validation": [s["id"] for s in val], "test": []},
                "split_keys": ck["split_keys"], "split_rule": ck.get("split_rule"),
                "slice": {"campaign": str(camp), "k": k, "n": len(ids), "of": len(train_ids),
                          "weights_sha256": state["stretches"][-1]["weights_sha256"] if state["stretches"] else None,
                          "made": time.strftime("%Y-%m-%dT%H:%M:%S")}}
        size = save_packed_slice(dest, {"train": [by_id[i] for i in ids], "validation": val}, info)
        if size <= mib * 2 ** 20 or n < 10:
            break
        n = int(n * 0.9 * mib * 2 ** 20 / size)
    return {"slice": str(dest), "mib": round(size / 2 ** 20, 2), "k": k, "train_structures": len(ids),
            "of": len(train_ids), "validation_structures": len(val), "carry": [str(dest.parent)]}


def run(camp: Path, minutes: float, out: Path | None, note: str, device: str = "cuda") -> dict:
    import campaign

    local = _local(camp)
    packed = local.with_name(local.name + "-gpu") / "slice.pt.xz"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
                                 capture_output=True, text=True)
            (out / "gpu.txt").write_text(gpu.stdout or gpu.stderr)
        except FileNotFoundError:
            (out / "gpu.txt").write_text("no nvidia-smi\n")
    entry = campaign.run(camp, minutes / 60, threads=0 if device.startswith("cuda") else 1, device=device, note=note,
                         packed=str(packed))
    if out is not None:
        for src in [camp / n for n in ("weights.pt", "state.json", "learning_curve.csv", "learning_curve.png")] + [local / "log.csv"]:
            if src.exists():
                shutil.copy2(src, out / src.name)
    return entry


def main() -> int:
    from uniham.errors import UnihamError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="cut the next packed training slice of a campaign (on the CPU machine)")
    p.add_argument("campaign", type=Path)
    p.add_argument("--mib", type=float, default=44.0, help="size budget of the slice (the carry limit is 64 MiB in all)")
    p.add_argument("--val", type=int, default=60, help="validation structures in the slice")
    r = sub.add_parser("run", help="train a stretch on the packed slice (on the GPU)")
    r.add_argument("campaign", type=Path)
    r.add_argument("--minutes", type=float, default=8.0)
    r.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    r.add_argument("--note", default="GPU stretch on a packed slice (scripts/gpu_stretch.py)")
    r.add_argument("--device", default="cuda", help="cuda (the point), or cpu to try the script out")
    a = ap.parse_args()
    try:
        res = pack(a.campaign, a.mib, a.val) if a.cmd == "pack" else run(a.campaign, a.minutes, a.out, a.note, a.device)
    except UnihamError as exc:
        print(f"gpu_stretch: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

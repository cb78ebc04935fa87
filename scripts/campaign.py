"""A training campaign that every stretch of work advances: warm start from the committed weights, train for a
time budget, commit the better weights, the learning curve and the compute tally.

    python scripts/campaign.py run CAMPAIGN [--hours H] [--threads N] [--device cpu|cuda] [--note TEXT]
    python scripts/campaign.py status CAMPAIGN
    python scripts/campaign.py soup CAMPAIGN --stretches 2 4 -o OUT.pt   # the mean of those stretches' weights

CAMPAIGN is a folder in the repository holding

    config.toml          the training config (uniham train's TOML; its out = the local run folder, not committed)
    weights.pt           the campaign's current model: EMA weights and everything predict/evaluate need, no
                         optimizer state (a slim checkpoint, loaded with torch.load(weights_only=True))
    state.json           one entry per stretch (start, end, machine, threads/device, steps, best validation MAE,
                         the commit it started from) and the totals: CPU core-hours, GPU minutes, steps
    learning_curve.csv   every evaluation of every stretch, with the campaign's cumulative step and compute
    learning_curve.png

Each stretch is a warm start (``[train] init``: the weights, a fresh AdamW and a cosine schedule over the
stretch's own time budget), so the committed weights alone continue the campaign on any machine. The
stretch's best validation weights replace ``weights.pt`` only when they beat the committed weights on the same
validation set (measured before the stretch's first step, so a grown database is compared like with like); a stretch
stopped by SIGTERM/SIGINT (``kill PID``, a batch limit) still exports what it reached. Compute: CPU stretches
count wall-clock hours × threads (core-hours), CUDA stretches GPU minutes.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import tomllib
from pathlib import Path

CURVE_FIELDS = ["campaign_step", "stretch", "step", "lr", "train_mae_meV", "val_mae_meV", "core_hours", "gpu_minutes"]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _state(camp: Path) -> dict:
    p = camp / "state.json"
    return json.loads(p.read_text()) if p.exists() else {"stretches": [], "totals": {"cpu_core_hours": 0.0,
                                                                                   "gpu_minutes": 0.0, "steps": 0},
                                                        "best_val_mae_meV": None}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export_weights(ckpt_path: Path, out: Path) -> str:
    """The slim campaign weights of a checkpoint (EMA weights as the state dict, no optimizer, no RNG); returns sha256."""
    import torch

    from uniham.model.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(ckpt_path)
    slim = {k: v for k, v in ck.items() if k not in ("optimizer", "rng", "splits")}
    slim["state_dict"] = ck.get("ema_state_dict") or ck["state_dict"]
    slim["ema_state_dict"] = None
    slim["format"] = "uniham-checkpoint-1"
    save_checkpoint(out, slim)
    torch.load(out, weights_only=True)  # readable as plain data
    return hashlib.sha256(out.read_bytes()).hexdigest()


def run(camp: Path, hours: float, threads: int, device: str, note: str, packed: str | None = None) -> dict:
    """One stretch; ``packed``: train on a packed slice (scripts/gpu_stretch.py) instead of [data] paths."""
    from uniham.model.train import train

    cfg_text = (camp / "config.toml").read_text()
    cfg = tomllib.loads(cfg_text)
    if packed:
        cfg.setdefault("data", {})["packed"] = str(Path(packed).resolve())
    state = _state(camp)
    n = len(state["stretches"]) + 1
    local = Path(cfg.get("out", f"runs/{camp.name}"))
    local.mkdir(parents=True, exist_ok=True)
    weights = camp / "weights.pt"
    train_cfg = cfg.setdefault("train", {})
    train_cfg |= {"max_minutes": 60 * hours, "steps": max(int(train_cfg.get("steps", 0)), 10 ** 7),
                  "device": device, "threads": threads}
    if weights.exists():
        train_cfg["init"] = str(weights.resolve())
    run_cfg = local / f"stretch-{n}.toml"
    run_cfg.write_text(_toml(cfg))
    started, t0, commit = time.strftime("%Y-%m-%dT%H:%M:%S"), time.time(), _commit()
    res = train(run_cfg, progress=True)
    wall_h = (time.time() - t0) / 3600
    return record(camp, local, res, {"started": started, "wall_h": wall_h, "device": device, "threads": threads,
                                     "from_commit": commit, "warm_start": "init" in train_cfg, "note": note})


def record(camp: Path, local: Path, res: dict, facts: dict) -> dict:
    """Append a finished run (its folder ``local``: log.csv, best.pt; ``res``: what `uniham train` returned) to the
    campaign as its next stretch: learning curve, compute tally, and its best weights when they beat the
    committed ones. ``facts``: started, wall_h, device, threads, from_commit, warm_start, note."""
    state = _state(camp)
    n = len(state["stretches"]) + 1
    weights = camp / "weights.pt"
    wall_h, device, threads = facts["wall_h"], facts["device"], facts["threads"]
    gpu = device.startswith("cuda")
    rows = list(csv.DictReader(open(local / "log.csv")))
    base_step, cpu0, gpu0 = state["totals"]["steps"], state["totals"]["cpu_core_hours"], state["totals"]["gpu_minutes"]
    total_wall = max(float(rows[-1]["wall_s"]) if rows else 1.0, 1e-9)
    new_curve = camp / "learning_curve.csv"
    write_header = not new_curve.exists()
    with open(new_curve, "a", newline="") as f:
        w = csv.DictWriter(f, CURVE_FIELDS)
        if write_header:
            w.writeheader()
        for r in rows:
            frac = float(r["wall_s"]) / total_wall
            w.writerow({"campaign_step": base_step + int(r["step"]), "stretch": n, "step": r["step"], "lr": r["lr"],
                        "train_mae_meV": r["train_mae_meV"], "val_mae_meV": r["val_mae_meV"],
                        "core_hours": round(cpu0 + (0 if gpu else frac * wall_h * threads), 4),
                        "gpu_minutes": round(gpu0 + (frac * wall_h * 60 if gpu else 0), 3)})
    best = res.get("best_val_mae_meV")
    # the bar to beat: the committed weights on this stretch's validation set (evaluated by the warm start before
    # its first step), so a stretch on a grown database compares like with like; no validation set: the stretch's
    # final weights are the model (as `uniham train` has it)
    bar = res.get("init_val_mae_meV")
    bar = state["best_val_mae_meV"] if bar is None else bar
    improved = best is None or bar is None or best < bar
    sha = None
    if improved or not weights.exists():
        sha = export_weights(local / "best.pt", weights)
        state["best_val_mae_meV"] = best
    entry = {"stretch": n, "started": facts["started"], "ended": facts.get("ended", time.strftime("%Y-%m-%dT%H:%M:%S")),
             "wall_h": round(wall_h, 4), "machine": {"node": platform.node(), "cpus": os.cpu_count()}, "device": device,
             "threads": threads, "steps": res["step"], "stopped": res.get("stopped"), "best_val_mae_meV": best,
             "kept": sha is not None, "weights_sha256": sha, "from_commit": facts["from_commit"],
             "warm_start": facts["warm_start"], "n_train": res["n_train"], "n_validation": res.get("n_validation"),
             "val_mae_meV_before": res.get("init_val_mae_meV"), "note": facts["note"]}
    state["stretches"].append(entry)
    state["totals"]["steps"] += res["step"]
    state["totals"]["cpu_core_hours"] = round(cpu0 + (0 if gpu else wall_h * threads), 4)
    state["totals"]["gpu_minutes"] = round(gpu0 + (wall_h * 60 if gpu else 0), 3)
    _atomic_write(camp / "state.json", json.dumps(state, indent=1).encode())
    plot(camp)
    return entry


def adopt(camp: Path, local: Path, threads: int, commit: str, note: str) -> dict:
    """A CPU run made outside the campaign (e.g. an A/B run of the same config, from scratch) as its next stretch:
    wall time and steps from its log.csv, its best validation MAE, its best.pt as the weights if better."""
    rows = list(csv.DictReader(open(local / "log.csv")))
    if not rows or not (local / "best.pt").exists():
        raise SystemExit(f"campaign: {local} holds no finished run (log.csv rows and best.pt)")
    from uniham.model.checkpoint import checkpoint_config, load_checkpoint
    from uniham.model.net import ModelConfig

    ck = load_checkpoint(local / "best.pt")
    section = tomllib.loads((camp / "config.toml").read_text()).get("model", {})
    have = checkpoint_config(ck)
    want = ModelConfig.from_dict(section | ({} if "layout" in section else {"layout": have.layout}))  # (from the data)
    if have.to_dict() != want.to_dict():
        raise SystemExit(f"campaign: {local}/best.pt is another architecture than {camp}/config.toml's [model]")
    vals = [float(r["val_mae_meV"]) for r in rows if r["val_mae_meV"] not in ("", "nan")]
    ck_time = (local / "best.pt").stat().st_mtime
    wall_h = float(rows[-1]["wall_s"]) / 3600
    res = {"step": int(rows[-1]["step"]), "stopped": "steps (adopted run)", "best_val_mae_meV": min(vals) if vals else None,
           "n_train": len(ck["splits"]["train"]), "n_validation": len(ck["splits"]["validation"]), "init_val_mae_meV": None}
    return record(camp, local, res, {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ck_time - 3600 * wall_h)),
                                     "ended": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ck_time)),
                                     "wall_h": wall_h, "device": "cpu", "threads": threads, "from_commit": commit,
                                     "warm_start": False, "note": note})


def stretch_weights(camp: Path, stretch: int) -> tuple[str, bytes]:
    """(commit, file bytes) of the weights a stretch left: the version of CAMPAIGN/weights.pt in the git history
    whose sha256 is the one state.json recorded for it (a stretch that kept no weights has none)."""
    entry = next((e for e in _state(camp)["stretches"] if e["stretch"] == stretch), None)
    if entry is None or not entry.get("weights_sha256") or not entry.get("kept", True):
        raise SystemExit(f"campaign: stretch {stretch} of {camp} recorded no weights of its own")
    path = (camp / "weights.pt").resolve()
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                               cwd=path.parent).stdout.strip())
    rel = path.relative_to(root).as_posix()
    revs = subprocess.run(["git", "log", "--format=%h", "--", rel], capture_output=True, text=True, cwd=root).stdout.split()
    for rev in revs:
        blob = subprocess.run(["git", "show", f"{rev}:{rel}"], capture_output=True, cwd=root).stdout
        if hashlib.sha256(blob).hexdigest() == entry["weights_sha256"]:
            return rev, blob
    if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == entry["weights_sha256"]:
        return "uncommitted", path.read_bytes()
    raise SystemExit(f"campaign: the weights of stretch {stretch} (sha256 {entry['weights_sha256'][:12]}…) are not in "
                     f"the history of {rel}")


def soup(camp: Path, stretches: list[int], out: Path) -> dict:
    """The mean of the weights of ``stretches`` (a model soup, :func:`uniham.model.checkpoint.average_weights`),
    written to ``out`` with its members: {stretch, commit, sha256} each, found by :func:`stretch_weights`."""
    import io

    import torch

    from uniham.model.checkpoint import average_weights, check_checkpoint, save_checkpoint

    members, cks = [], []
    for n in stretches:
        rev, blob = stretch_weights(camp, n)
        ck = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        check_checkpoint(ck, f"stretch {n} ({rev})")
        members.append({"stretch": n, "commit": rev, "sha256": hashlib.sha256(blob).hexdigest()})
        cks.append(ck)
    avg = average_weights(cks, [f"{camp.name} stretch {m['stretch']} ({m['commit']})" for m in members])
    avg["soup"] = {"campaign": camp.as_posix(), "members": members,
                   "reproduce": f"python scripts/campaign.py soup {camp.as_posix()} --stretches "
                                f"{' '.join(map(str, stretches))} -o {out.as_posix()}"}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, avg)
    return {"out": str(out), "members": members, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


def plot(camp: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(camp / "learning_curve.csv")))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for s in sorted({int(r["stretch"]) for r in rows}):
        rr = [r for r in rows if int(r["stretch"]) == s]
        x = [float(r["core_hours"]) + float(r["gpu_minutes"]) / 60 for r in rr]
        ax.semilogy(x, [float(r["train_mae_meV"]) for r in rr], color="0.6", lw=0.8)
        val = [float(r["val_mae_meV"]) for r in rr]
        ax.semilogy(x, val, marker=".", lw=1.2, label=f"stretch {s}")
    ax.set_xlabel("cumulative compute (CPU core-hours + GPU hours)")
    ax.set_ylabel("H MAE (meV): validation (colour), train (grey)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(camp / "learning_curve.png", dpi=120)
    plt.close(fig)


def _toml(d: dict, prefix: str = "") -> str:
    """A minimal TOML writer for uniham's configs (tables of scalars and lists)."""
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    out = "".join(f"{k} = {json.dumps(v)}\n" for k, v in scalars.items())
    for k, v in d.items():
        if isinstance(v, dict):
            out += f"\n[{prefix}{k}]\n" + _toml(v, f"{prefix}{k}.")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("campaign")
    r.add_argument("--hours", type=float, default=1.0)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--device", default="cpu")
    r.add_argument("--note", default="")
    a = sub.add_parser("adopt", help="record a finished `uniham train` run of the campaign's config as its next stretch")
    a.add_argument("campaign")
    a.add_argument("run", help="the run's out folder (log.csv, best.pt)")
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--from-commit", default="", help="the commit the run was made with")
    a.add_argument("--note", default="")
    s = sub.add_parser("status")
    s.add_argument("campaign")
    m = sub.add_parser("soup", help="average the weights of several stretches (found in the git history) into one file")
    m.add_argument("campaign")
    m.add_argument("--stretches", type=int, nargs="+", required=True)
    m.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    camp = Path(args.campaign)
    if not (camp / "config.toml").exists():
        print(f"campaign: {camp}/config.toml not found", file=sys.stderr)
        return 2
    if args.cmd == "status":
        print(json.dumps(_state(camp), indent=1))
        return 0
    if args.cmd == "soup":
        from uniham.errors import UnihamError

        try:
            print(json.dumps(soup(camp, args.stretches, args.out)))
        except UnihamError as exc:
            print(f"campaign: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "adopt":
        print(json.dumps(adopt(camp, Path(args.run), args.threads, args.from_commit, args.note)))
        return 0
    if not args.hours > 0:
        print("campaign: --hours must be positive", file=sys.stderr)
        return 2
    from uniham.errors import UnihamError

    try:
        print(json.dumps(run(camp, args.hours, args.threads, args.device, args.note)))
    except UnihamError as exc:
        print(f"campaign: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

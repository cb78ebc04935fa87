"""Training: ``uniham train CONFIG.toml [--resume]``.

CONFIG (TOML; every hyper-parameter, saved into each checkpoint with the code version)::

    out = "runs/si"                  # checkpoints, CSV log, learning curve
    [data]
    paths = ["data/si_rattled"]      # uniham datasets, DeepH-dock folders, folders of them
    fractions = [0.8, 0.1, 0.1]      # train / validation / test, by structure (hash of the id)
    seed = 0
    max_structures = 0               # 0 = all
    restrict_to = []                 # dataset folders: only structures (by id) that these hold too, e.g. the SCF
                                     # store restricted to what its ΔH store covers (same structures, same splits)
    [model]                          # uniham.model.net.ModelConfig
    kind = "so2"
    cutoff = 8.0                     # Angstrom: edges within this distance ...
    range_eps = 1e-5                 # ... or out to each element pair's basis range at this overlap (0 = off)
    [train]
    steps = 2000
    batch_size = 2
    lr = 3e-3
    weight_decay = 1e-5
    warmup = 100                     # linear warm-up steps, then cosine decay to lr * final_lr_ratio
    final_lr_ratio = 0.02
    ema = 0.99                       # EMA of the weights (0 = off); validation and checkpoints use it
    clip = 10.0                      # gradient-norm clipping
    eval_every = 100
    checkpoint_every = 200
    patience = 0                     # early stopping after this many evaluations without improvement (0 = off)
    loss = "mse"                     # "mse" or "mae" on H entries (eV)
    overlap_weight = 0.0             # block weight 1 + w * max|S_block|: strongly overlapping (near) blocks,
                                     # which set the bands, count more than the many small far ones
    site_reference = true            # predict on-site blocks relative to per-element mean levels (fitted)
    gauge = "absolute"               # "absolute", or "free": loss invariant to H -> H + c S per structure
    band_weight = 0.0                # > 0: add this times the band-aware loss (uniham.model.band_loss: the block
                                     # errors through the DFT eigenvectors within E_F +- 2 eV at one k per structure)
    device = "auto"                  # "auto" (CUDA when present), "cpu", "cuda"
    compile = false                  # torch.compile the model for training steps (pays off for many steps on
                                     # one structure size: GPU launch overhead; compiling takes minutes)
    amp = false                      # bfloat16 autocast on CUDA (measured: no faster for this model, 18 % worse MAE)
    seed = 0
    threads = 0                      # torch CPU threads (0 = torch's default; 1 on a shared CPU)
    max_minutes = 0                  # wall-clock budget of this invocation (0 = none): equal-budget comparisons
    init = ""                        # warm start: weights of this checkpoint or weights file (EMA if present,
                                     # its on-site reference too), same [model]; fresh optimizer and schedule

Several GPUs: ``torchrun --nproc_per_node N -m uniham.cli train CONFIG`` (DistributedDataParallel; each
rank takes every N-th batch). A checkpoint is written every ``checkpoint_every`` steps, at the end, and
on SIGTERM/SIGINT; ``--resume`` continues with the same step, optimizer, scheduler, EMA and RNG state.
Checkpoints are plain data (config, state dicts, layout, version) loaded with
``torch.load(weights_only=True)`` and rebuilt by :func:`uniham.model.net.build_model`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import signal
import time
import tomllib
from contextlib import contextmanager
from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uniham.errors import UnihamError
from uniham.model.graph import collate
from uniham.model.net import ModelConfig, build_model

log = logging.getLogger(__name__)

TRAIN_DEFAULTS = {"steps": 2000, "batch_size": 2, "lr": 3e-3, "weight_decay": 1e-5, "warmup": 100,
                  "final_lr_ratio": 0.02, "ema": 0.99, "clip": 10.0, "eval_every": 100, "checkpoint_every": 200,
                  "patience": 0, "loss": "mse", "overlap_weight": 0.0, "band_weight": 0.0, "site_reference": True, "gauge": "absolute", "device": "auto", "compile": False, "amp": False, "seed": 0,
                  "threads": 0, "max_minutes": 0.0, "init": ""}
# split_by / holdout as in `uniham dataset split --by ... --holdout ...`: both give the same splits
DATA_DEFAULTS = {"paths": [], "fractions": [0.8, 0.1, 0.1], "seed": 0, "max_structures": 0,
                 "split_by": "structure", "holdout": [], "restrict_to": [], "packed": "", "train_fraction": 1.0}


def load_config(path) -> dict:
    try:
        cfg = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UnihamError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise UnihamError(f"{path}: a folder, not a config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UnihamError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(cfg) - {"out", "data", "model", "train"}
    if unknown:
        raise UnihamError(f"{path}: unknown sections {sorted(unknown)}")
    for sect, defaults in (("train", TRAIN_DEFAULTS), ("data", DATA_DEFAULTS)):
        bad = set(cfg.get(sect, {})) - set(defaults)
        if bad:
            raise UnihamError(f"{path}: unknown [{sect}] keys {sorted(bad)}")
        cfg[sect] = defaults | cfg.get(sect, {})
    _check_train_section(cfg["train"], path)
    try:
        ModelConfig.from_dict(cfg.get("model", {})).validate()
    except (TypeError, ValueError) as exc:
        raise UnihamError(f"{path}: bad [model] section: {exc}") from None
    tf = cfg["data"]["train_fraction"]
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf <= 1:
        raise UnihamError(f"{path}: [data] train_fraction = {tf!r}: expected a number in (0, 1]")
    if not isinstance(cfg["data"]["packed"], str):
        raise UnihamError(f"{path}: [data] packed must be a file name (a slice of scripts/gpu_stretch.py)")
    if not cfg["data"]["paths"] and not cfg["data"]["packed"]:
        raise UnihamError(f"{path}: [data] paths is empty")
    if not isinstance(cfg["data"]["paths"], list) or not all(isinstance(x, str) for x in cfg["data"]["paths"]):
        raise UnihamError(f"{path}: [data] paths must be a list of folder names, e.g. paths = [\"data/db1\"]")
    if not isinstance(cfg.get("out", ""), str):
        raise UnihamError(f"{path}: out must be a folder name (a string)")
    from uniham.data.build import SPLIT_BY

    if cfg["data"]["split_by"] not in SPLIT_BY:
        raise UnihamError(f"{path}: [data] split_by = {cfg['data']['split_by']!r}: expected one of {', '.join(SPLIT_BY)}")
    cfg.setdefault("out", str(Path(path).with_suffix("")))
    return cfg


# [train] key -> (lowest allowed, highest allowed or None, lowest excluded); the type is the default's
TRAIN_RANGES = {"steps": (1, None), "batch_size": (1, None), "lr": (0, None, True), "weight_decay": (0, None),
                "warmup": (0, None), "final_lr_ratio": (0, 1), "ema": (0, 0.999999), "clip": (0, None, True),
                "eval_every": (1, None), "checkpoint_every": (1, None), "patience": (0, None),
                "overlap_weight": (0, None), "band_weight": (0, None), "threads": (0, None), "max_minutes": (0, None)}
TRAIN_CHOICES = {"loss": ("mse", "mae"), "gauge": ("absolute", "free")}


def _check_train_section(tr: dict, path) -> None:
    """Every [train] value of the right type and range, before anything is loaded or written (one line each)."""
    for key, default in TRAIN_DEFAULTS.items():
        v = tr[key]
        kind = type(default)
        ok = isinstance(v, bool) if kind is bool else (
            isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
            if kind in (int, float) else isinstance(v, kind))
        if not ok:
            raise UnihamError(f"{path}: [train] {key} = {v!r}: expected {'a number' if kind is float else kind.__name__}")
        if key in TRAIN_RANGES:
            lo, hi, *strict = TRAIN_RANGES[key]
            if v < lo or (strict and v == lo) or (hi is not None and v > hi):
                span = f"{'>' if strict else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise UnihamError(f"{path}: [train] {key} = {v!r}: must be {span}")
        if key in TRAIN_CHOICES and v not in TRAIN_CHOICES[key]:
            raise UnihamError(f"{path}: [train] {key} = {v!r}: expected one of {', '.join(TRAIN_CHOICES[key])}")
    if not (tr["device"] in ("auto", "cpu") or str(tr["device"]).startswith("cuda")):
        raise UnihamError(f"{path}: [train] device = {tr['device']!r}: expected auto, cpu or cuda[:N]")


# ----------------------------------------------------------------------------- losses and metrics
def residuals(pred: tuple, batch: dict, gauge: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked residuals of on-site and off-site blocks (eV); gauge "free" removes c S per structure."""
    hs, he = pred
    rs = (hs - batch["h_site"]) * batch["m_site"]
    re = (he - batch["h_edge"]) * batch["m_edge"]
    if gauge == "free":
        nb = batch["n_structures"]
        ss, se = batch["s_site"] * batch["m_site"], batch["s_edge"] * batch["m_edge"]
        num = torch.zeros(nb, dtype=hs.dtype, device=hs.device)
        den = torch.zeros_like(num)
        num.index_add_(0, batch["batch"], (rs * ss).sum((1, 2))).index_add_(0, batch["edge_batch"], (re * se).sum((1, 2)))
        den.index_add_(0, batch["batch"], (ss * ss).sum((1, 2))).index_add_(0, batch["edge_batch"], (se * se).sum((1, 2)))
        c = num / den.clamp_min(1e-12)
        rs = rs - c[batch["batch"], None, None] * ss
        re = re - c[batch["edge_batch"], None, None] * se
    return rs, re


def block_weights(batch: dict, overlap_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block loss weights 1 + w * max|S_block| for on-site (N,) and off-site (E,) blocks."""
    ws = 1 + overlap_weight * (batch["s_site"] * batch["m_site"]).abs().amax((1, 2))
    we = 1 + overlap_weight * (batch["s_edge"] * batch["m_edge"]).abs().amax((1, 2))
    return ws, we


def loss_fn(pred, batch, kind: str, gauge: str, overlap_weight: float = 0.0,
            band_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, unweighted MAE in eV). The loss is the weighted mean of |r| ("mae") or r^2 ("mse") over
    the masked entries, weights from :func:`block_weights` (all 1 when ``overlap_weight`` is 0), plus
    ``band_weight`` times the band and coupling terms of :func:`uniham.model.band_loss.band_residual`."""
    rs, re = residuals(pred, batch, gauge)
    if band_weight:
        from uniham.model.band_loss import band_residual

        loss, mae = _entry_loss(rs, re, batch, kind, overlap_weight)
        band, coupling = band_residual(rs, re, batch)
        return loss + band_weight * (band + coupling), mae
    return _entry_loss(rs, re, batch, kind, overlap_weight)


def _entry_loss(rs, re, batch, kind: str, overlap_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = batch["m_site"].sum() + batch["m_edge"].sum()
    mae = (rs.abs().sum() + re.abs().sum()) / n
    if kind == "mae" and not overlap_weight:
        return mae, mae
    f = (lambda r: r.abs()) if kind == "mae" else (lambda r: r.pow(2))
    if not overlap_weight:
        return (f(rs).sum() + f(re).sum()) / n, mae
    ws, we = block_weights(batch, overlap_weight)
    norm = (ws * batch["m_site"].sum((1, 2))).sum() + (we * batch["m_edge"].sum((1, 2))).sum()
    return ((f(rs).sum((1, 2)) * ws).sum() + (f(re).sum((1, 2)) * we).sum()) / norm, mae


@torch.no_grad()
def fit_site_reference(samples: list[dict], layout) -> torch.Tensor:
    """(87, U, U) mean invariant on-site block of each element over ``samples`` (eV), zero for elements
    absent. Only the L = 0 parts (a level per shell pair of equal l), so adding it keeps equivariance."""
    from uniham.model.net import N_ELEMENTS

    u = layout.dim
    tot = torch.zeros(N_ELEMENTS, u, u, dtype=torch.float64)
    cnt = torch.zeros(N_ELEMENTS, u, u, dtype=torch.float64)
    for smp in samples:
        inv = layout.invariant_part(smp["h_site"].double() * smp["m_site"]).cpu()
        z = smp["z"].cpu()
        tot.index_add_(0, z, inv)
        cnt.index_add_(0, z, smp["m_site"].double().cpu())
    return (tot / cnt.clamp_min(1)).float()


def to_device(batch: dict, device, dtype) -> dict:
    return {k: (v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) if torch.is_tensor(v) else v)
            for k, v in batch.items()}


# distance shells (Angstrom) of the MAE by distance: models with different edge ranges compare on common shells
MAE_SHELLS = (0.0, 3.0, 5.0, 7.0, 10.0, float("inf"))


@torch.no_grad()
def evaluate_samples(model, samples: list[dict], layout, gauge: str, device, dtype, batch_size: int = 4) -> dict:
    """MAE (meV) overall, per element (blocks touching it), per orbital-pair type (s-s, s-p, ...) and by
    distance (on-site, then off-site blocks in the shells of :data:`MAE_SHELLS`)."""
    from ase.data import chemical_symbols

    model.eval()
    lpos = np.concatenate([[l] * (2 * l + 1) for l, _ in layout.slots])
    letters = "spdfg"
    tot, cnt = 0.0, 0
    per_el: dict[str, list[float]] = {}
    per_pair: dict[str, list[float]] = {}
    shells = [f"{a:g}-{b:g} A" for a, b in zip(MAE_SHELLS[:-1], MAE_SHELLS[1:])]
    per_d = {k: [0.0, 0] for k in ["on-site", *shells]}
    for start in range(0, len(samples), batch_size):
        batch = to_device(collate(samples[start:start + batch_size]), device, dtype)
        rs, re = residuals(model(batch), batch, gauge)
        a, mk = rs.abs().double().cpu().numpy(), batch["m_site"].cpu().numpy()
        per_d["on-site"][0] += a[mk].sum()
        per_d["on-site"][1] += mk.sum()
        a, mk = re.abs().double().cpu().numpy(), batch["m_edge"].cpu().numpy()
        shell = np.searchsorted(MAE_SHELLS, batch["vec"].norm(dim=1).cpu().numpy(), side="left") - 1
        for n, k in enumerate(shells):
            sel = shell == n
            per_d[k][0] += a[sel][mk[sel]].sum()
            per_d[k][1] += mk[sel].sum()
        for r, m, za, zb in ((rs, batch["m_site"], batch["z"], batch["z"]),
                             (re, batch["m_edge"], batch["z"][batch["edge_index"][0]], batch["z"][batch["edge_index"][1]])):
            a = r.abs().double().cpu().numpy()
            mk = m.cpu().numpy()
            tot += a[mk].sum()
            cnt += mk.sum()
            for zz in set(za.tolist()) | set(zb.tolist()):
                sel = ((za == zz) | (zb == zz)).cpu().numpy()
                v = per_el.setdefault(chemical_symbols[zz], [0.0, 0])
                v[0] += a[sel][mk[sel]].sum()
                v[1] += mk[sel].sum()
            for l1 in range(layout.lmax + 1):
                for l2 in range(l1, layout.lmax + 1):
                    sel = np.zeros(mk.shape[1:], bool)
                    sel[np.ix_(lpos == l1, lpos == l2)] = True
                    sel[np.ix_(lpos == l2, lpos == l1)] = True
                    mm = mk & sel[None]
                    v = per_pair.setdefault(f"{letters[l1]}-{letters[l2]}", [0.0, 0])
                    v[0] += a[mm].sum()
                    v[1] += mm.sum()
    model.train()
    return {"mae_meV": 1000 * tot / max(cnt, 1),
            "mae_per_element_meV": {k: 1000 * v[0] / v[1] for k, v in sorted(per_el.items()) if v[1]},
            "mae_per_orbital_pair_meV": {k: 1000 * v[0] / v[1] for k, v in per_pair.items() if v[1]},
            "mae_by_distance_meV": {k: 1000 * v[0] / v[1] for k, v in per_d.items() if v[1]},
            "entries_by_distance": {k: int(v[1]) for k, v in per_d.items() if v[1]},
            "n_structures": len(samples), "n_entries": int(cnt)}


# ----------------------------------------------------------------------------- checkpoints
# (uniham.model.checkpoint; imported here for the callers that know them from the trainer)
from uniham.model.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402,F401


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": torch.tensor(np.frombuffer(
        np.random.get_state()[1].tobytes(), dtype=np.uint8).copy())}


# ----------------------------------------------------------------------------- the loop
def lr_at(step: int, t: dict, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to lr * final_lr_ratio. With a wall-clock budget
    (``max_minutes``) the decay follows whichever of steps and elapsed time is further along, so a
    run cut by its budget still ends at the low learning rate."""
    if step < t["warmup"]:
        return t["lr"] * (step + 1) / t["warmup"]
    frac = max((step - t["warmup"]) / max(1, t["steps"] - t["warmup"]), time_frac)
    lo = t["final_lr_ratio"]
    return t["lr"] * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def train(config_path, resume: bool = False, progress: bool = True, prepare_only: bool = False) -> dict:
    cfg = load_config(config_path)
    t, dcfg = cfg["train"], cfg["data"]
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    world, rank, device = _runtime(t)
    if dcfg["packed"]:  # a packed slice (scripts/gpu_stretch.py): everything comes from the file, no database
        data = _packed_training_data(dcfg["packed"], cfg, resume, device)
    else:
        data = _database_training_data(cfg, out, resume, progress, rank, device)
    (train_set, val_set, model, layout, family, target, splits, split_keys, split_rule, prev, mcfg) = data
    if prepare_only:
        return {"samples": str(out / "samples.pt"), "n_train": len(train_set), "n_validation": len(val_set)}
    train_set = _samples_on_device(train_set, device)
    run = _Run(cfg=cfg, model=model, mcfg=mcfg, layout=layout, family=family, target=target, splits=splits,
               split_keys=split_keys, split_rule=split_rule, val_set=val_set, device=device, out=out,
               opt=torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"]),
               ema=EMA(model, t["ema"]) if t["ema"] else None,
               elements_seen=_initial_weights(model, train_set, layout, t, mcfg, device, resume))
    if t["init"] and not resume and val_set and rank == 0:  # the warm start's own weights on this validation set
        run.init_val = evaluate_samples(model, val_set, layout, t["gauge"], device, torch.float32)["mae_meV"]
        log.info("warm start from %s: validation MAE %.3f meV before training", t["init"], run.init_val)
    if not resume and rank == 0:
        run.best_path.unlink(missing_ok=True)  # a fresh run never reports an earlier run's model
    if resume:
        run.restore(prev if prev is not None else load_checkpoint(run.ckpt_path, device))
    ddp_model = torch.compile(model) if t["compile"] else model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(ddp_model, device_ids=[device] if device.type == "cuda" else None)
    log_path = out / "log.csv"
    t0 = time.perf_counter()
    with _stop_on_signals() as stop, _training_log(log_path, append=resume and log_path.exists()) as (logf, writer):
        result = _steps(run, ddp_model, train_set, world, rank, progress, stop, logf, writer, t0)
    if rank == 0:
        save_checkpoint(run.ckpt_path, run.state(final=run.step >= t["steps"]))
        if not val_set or not run.best_path.exists():  # no validation set: the final weights are the model
            save_checkpoint(run.best_path, run.state(slim=True))
        plot_learning_curve(log_path, out / "learning_curve.png")
    if world > 1:
        torch.distributed.destroy_process_group()
    best = run.best
    return result | {"step": run.step, "best_val_mae_meV": best if math.isfinite(best) else None, "out": str(out),
                     "n_train": len(train_set), "n_validation": len(val_set), "wall_s": time.perf_counter() - t0,
                     "init_val_mae_meV": run.init_val}


def _runtime(t: dict) -> tuple[int, int, torch.device]:
    """(world size, rank, device) of this process (torchrun sets WORLD_SIZE, RANK, LOCAL_RANK), with threads
    and seeds set."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if t["device"] == "auto":
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(t["device"])
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    torch.manual_seed(t["seed"])
    np.random.seed(t["seed"])
    return world, rank, device


def _initial_weights(model, train_set, layout, t: dict, mcfg, device, resume: bool) -> list[int]:
    """Warm start and per-element reference on-site blocks of a new run; returns the elements the weights
    cover (this run's training elements, plus those of the warm start's weights)."""
    elements_seen = sorted({int(z) for smp in train_set for z in smp["z"].tolist()})
    if t["init"] and not resume:  # the elements the warm start's weights were trained on stay covered
        elements_seen = sorted(set(elements_seen) | set(warm_start(model, t["init"], mcfg, device)))
        if t["site_reference"]:  # elements new to this run get their fitted reference, the others keep theirs
            fit = fit_site_reference(train_set, layout).to(device)
            new = (model.site_ref.abs().sum((1, 2)) == 0) & (fit.abs().sum((1, 2)) > 0)
            model.site_ref[new] = fit[new]
    elif t["site_reference"] and not resume:
        model.site_ref.copy_(fit_site_reference(train_set, layout).to(device))
    return elements_seen


@dataclass
class _Run:
    """A training run's model, optimizer and bookkeeping: what a checkpoint holds and a resume restores."""

    cfg: dict
    model: torch.nn.Module
    mcfg: ModelConfig
    layout: object
    family: str
    target: dict
    splits: dict
    split_keys: dict
    split_rule: dict | None
    val_set: list
    device: torch.device
    out: Path
    opt: torch.optim.Optimizer
    ema: object
    elements_seen: list
    step: int = 0
    epoch: int = 0
    best: float = float("inf")
    bad_evals: int = 0
    init_val: float | None = None

    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    def state(self, final: bool = False, slim: bool = False) -> dict:
        """Everything to resume; ``slim`` (best.pt, for predict/evaluate) leaves out the optimizer."""
        import uniham

        ema = self.ema
        return {"format": "uniham-checkpoint-1", "version": uniham.__version__, "config": self.cfg,
                "model_config": self.mcfg.to_dict(), "layout": [list(x) for x in self.layout.counts],
                "basis_family": self.family, "target": self.target, "elements_seen": self.elements_seen,
                "state_dict": self.model.state_dict(), "ema_state_dict": ema.shadow if ema is not None else None,
                "ema_n": ema.n if ema is not None else 0, "optimizer": None if slim else self.opt.state_dict(),
                "step": self.step, "epoch": self.epoch, "best_val_mae_meV": self.best, "bad_evals": self.bad_evals,
                "splits": self.splits, "split_keys": self.split_keys, "split_rule": self.split_rule,
                "rng": _rng_state(), "final": final}

    def restore(self, ck: dict) -> None:
        """Weights, optimizer, EMA, counters and the torch RNG of a checkpoint (``uniham train --resume``)."""
        model = self.model
        sd = dict(ck["state_dict"])
        sd.setdefault("site_ref", model.site_ref)
        model.load_state_dict(sd)
        self.opt.load_state_dict(ck["optimizer"])
        if self.ema is not None and ck.get("ema_state_dict"):
            self.ema.shadow = {k: v.to(self.device) for k, v in ck["ema_state_dict"].items()}
            self.ema.shadow.setdefault("site_ref", model.site_ref.detach().clone())
            self.ema.n = ck.get("ema_n", 0)
        self.step, self.best, self.bad_evals, self.epoch = ck["step"], ck["best_val_mae_meV"], ck["bad_evals"], ck["epoch"]
        torch.set_rng_state(ck["rng"]["torch"])
        log.info("resumed from %s at step %d", self.ckpt_path, self.step)

    def evaluate(self, writer, logf, lr: float, run_loss, run_mae, run_n: int, wall: float) -> bool:
        """Validation MAE with the EMA weights, a log row, best.pt when it improved; True when patience ran out."""
        t = self.cfg["train"]
        with self.ema.applied(self.model) if self.ema is not None else _nullcontext():
            val = (evaluate_samples(self.model, self.val_set, self.layout, t["gauge"], self.device, torch.float32)["mae_meV"]
                   if self.val_set else float("nan"))
        writer.writerow([self.step, self.epoch, f"{lr:.3e}", f"{run_loss.item() / run_n:.6e}",
                         f"{1000 * run_mae.item() / run_n:.4f}", f"{val:.4f}", f"{wall:.1f}"])
        logf.flush()
        if self.val_set and val < self.best:
            self.best, self.bad_evals = val, 0
            save_checkpoint(self.best_path, self.state(slim=True))
        elif self.val_set:
            self.bad_evals += 1
        return bool(t["patience"] and self.bad_evals >= t["patience"])


@contextmanager
def _stop_on_signals():
    """A flag {"flag": bool} that SIGTERM and SIGINT set (the loop then stops cleanly, checkpointed); the old
    handlers come back however the block ends."""
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _training_log(path: Path, append: bool):
    """(file, csv writer) of the run's log.csv: appended to on a resume, else new with its header; closed
    however the block ends."""
    with open(path, "a" if append else "w", newline="") as logf:
        writer = csv.writer(logf)
        if not append:
            writer.writerow(["step", "epoch", "lr", "train_loss", "train_mae_meV", "val_mae_meV", "wall_s"])
        yield logf, writer


def _steps(run: _Run, ddp_model, train_set, world: int, rank: int, progress: bool, stop: dict, logf, writer,
           t0: float) -> dict:
    """The optimization loop from run.step to [train] steps (or the time budget, a signal, early stopping):
    batches in a per-epoch seeded order, evaluations and checkpoints on their schedules."""
    from tqdm import tqdm

    t, model, opt, device = run.cfg["train"], run.model, run.opt, run.device
    bar = tqdm(total=t["steps"], initial=run.step, desc="training", unit="step", disable=not progress or rank > 0)
    order = np.random.default_rng([t["seed"], run.epoch]).permutation(len(train_set))
    pos = (run.step * t["batch_size"] * world) % max(1, len(train_set))
    run_loss, run_mae, run_n = torch.zeros((), device=device), torch.zeros((), device=device), 0
    amp = t["amp"] and device.type == "cuda"
    result = {"stopped": "steps"}
    model.train()
    while run.step < t["steps"]:
        if pos >= len(train_set):
            run.epoch += 1
            order = np.random.default_rng([t["seed"], run.epoch]).permutation(len(train_set))
            pos = 0
        idx = [order[(pos + k) % len(train_set)] for k in range(rank * t["batch_size"], (rank + 1) * t["batch_size"])]
        pos += t["batch_size"] * world
        batch = to_device(collate([train_set[k] for k in idx]), device, torch.float32)
        time_frac = (time.perf_counter() - t0) / (60 * t["max_minutes"]) if t["max_minutes"] else 0.0
        for g in opt.param_groups:
            g["lr"] = lr_at(run.step, t, time_frac)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = ddp_model(batch)
        loss, mae = loss_fn((pred[0].float(), pred[1].float()), batch, t["loss"], t["gauge"], t["overlap_weight"],
                            t["band_weight"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"])
        opt.step()
        if run.ema is not None:
            run.ema.update(model)
        run.step += 1
        step = run.step
        # sums stay on the device: a .item() per step would make the host wait for the GPU every step
        run_loss, run_mae, run_n = run_loss + loss.detach(), run_mae + mae.detach(), run_n + 1
        bar.update(1)
        # the time budget ends a stretch like its last step: evaluated (best.pt) and checkpointed
        last = step >= t["steps"] or bool(t["max_minutes"] and time.perf_counter() - t0 > 60 * t["max_minutes"])
        if step % 50 == 0 or last or stop["flag"] or step % t["eval_every"] == 0 or step % t["checkpoint_every"] == 0:
            if not torch.isfinite(run_loss):  # checked before any evaluation or checkpoint of these weights
                raise UnihamError(f"loss became {loss.item()} at or before step {step}: lower [train] lr")
            bar.set_postfix(mae_meV=f"{1000 * mae.item():.2f}")
        if rank == 0 and (step % t["eval_every"] == 0 or last or stop["flag"]):
            patience_out = run.evaluate(writer, logf, opt.param_groups[0]["lr"], run_loss, run_mae, run_n,
                                        time.perf_counter() - t0)
            run_loss, run_mae, run_n = torch.zeros((), device=device), torch.zeros((), device=device), 0
            if patience_out:
                result["stopped"] = f"early stopping after {run.bad_evals} evaluations without improvement"
                break
        if rank == 0 and (step % t["checkpoint_every"] == 0 or last or stop["flag"]):
            save_checkpoint(run.ckpt_path, run.state(final=step >= t["steps"]))
        if stop["flag"]:
            result["stopped"] = "signal"
            break
        if last and step < t["steps"]:
            result["stopped"] = f"time budget of {t['max_minutes']} min"
            break
    bar.close()
    return result


def _database_training_data(cfg: dict, out: Path, resume: bool, progress: bool, rank: int, device) -> tuple:
    """Samples, model and split bookkeeping of a run from its [data] paths (through OUT/samples.pt, built
    once): (train_set, val_set, model, layout, family, target, splits, split_keys, split_rule, prev, mcfg)."""
    items = _data_items(cfg["data"])
    target = learning_target(items)
    if cfg.get("model", {}).get("prior") and target["kind"] != "delta_h0":
        raise UnihamError("[model] prior = true needs ΔH data (`uniham dataset zeroth` stores)")
    by_id = {it.id: it for it in items}
    splits, split_rule, prev = _run_splits(items, cfg["data"], out, resume, device)
    # what `uniham evaluate --split` needs to pick the same split out of other folders (a subset's full store)
    split_keys = {name: sorted(by_id[i].key for i in ids) for name, ids in splits.items()}
    mcfg = ModelConfig.from_dict(cfg.get("model", {}))
    _check_stored_range(items, mcfg)
    train_set, val_set, model, family = _samples_and_model(cfg, mcfg, items, splits, out, progress and rank == 0,
                                                           rank == 0, device)
    return train_set, val_set, model, model.layout, family, target, splits, split_keys, split_rule, prev, mcfg


def _data_items(dcfg: dict) -> list:
    """The structures of [data] ``paths`` (only those of ``restrict_to`` stores, the first ``max_structures``)."""
    from uniham.model.data import discover

    items = discover(dcfg["paths"])
    if dcfg["restrict_to"]:
        from uniham.data.store import DatasetStore

        keep = set().union(*(DatasetStore(p).manifest["structures"] for p in dcfg["restrict_to"]))
        items = [it for it in items if it.key in keep]
    if dcfg["max_structures"]:
        items = items[:dcfg["max_structures"]]
    if len(items) < 1:
        raise UnihamError("no structures found in [data] paths")
    return items


def _run_splits(items: list, dcfg: dict, out: Path, resume: bool, device) -> tuple[dict, dict | None, dict | None]:
    """(splits, split_rule, previous checkpoint or None): the [data] split of ``items`` by ``split_by``, cut to
    ``train_fraction``; under ``--resume`` the run's own splits, which never change under it."""
    from uniham.data.build import split_group, split_ids

    groups = {it.id: split_group(it.key, it.record, dcfg["split_by"]) for it in items}
    splits = split_ids([it.id for it in items], tuple(dcfg["fractions"]), dcfg["seed"], groups, set(dcfg["holdout"]))
    if not splits["train"]:
        splits["train"] = splits["validation"] or splits["test"]
    if dcfg["train_fraction"] < 1:  # a learning-curve point: a fixed random part of the training split
        keep = np.random.default_rng(dcfg["seed"]).permutation(len(splits["train"]))
        keep = keep[:max(1, int(round(dcfg["train_fraction"] * len(splits["train"]))))]
        splits["train"] = sorted(splits["train"][i] for i in keep)
    # the rule `uniham evaluate --split` applies to other folders (None: checkpoints of uniham before 2026-11-27)
    split_rule = {k: dcfg[k] for k in ("fractions", "seed", "split_by", "holdout")}
    prev = load_checkpoint(out / "checkpoint.pt", device) if resume and (out / "checkpoint.pt").exists() else None
    if prev is not None and prev["splits"] != splits:
        missing = sorted(set().union(*map(set, prev["splits"].values())) - {it.id for it in items})
        if missing:
            raise UnihamError(f"--resume: {len(missing)} structures of the run's splits are not in [data] paths "
                              f"(e.g. {missing[0]})")
        log.warning("--resume keeps the run's own splits (today's data and [data] options split differently)")
        splits, split_rule = prev["splits"], prev.get("split_rule")
    return splits, split_rule, prev


def _sample_cache_keys(cfg: dict, mcfg: ModelConfig, splits: dict, need_s: bool) -> list[str]:
    """Keys under which OUT/samples.pt serves this run, the one to write last (a cache holding S serves runs
    that need it and runs that do not)."""
    key = [splits["train"], splits["validation"], mcfg.cutoff, cfg.get("model", {}).get("layout")]
    if mcfg.prior:  # (caches without H0 features keep their key)
        key.append("H0 features")
    if cfg["train"]["band_weight"] > 0:
        key.append("band eigenvectors")
    if mcfg.range_eps > 0:  # (fixed-cutoff caches keep their key)
        key.append(mcfg.range_eps)
    keys = [hashlib.sha256(json.dumps(key).encode()).hexdigest()]
    if not need_s:
        keys.insert(0, hashlib.sha256(json.dumps(key + ["without S"]).encode()).hexdigest())
    return keys


def _samples_and_model(cfg: dict, mcfg: ModelConfig, items: list, splits: dict, out: Path, progress: bool,
                       write_cache: bool, device) -> tuple:
    """(train_set, val_set, model, basis family): the graphs and targets of the training and validation splits
    from OUT/samples.pt when its key matches, else built (and cached) for a freshly built model's edges."""
    from uniham.model.data import layout_for, load_sample_cache, load_samples, save_sample_cache

    t = cfg["train"]
    # S enters training only through the "free" gauge and overlap-weighted losses: otherwise samples go without
    # it (no overlap integrals for dataset stores, half the cache)
    need_s = t["gauge"] == "free" or t["overlap_weight"] > 0
    keys = _sample_cache_keys(cfg, mcfg, splits, need_s)
    cached = load_sample_cache(out / "samples.pt", keys)
    if cached is not None:
        sets, meta = cached
        mcfg.layout = [tuple(x) for x in meta["layout"]]
        log.info("graphs and targets from the cache %s", out / "samples.pt")
        return sets["train"], sets["validation"], build_model(mcfg, meta["basis_family"]).to(device), \
            meta["basis_family"]
    if "layout" not in cfg.get("model", {}):
        mcfg.layout = layout_for(items).counts
    family = _basis_family(items)
    model = build_model(mcfg, family).to(device)
    by_id = {it.id: it for it in items}
    sets = {name: load_samples([by_id[i] for i in splits[name]], model.edge_range(), model.layout, progress,
                               with_overlap=need_s, prior=mcfg.prior, band=t["band_weight"] > 0)
            for name in ("train", "validation")}
    if write_cache:
        save_sample_cache(out / "samples.pt", keys[0], sets,
                          {"layout": [list(x) for x in model.layout.counts], "basis_family": family,
                           "cutoff": mcfg.cutoff, "range_eps": mcfg.range_eps, "overlap": need_s})
    return sets["train"], sets["validation"], model, family


def _check_stored_range(items, mcfg: ModelConfig) -> None:
    """A ΔH store keeps ΔH within its ``cutoff_A`` (ΔH ≈ 0 beyond, by construction): a model whose edges reach
    further would learn blocks that have no target. One line, before any sample is built."""
    stored = [it.record["cutoff_A"] for it in items if it.target == "delta_h0" and (it.record or {}).get("cutoff_A")]
    if not stored:
        return
    reach = min(stored)
    if mcfg.cutoff > reach + 1e-9:
        raise UnihamError(f"[model] cutoff = {mcfg.cutoff} A reaches beyond the ΔH store's {reach} A (its cutoff_A): "
                          f"edges past it have no ΔH target; use cutoff <= {reach} or remake the store")
    if mcfg.range_eps > 0:
        log.warning("[model] range_eps = %g on a ΔH store kept to %g A: edges past %g A are masked (ΔH there is "
                    "taken as 0)", mcfg.range_eps, reach, reach)

def _packed_training_data(path, cfg: dict, resume: bool, device) -> tuple:
    """The same tuple as :func:`_database_training_data` from a packed slice (:func:`uniham.model.data.save_packed_slice`):
    its samples, and the split keys and rule of the run it was cut from (so evaluate still knows what was trained)."""
    from uniham.model.data import load_packed_slice

    sets, meta = load_packed_slice(path)
    mcfg = ModelConfig.from_dict(cfg.get("model", {}))
    if meta.get("model_config") and ModelConfig.from_dict(meta["model_config"]).cutoff != mcfg.cutoff:
        raise UnihamError(f"{path}: samples cut at {meta['model_config']['cutoff']} A, the [model] at {mcfg.cutoff} A")
    mcfg.layout = [tuple(x) for x in meta["layout"]]
    model = build_model(mcfg, meta["basis_family"]).to(device)
    prev = load_checkpoint(Path(cfg["out"]) / "checkpoint.pt", device) if resume else None
    return (sets["train"], sets["validation"], model, model.layout, meta["basis_family"], meta["target"],
            meta["splits"], meta["split_keys"], meta["split_rule"], prev, mcfg)


def warm_start(model, path, mcfg: ModelConfig, device) -> list[int]:
    """Load the weights of ``path`` (a checkpoint or a weights file: its EMA weights if it has them) into
    ``model``; the architecture must be the same. Returns the atomic numbers those weights were trained on."""
    ck = load_checkpoint(path, device)
    theirs = checkpoint_config(ck).to_dict() if "model_config" in ck else None  # (older files: their defaults)
    if theirs != mcfg.to_dict():
        diff = sorted(k for k in mcfg.to_dict() if theirs is None or theirs.get(k) != mcfg.to_dict()[k])
        raise UnihamError(f"[train] init = {path}: another architecture (differs in {', '.join(diff) or 'everything'})")
    sd = dict(ck.get("ema_state_dict") or ck["state_dict"])
    missing = set(model.state_dict()) - set(sd)
    if missing:
        raise UnihamError(f"[train] init = {path}: no weights for {sorted(missing)[:3]}")
    model.load_state_dict(sd)
    log.info("warm start from %s (step %s)", path, ck.get("step"))
    return [int(z) for z in ck.get("elements_seen", [])]


def _samples_on_device(samples: list[dict], device, fraction: float = 0.25) -> list[dict]:
    """The training samples moved to a CUDA device once when they take less than ``fraction`` of its free
    memory (no host-to-device copy per step); unchanged otherwise and on CPU."""
    if device.type != "cuda":
        return samples
    size = sum(v.numel() * v.element_size() for smp in samples for v in smp.values() if torch.is_tensor(v))
    free, _ = torch.cuda.mem_get_info(device)
    if size > fraction * free:
        log.info("training samples (%.1f GB) stay in host memory", size / 1e9)
        return samples
    return [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in smp.items()} for smp in samples]


class EMA:
    """Exponential moving average of the weights (decay ramped up as min(decay, (1 + n) / (10 + n)))."""

    def __init__(self, model, decay: float) -> None:
        self.decay, self.n = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model) -> None:
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)
        self.n += 1

    @contextmanager
    def applied(self, model):
        """Temporarily load the averaged weights into ``model`` (no copy of the module)."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(saved)


def learning_target(items) -> dict:
    """What the network learns from ``items``: {"kind": "H"} (the DFT Hamiltonian: the "direct" model) or
    {"kind": "delta_h0", "h0": CP2K settings} (ΔH = H - H0: prediction adds the network's ΔH to a
    zeroth-step H0 computed with those settings). One kind per run."""
    kinds = {it.target for it in items}
    if len(kinds) > 1:
        raise UnihamError(f"[data] paths mix targets {sorted(kinds)}: train on H stores or on ΔH stores, not both")
    kind = kinds.pop()
    if kind == "H":
        return {"kind": "H"}
    priors = {json.dumps(it.prior, sort_keys=True) for it in items}
    if len(priors) > 1:
        raise UnihamError(f"[data] paths hold ΔH of different H0 settings: {sorted(priors)}")
    versions = sorted({str(((it.record or {}).get("h0") or {}).get("versions", {}).get("cp2k")) for it in items} - {"None"})
    return {"kind": kind, "h0": items[0].prior, "h0_cp2k_versions": versions}


def _basis_family(items) -> str | None:
    """The CP2K basis name of the data (from dataset manifests), so prediction can compute S."""
    try:
        ham = items[0].load(with_overlap=False)
    except Exception:  # noqa: BLE001
        return None
    prov = ham.provenance or {}
    if "h0" in prov:  # a ΔH store's record
        return prov["h0"].get("basis")
    if "dft" in prov:
        return prov["dft"].get("basis")
    sets = prov.get("basis_set") or prov.get("uniham", {}).get("basis_set")
    if isinstance(sets, dict) and sets:
        return next(iter(sets.values())).get("name")
    return prov.get("settings", {}).get("basis") if isinstance(prov.get("settings"), dict) else None


def plot_learning_curve(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(log_path)))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(steps, [float(r["train_mae_meV"]) for r in rows], label="train MAE")
    val = [float(r["val_mae_meV"]) for r in rows]
    if not all(math.isnan(v) for v in val):
        ax.semilogy(steps, val, label="validation MAE (EMA weights)")
    ax.set_xlabel("step")
    ax.set_ylabel("H MAE (meV)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)

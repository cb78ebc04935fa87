"""Checkpoints and weight files: plain data in, a checked network out.

A checkpoint is a dict of plain data (``torch.save``; loaded only with ``torch.load(weights_only=True)``, so
no code in a file ever runs): ``format`` ("uniham-checkpoint-1"), ``model_config`` (:class:`ModelConfig`
fields), ``state_dict`` and/or ``ema_state_dict`` (name -> tensor), ``basis_family``, ``target``,
``elements_seen``, training state. Since 2026-12-06 it also records ``weights_sha256``, the sha256 of its
weight tensors (names, dtypes, shapes, bytes), verified on load: a file whose weights were altered or damaged
is refused. Every problem is one :class:`UnihamError` line naming the file and what is wrong (never torch's
advice to load untrusted files with ``weights_only=False``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from uniham.errors import UnihamError
from uniham.model.net import ModelConfig, build_model

FORMAT = "uniham-checkpoint-1"


def _plain(obj):
    """Only types ``torch.load(weights_only=True)`` accepts: numpy scalars/arrays become Python/tensors."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    return obj


def weights_sha256(state: dict) -> str:
    """sha256 over the weight tensors of ``state`` (its state_dict and ema_state_dict: sorted names, dtypes,
    shapes and bytes)."""
    h = hashlib.sha256()
    for part in ("state_dict", "ema_state_dict"):
        sd = state.get(part) or {}
        for name in sorted(sd):
            v = sd[name].detach().cpu().contiguous()
            h.update(f"{part}/{name}/{v.dtype}/{tuple(v.shape)}".encode())
            h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` atomically as plain data, with its ``weights_sha256``."""
    path = Path(path)
    state = _plain(state) | {"weights_sha256": weights_sha256(state)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _torch_reason(exc: Exception) -> str:
    """The part of torch's refusal that says what is wrong, without its advice to disable weights_only."""
    text = str(exc)
    for marker in ("WeightsUnpickler error:", "Unsupported global", "Unsupported operand"):
        if marker in text:
            return "it holds code or objects that are not plain data (" + \
                text[text.index(marker):].splitlines()[0].strip().rstrip(".")[:160] + "); refused"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first[:160]}"


def load_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint dict of ``path``, read as plain data and checked (:func:`check_checkpoint`)."""
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UnihamError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise UnihamError(f"{path}: a folder, not a checkpoint file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or hostile files
        raise UnihamError(f"{path}: not a uniham checkpoint: {_torch_reason(exc)}") from None
    check_checkpoint(ck, path)
    return ck


def check_checkpoint(ck, path="checkpoint", checksum: bool = True) -> None:
    """Schema of a checkpoint: a dict with a known format, a valid model config, tensor state dicts, and (when
    recorded and ``checksum``) weights matching their checksum. One-line errors."""
    if not isinstance(ck, dict):
        raise UnihamError(f"{path}: not a uniham checkpoint (a {type(ck).__name__}, not a dict)")
    if ck.get("format", FORMAT) != FORMAT:
        raise UnihamError(f"{path}: checkpoint format {ck.get('format')!r}, expected {FORMAT!r}")
    for key in ("model_config", "state_dict"):
        if key not in ck:
            raise UnihamError(f"{path}: not a uniham checkpoint (no {key!r})")
    try:
        checkpoint_config(ck).validate()
    except (TypeError, ValueError) as exc:
        raise UnihamError(f"{path}: bad model_config: {exc}") from None
    for part in ("state_dict", "ema_state_dict"):
        sd = ck.get(part)
        if sd is None and part == "ema_state_dict":
            continue
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise UnihamError(f"{path}: {part} is not a dict of tensors")
    recorded = ck.get("weights_sha256")
    if checksum and recorded is not None and recorded != weights_sha256(ck):
        raise UnihamError(f"{path}: weights do not match the checksum recorded in the file (altered or damaged)")


def checkpoint_config(ck: dict) -> ModelConfig:
    """The ModelConfig of a checkpoint, with the defaults of the uniham version that wrote it for keys it lacks."""
    mc = dict(ck["model_config"]) if isinstance(ck["model_config"], dict) else None
    if mc is None:
        raise TypeError("not a dict")
    mc.setdefault("head_mmax", mc.get("mmax", 4))  # checkpoints from before head_mmax: heads had the layers' mmax
    mc.setdefault("norm", "degree")  # checkpoints from before the separable norm (uniham <= 0.1.3)
    unknown = set(mc) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown keys {sorted(unknown)}")
    return ModelConfig.from_dict(mc)


def _check_fit(sd: dict, own: dict, path, part: str) -> None:
    """One line naming the first state-dict keys or shapes of ``part`` that do not fit the architecture."""
    sd.setdefault("site_ref", own["site_ref"])  # checkpoints from before the on-site reference
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        what = "; ".join(x for x in (f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                                     f"shape of {shapes[0]} {tuple(sd[shapes[0]].shape)} != {tuple(own[shapes[0]].shape)}"
                                     if shapes else "") if x)
        raise UnihamError(f"{path}: {part} does not fit its model_config ({what})")


def model_from_checkpoint(ckpt: dict, ema: bool = True, path="checkpoint"):
    """The network of a (checked) checkpoint with its EMA weights (``ema``) or its raw ones; state-dict keys and
    shapes must be the architecture's (one line naming the first mismatches), weights finite. (The checksum was
    verified by :func:`load_checkpoint`, which reads every file: it is not hashed again here.)"""
    check_checkpoint(ckpt, path, checksum=False)
    try:
        model = build_model(checkpoint_config(ckpt), ckpt.get("basis_family"))
    except (TypeError, ValueError, UnihamError) as exc:
        raise UnihamError(f"{path}: cannot build its network: {exc}") from None
    own = model.state_dict()
    for part in ("state_dict", "ema_state_dict"):  # both must fit (resume takes the raw weights)
        if ckpt.get(part) is not None:
            _check_fit(dict(ckpt[part]), own, path, part)
    sd = dict(ckpt.get("ema_state_dict") if ema and ckpt.get("ema_state_dict") else ckpt["state_dict"])
    sd.setdefault("site_ref", model.site_ref)  # checkpoints from before the on-site reference
    model.load_state_dict(sd)
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise UnihamError(f"{path}: checkpoint weights contain NaN/inf ({k})")
    return model


def average_weights(checkpoints: list[dict], names: list[str] | None = None) -> dict:
    """A checkpoint whose weights are the mean of ``checkpoints``' (a "model soup": states of one training lineage,
    e.g. a campaign's stretches, which sit in one basin of the loss, so their mean is a model too and often a
    better one). They must share architecture, layout, basis, target and tensor names and shapes (one line
    naming the first difference); state_dict and ema_state_dict are averaged in float64 and stored in their own
    dtype. Everything else but optimizer and RNG state is the last checkpoint's; ``averaged_from`` records
    ``names`` (or member indices)."""
    if not checkpoints:
        raise UnihamError("no checkpoints to average")
    names = names or [f"checkpoint {i}" for i in range(len(checkpoints))]
    last = checkpoints[-1]
    for ck, name in zip(checkpoints, names):
        for what, a, b in (("model_config", checkpoint_config(ck), checkpoint_config(last)),
                           ("layout", ck.get("layout"), last.get("layout")),
                           ("basis_family", ck.get("basis_family"), last.get("basis_family")),
                           ("target", ck.get("target"), last.get("target"))):
            if a != b:
                raise UnihamError(f"{name}: its {what} differs from {names[-1]}'s: only one architecture averages")
    out = {k: v for k, v in last.items() if k not in ("weights_sha256", "optimizer", "rng")}  # weights, not a run
    for part in ("state_dict", "ema_state_dict"):
        sds = [ck.get(part) for ck in checkpoints]
        if all(sd is None for sd in sds):
            continue
        for sd, name in zip(sds, names):
            if sd is None or set(sd) != set(sds[-1]) or any(sd[k].shape != sds[-1][k].shape for k in sd):
                raise UnihamError(f"{name}: its {part} tensors differ from {names[-1]}'s in names or shapes")
        out[part] = {k: (sum(sd[k].double() for sd in sds) / len(sds)).to(sds[-1][k].dtype)
                     if sds[-1][k].is_floating_point() else sds[-1][k].clone() for k in sds[-1]}
    out["averaged_from"] = list(names)
    return out

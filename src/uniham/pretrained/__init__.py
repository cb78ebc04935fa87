"""Models shipped inside the package.

``index.json`` (beside this file) lists each shipped model::

    {"default": NAME,
     "models": {NAME: {"file": "NAME.pt", "sha256": HEX, "status": "experimental" | "default",
                       "card": "NAME.md", "summary": ONE LINE}}}

A model is resolved by name (the default when none is given) or taken as a path. A packaged file is read only
after its sha256 matches the recorded one (a tampered or damaged file is refused in one line), then loaded as
plain data (``torch.load(weights_only=True)``, :func:`uniham.model.checkpoint.load_checkpoint`). A model whose
status is "experimental" has not yet beaten both H0 alone and the direct baseline on the band metric; its
``notice`` says so.

Models are shipped by ``scripts/ship_model.py`` (weights, checksum, model card from an evaluation).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from uniham.errors import UnihamError

HERE = Path(__file__).resolve().parent
INDEX = HERE / "index.json"


def index() -> dict:
    """The parsed ``index.json`` ({"default": None, "models": {}} when nothing ships)."""
    if not INDEX.exists():
        return {"default": None, "models": {}}
    try:
        return json.loads(INDEX.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnihamError(f"{INDEX}: the index of shipped models is unreadable ({exc})") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(model: str | Path | None) -> tuple[Path, dict | None]:
    """(checkpoint path, index entry or None) of ``model``: None -> the default shipped model; a shipped name ->
    its file, checksum verified; anything else -> a path to a checkpoint (no index entry)."""
    idx = index()
    if model is None:
        model = idx.get("default")
        if model is None:
            raise UnihamError("no model ships with this uniham; train one (uniham train) and pass --model PATH")
    name = str(model)
    entry = idx["models"].get(name)
    if entry is None:
        if not Path(name).exists() and "/" not in name and not name.endswith(".pt"):
            known = ", ".join(sorted(idx["models"])) or "none"
            raise UnihamError(f"{name!r} is neither a checkpoint file nor a shipped model (shipped: {known})")
        return Path(name), None
    path = HERE / entry["file"]
    if not path.exists():
        raise UnihamError(f"shipped model {name!r}: {path} is missing from the installation (reinstall uniham)")
    got = sha256_file(path)
    if got != entry["sha256"]:
        raise UnihamError(f"shipped model {name!r}: {path} does not match its recorded checksum "
                          f"(sha256 {got[:12]}… != {entry['sha256'][:12]}…): altered or damaged, refused")
    return path, entry | {"name": name}


def notice(entry: dict | None) -> str | None:
    """The one line ``predict`` prints for a shipped model that is not (yet) a validated default."""
    if entry is None or entry.get("status") != "experimental":
        return None
    return (f"note: {entry['name']} is experimental: {entry.get('summary', 'see its model card')} "
            f"(model card: {HERE / entry.get('card', '')})")

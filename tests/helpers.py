"""Shared test helpers (importable from the tests: pytest puts this folder on sys.path)."""
import json
from pathlib import Path

TRAIN = {"batch_size": 1, "lr": 1e-2, "warmup": 5, "eval_every": 10, "checkpoint_every": 5, "threads": 1}


def train_config(tmp_path: Path, data, name: str, steps: int, model: dict | None = None, cutoff: float = 5.0,
                 layers: int = 2, fractions=(1.0, 0.0, 0.0), **train) -> Path:
    """A tiny training config (lmax 2, 8 channels) on ``data`` with ``steps`` steps, written to
    ``tmp_path/NAME.toml`` (out: ``tmp_path/NAME``); ``model`` and ``train`` add or override keys."""
    lines = lambda d: "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items())  # noqa: E731
    m = {"cutoff": cutoff, "lmax": 2, "mmax": 2, "channels": 8, "layers": layers, "heads": 2} | (model or {})
    p = tmp_path / f"{name}.toml"
    p.write_text(f"""out = "{tmp_path / name}"
[data]
paths = ["{data}"]
fractions = {json.dumps(list(fractions))}
[model]
{lines(m)}
[train]
{lines({"steps": steps} | TRAIN | train)}
""")
    return p

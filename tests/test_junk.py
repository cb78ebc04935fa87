"""Property-style: random junk (empty, random bytes, truncated and bit-flipped real files, wrong types) fed to
every subcommand that reads a file gets one line on stderr and exit status 2, never a traceback."""
import json
import shutil

import numpy as np
import pytest

from uniham.cli import main

ROOT_SI = "examples/Si_diamond.cif"

# subcommand -> argv with {f} for the junk path and {o} for an output path
COMMANDS = {
    "info": ["info", "{f}"],
    "bands": ["bands", "{f}"],
    "dos": ["dos", "{f}"],
    "optics": ["optics", "{f}", "--kmesh", "2,2,2"],
    "convert": ["convert", "{f}", "{o}"],
    "predict-structure": ["predict", "{f}", "-o", "{o}"],
    "predict-model": ["predict", ROOT_SI, "--model", "{f}", "-o", "{o}"],
    "evaluate-model": ["evaluate", "--model", "{f}", "--data", "{f}"],
    "train": ["train", "{f}"],
    "dft": ["dft", "{f}", "-o", "{o}"],
    "dataset-info": ["dataset", "info", "{f}", "--verify"],
    "dataset-plan": ["dataset", "plan", "{f}"],
    "dataset-repair": ["dataset", "repair", "{f}"],
}


def junk_files(folder, seed: int) -> dict:
    """Named junk: files of random bytes, empty files, text that looks like a format, truncated and flipped
    copies of a real CIF and a real DeepH-dock folder, a folder of junk."""
    from pathlib import Path

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for ext in ("", ".cif", ".h5", ".pt", ".toml", ".json", ".xyz", ".vasp"):
        p = folder / f"random{ext}"
        p.write_bytes(rng.bytes(int(rng.integers(1, 4000))))
        out[f"random{ext}"] = p
        e = folder / f"empty{ext}"
        e.write_bytes(b"")
        out[f"empty{ext}"] = e
    cif = open(ROOT_SI, "rb").read()
    t = folder / "truncated.cif"
    t.write_bytes(cif[: len(cif) // 3])
    out["truncated.cif"] = t
    j = folder / "list.json"
    j.write_text(json.dumps([1, 2, 3]))
    out["list.json"] = j
    toml = folder / "wrong_types.toml"
    toml.write_text('out = 5\n[data]\npaths = "x"\n[model]\ncutoff = "far"\n')
    out["wrong_types.toml"] = toml
    d = folder / "junkdir"
    d.mkdir(exist_ok=True)
    (d / "info.json").write_text("{")
    (d / "hamiltonian.h5").write_bytes(rng.bytes(500))
    (d / "manifest.json").write_text('{"shards": 3}')
    out["junkdir"] = d
    return out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_junk_is_one_line(command, tmp_path, capsys):
    files = junk_files(tmp_path / "junk", seed=len(command))
    bad = []
    for name, f in files.items():
        argv = [a.format(f=f, o=tmp_path / "out" / name) for a in COMMANDS[command]]
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors exit 2 themselves
            code = exc.code
        except Exception as exc:  # noqa: BLE001 - what this test exists to catch
            bad.append(f"{name}: {type(exc).__name__}: {str(exc)[:100]}")
            continue
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("usage:", " "))]
        if code != 2 or len(lines) != 1 or "Traceback" in err:
            bad.append(f"{name}: exit {code}, stderr {err[-300:]!r}")
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
    assert not bad, "\n".join(bad)

"""Provenance of every result under bench/results: the command, the uniham commit, the machine and the date.

Results written since bench/_meta.py carry their own (``command``, ``commit``, ``machine``, ``when`` at the top
of the JSON). For older ones this reconstructs them from the repository's history into FOLDER/provenance.json:
the commit that added the file (the code that ran was that commit's parent or the working tree beside it),
its date, and the machine the file's name and contents say (``cpu``: the project's 2-core development machine;
``h200``/``gpu``: a lent GPU node). Run it from a full clone (not a shallow one) after adding a result:

    python bench/provenance.py            # writes bench/results/*/provenance.json
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DEV = "the project's development machine (2 cores, 24 GiB, no GPU; shared with development and DFT)"
GPU = "a lent GPU node (one NVIDIA H200, 16 CPU cores)"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=RESULTS, check=True).stdout.strip()


def own_meta(path: Path) -> dict | None:
    """The run_meta a result recorded itself (bench/_meta.py), if it did."""
    if path.suffix != ".json":
        return None
    try:
        d = json.loads(path.read_text())
    except ValueError:
        return None
    if isinstance(d, dict) and {"command", "commit"} <= set(d):
        return {k: d[k] for k in ("command", "commit", "machine", "when") if k in d}
    return None


def reconstructed(path: Path) -> dict:
    # by its path (following the move into per-benchmark folders), else by its old place in the flat folder
    added = (git("log", "--follow", "--diff-filter=A", "--format=%h %aI", "--", str(path)).splitlines()
             or git("log", "--diff-filter=A", "--format=%h %aI", "--", path.name).splitlines())
    commit, when = added[-1].split() if added else ("", "")
    name = path.name.lower()
    machine = GPU if ("h200" in name or "gpu" in name) else DEV
    return {"commit_added": commit, "when": when[:19], "machine": machine,
            "note": "reconstructed from the repository history: the result predates recorded provenance"}


def main() -> None:
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        entries = {}
        for f in sorted(folder.iterdir()):
            if f.name == "provenance.json" or not f.is_file():
                continue
            entries[f.name] = own_meta(f) or reconstructed(f)
        script = next((s.name for s in folder.parent.parent.glob(f"{folder.name}.*") if s.suffix in (".py", ".sh")), None)
        (folder / "provenance.json").write_text(json.dumps({"benchmark": folder.name, "script": script and f"bench/{script}",
                                                            "results": entries}, indent=1) + "\n")
        print(folder.name, len(entries))


if __name__ == "__main__":
    main()

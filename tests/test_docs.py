"""The documentation site builds with `mkdocs build --strict` (every link resolves, every API object named in
docs/api.md exists, every docstring renders), and its generated pages hold what they promise."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                       capture_output=True, text=True, env=os.environ | {"NO_MKDOCS_2_WARNING": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cli = (site / "cli" / "index.html").read_text()
    for cmd in ("uniham predict", "uniham dataset zeroth", "uniham optics", "uniham evaluate"):
        assert cmd in cli  # each subcommand's --help, generated from the parser
    api = (site / "api" / "index.html").read_text()
    assert "uniham.api.predict" in api and "Band energies (eV, absolute)" in api  # from the docstrings
    assert (site / "models" / "cards" / "uniham-v1" / "index.html").exists()  # the shipped card
    bench = (site / "benchmarks" / "index.html").read_text()
    for folder in (ROOT / "bench" / "results").iterdir():
        if folder.is_dir():
            assert f"bench/results/{folder.name}/" in bench  # every benchmark folder indexed

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `-n 2` (pyproject's addopts): one thread per worker, or two workers on two cores fight over four threads
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def _realdata() -> Path | None:
    env = os.environ.get("UNIHAM_REALDATA")
    cands = [Path(env)] if env else []
    cands += [p / "shared" / "realdata" for p in (ROOT, *ROOT.parents)]
    for c in cands:
        if c.is_dir():
            return c
    return None


REALDATA = _realdata()


@pytest.fixture
def realdata() -> Path:
    if REALDATA is None:
        pytest.skip("shared/realdata not found (set UNIHAM_REALDATA); real-file tests need it")
    return REALDATA


@pytest.fixture(scope="session")
def cp2k() -> str:
    """Path of CP2K; skipped when absent unless UNIHAM_REQUIRE_CP2K is set (CI installs CP2K and sets it)."""
    from uniham.dft.cp2k_engine import find_cp2k
    from uniham.errors import UnihamError

    try:
        return find_cp2k()
    except UnihamError as exc:
        if os.environ.get("UNIHAM_REQUIRE_CP2K"):
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def stores(cp2k, tmp_path_factory):
    """A 2-structure SCF store of tests/data/tiny_recipe.toml and its ΔH store (cutoff 5 A), shared read-only
    (copy them to change them)."""
    from uniham.data.build import build
    from uniham.data.zeroth_step import zeroth_pass

    root = tmp_path_factory.mktemp("stores")
    build(ROOT / "tests" / "data" / "tiny_recipe.toml", root / "ds", workers=1, progress=False, limit=2)
    zeroth_pass(root / "ds", root / "dh", cutoff=5.0, workers=1, progress=False)
    return root / "ds", root / "dh"

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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

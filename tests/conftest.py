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

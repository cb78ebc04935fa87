"""Readers and writers of Hamiltonian files, one registry keyed by format name.

``read_hamiltonian(path, fmt=None)`` guesses the format from the path (folder contents or suffix);
``write_hamiltonian(ham, path, fmt="deeph-dock")``. Every reader returns blocks in uniham's orbital
order and eV (see :mod:`uniham.basis`, :mod:`uniham.hamiltonian`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian

READ_FORMATS = ("deeph-dock", "deeph-legacy", "siesta", "abacus", "fhi-aims", "uniham-sparse")
WRITE_FORMATS = ("deeph-dock", "deeph-legacy")


def guess_format(path: Path) -> str:
    from uniham.io.abacus import find_abacus_dir
    from uniham.io.deeph_dock import is_deeph_dock
    from uniham.io.deeph_legacy import is_deeph_legacy
    from uniham.io.fhiaims import is_fhiaims

    if not path.exists():
        raise UnihamError(f"no such file or folder: {path}")
    if path.is_file() and path.suffix == ".h5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if str(f.attrs.get("format", "")).startswith("uniham-sparse-"):
                    return "uniham-sparse"
        except OSError:
            pass
    if path.is_dir() and (path / "prediction.h5").exists():
        return "uniham-sparse"
    if path.is_file() and path.suffix.upper() in (".HSX", ".TSHS"):
        return "siesta"
    if path.is_dir():
        if is_deeph_dock(path):
            return "deeph-dock"
        if is_deeph_legacy(path):
            return "deeph-legacy"
        if is_fhiaims(path):
            return "fhi-aims"
        if find_abacus_dir(path) is not None:
            return "abacus"
        sies = sorted(path.glob("*.HSX")) + sorted(path.glob("*.TSHS"))
        if sies:
            return "siesta"
    elif path.name.startswith("data-") and path.suffix == ".csr":
        return "abacus"
    raise UnihamError(f"cannot tell the Hamiltonian format of {path}; give --from ({', '.join(READ_FORMATS)})")


def read_hamiltonian(path, fmt: str | None = None) -> Hamiltonian:
    """Read any supported Hamiltonian (file or folder) into a :class:`Hamiltonian`."""
    path = Path(os.fspath(path))
    fmt = fmt or guess_format(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if fmt == "uniham-sparse":
            from uniham.io.sparse_prediction import read_prediction

            return read_prediction(path / "prediction.h5" if path.is_dir() else path)
        if fmt == "deeph-dock":
            from uniham.io.deeph_dock import read_deeph_dock
            return read_deeph_dock(path)
        if fmt == "deeph-legacy":
            from uniham.io.deeph_legacy import read_deeph_legacy
            return read_deeph_legacy(path)
        if fmt == "siesta":
            from uniham.io.siesta import read_siesta
            if path.is_dir():
                cands = sorted(path.glob("*.HSX")) or sorted(path.glob("*.TSHS"))
                path = cands[0]
            return read_siesta(path)
        if fmt == "abacus":
            from uniham.io.abacus import read_abacus
            return read_abacus(path)
        if fmt == "fhi-aims":
            from uniham.io.fhiaims import read_fhiaims
            return read_fhiaims(path)
    raise UnihamError(f"unknown input format {fmt!r}; known: {', '.join(READ_FORMATS)}")


def write_hamiltonian(ham: Hamiltonian, path, fmt: str = "deeph-dock") -> Path:
    if fmt == "deeph-dock":
        from uniham.io.deeph_dock import write_deeph_dock
        return write_deeph_dock(ham, path)
    if fmt == "deeph-legacy":
        from uniham.io.deeph_legacy import write_deeph_legacy
        return write_deeph_legacy(ham, path)
    raise UnihamError(f"cannot write format {fmt!r}; known: {', '.join(WRITE_FORMATS)}")

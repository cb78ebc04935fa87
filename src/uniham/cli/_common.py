"""Argument parsing shared by the subcommands."""
from __future__ import annotations

from uniham.errors import UnihamError

SPARSE_ABOVE = 4000  # orbitals: above this `uniham bands` switches to the sparse eigensolver
LARGE_ABOVE = 500  # atoms: above this `uniham predict` runs chunked and writes prediction.h5


def kmesh_arg(text: str):
    """'auto' -> None; 'N1,N2,N3' or 'N1xN2xN3' -> (N1, N2, N3)."""
    if text == "auto":
        return None
    try:
        vals = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise UnihamError(f"k-mesh {text!r}: expected 'auto' or N1,N2,N3") from None
    if len(vals) != 3 or min(vals) < 1:
        raise UnihamError(f"k-mesh {text!r}: expected three positive integers")
    return vals

"""Argument parsing shared by the subcommands."""
from __future__ import annotations

import argparse
import math
import sys

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


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: a usage error is one line on stderr and exit status 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def bounded(kind: type, lo: float, hi: float | None = None, strict: bool = False):
    """An argparse ``type`` for numbers of ``kind`` (int or float) >= ``lo`` (> with ``strict``) and <= ``hi``:
    a value out of range is refused before anything runs."""

    def convert(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if math.isnan(v) or v < lo or (strict and v == lo) or (hi is not None and v > hi):
            span = f"{'>' if strict else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
            raise argparse.ArgumentTypeError(f"{text} must be {span}")
        return v

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert

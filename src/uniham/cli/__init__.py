"""The ``uniham`` command: thin wrappers over the library. Errors are one line and exit status 2.

One module per group of subcommands, each with its ``cmd_*`` functions and an ``add_parsers(sub)``:
:mod:`hamiltonian` (convert, info), :mod:`properties` (bands, dos, optics), :mod:`dft`,
:mod:`dataset`, :mod:`model` (train, predict, evaluate).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from uniham.errors import UnihamError


def build_parser() -> argparse.ArgumentParser:
    from uniham import __version__
    from uniham.cli import dataset, dft, hamiltonian, model, properties
    from uniham.cli._common import Parser

    p = Parser(prog="uniham", description="Universal DFT Hamiltonians: DFT data, formats, bands.")
    p.add_argument("--version", action="version", version=f"uniham {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress of the library")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (hamiltonian, properties, dft, dataset, model):
        group.add_parsers(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, Parser.error), --help or --version
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not sys.stderr.isatty():  # progress bars into a log file: a line every 30 s, not every 0.1 s
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    try:
        args.func(args)
    except UnihamError as exc:
        print(f"uniham: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("uniham: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `uniham dataset plan R | head`
        sys.stderr.close()
        return 0
    return 0

"""``uniham convert`` and ``uniham info``: read, summarise and convert Hamiltonian files."""
from __future__ import annotations

from pathlib import Path


def cmd_convert(args) -> None:
    from uniham.io import read_hamiltonian, write_hamiltonian

    ham = read_hamiltonian(args.src, args.src_format)
    fmt = args.to
    if fmt is None:
        fmt = "deeph-legacy" if "legacy" in Path(args.dst).name.lower() else "deeph-dock"
    write_hamiltonian(ham, args.dst, fmt)
    print(f"{ham.summary()}\nwritten as {fmt} to {args.dst}")


def cmd_info(args) -> None:
    from uniham.io import read_hamiltonian

    ham = read_hamiltonian(args.src, args.src_format)
    print(ham.summary())
    print("basis: " + ", ".join(f"{el} {b} ({b.dim} orbitals)" for el, b in ham.basis.items()))
    print(f"hermiticity error: H {ham.hermiticity_error('H'):.2e} eV, S {ham.hermiticity_error('S'):.2e}")


def add_parsers(sub) -> None:
    from uniham.io import READ_FORMATS, WRITE_FORMATS

    c = sub.add_parser("convert", help="convert a Hamiltonian between formats")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    c.add_argument("--to", choices=WRITE_FORMATS)
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("info", help="summary of a Hamiltonian file or folder")
    i.add_argument("src")
    i.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    i.set_defaults(func=cmd_info)

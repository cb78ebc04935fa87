"""``uniham convert`` and ``uniham info``: read, summarise and convert Hamiltonian files."""
from __future__ import annotations

from pathlib import Path

from uniham.cli._common import SPARSE_ABOVE


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
    origin = _origin(getattr(ham, "provenance", None) or {})
    if origin:
        print(f"made by: {origin}")
    print("basis: " + ", ".join(f"{el} {b} ({b.dim} orbitals)" for el, b in ham.basis.items()))
    print(f"hermiticity error: H {ham.hermiticity_error('H'):.2e} eV, S {ham.hermiticity_error('S'):.2e}")
    if args.gap and ham.atoms.pbc.any() and ham.norb <= SPARSE_ABOVE:
        from uniham.properties.bands import mesh_eigenvalues, resolve_fermi
        from uniham.properties.electrons import band_gap

        k, eigs = mesh_eigenvalues(ham, None)
        fermi, how = resolve_fermi(ham, eigs=eigs)
        gap = band_gap(eigs, fermi)
        what = f"band gap {gap['gap_eV']:.4f} eV" if gap["gap_eV"] > 0 else "metal (bands cross E_F)"
        print(f"{what} on {len(k)} k of the automatic mesh; E_F = {fermi:.4f} eV ({how})")


def _origin(prov: dict) -> str:
    """One line on where a Hamiltonian came from: the engine and its settings, or the model that predicted it."""
    if prov.get("engine") == "cp2k":
        st, scf = prov.get("settings", {}), prov.get("scf", {})
        what = prov.get("hamiltonian", "SCF")
        if st.get("zeroth_step"):
            conv = ", one step from the atomic guess"
        elif "converged" in scf:
            conv = f", converged in {scf['cycles']} cycles" if scf.get("converged") else ", NOT converged"
        else:
            conv = ""
        return (f"CP2K {prov.get('versions', {}).get('cp2k', '?')} {what}: {st.get('basis')}, {st.get('xc')}, "
                f"k-mesh {'x'.join(map(str, st.get('kmesh', [])))}, cutoff {st.get('ecut_Ry', '?')} Ry{conv}")
    if prov.get("engine") == "uniham-model":
        model = (prov.get("shipped_model") or {}).get("name") or prov.get("checkpoint", "?")
        guard = prov.get("overlap_guard") or {}
        g = f", overlap guard tau {guard['tau']}" if guard.get("applied") else ""
        kind = (prov.get("target") or {}).get("kind", "H")
        return f"uniham {prov.get('versions', {}).get('uniham', '?')} prediction, model {model} ({'H0 + ΔH' if kind == 'delta_h0' else 'direct H'}{g})"
    return prov.get("engine", "")


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
    i.add_argument("--gap", action="store_true", help="also E_F and the band gap on the automatic k-mesh (seconds)")
    i.set_defaults(func=cmd_info)

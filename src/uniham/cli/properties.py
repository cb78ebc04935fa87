"""``uniham bands``, ``dos``, ``optics``: the physics of any readable Hamiltonian."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uniham.cli._common import SPARSE_ABOVE, bounded, kmesh_arg
from uniham.errors import UnihamError


def _fermi_note(ham, fermi, how: str) -> str:
    """Why E_F differs from the one the DFT code printed (when it does by > 1 meV): a gapped system's E_F is
    put at its valence-band maximum (a metal keeps the DFT code's own, :func:`resolve_fermi`)."""
    own = ham.fermi_level
    if how != "electron counting" or fermi is None or own is None or not np.isfinite(own) or abs(own - fermi) < 1e-3:
        return ""
    return (f"; the file's {own:.4f} eV is the DFT code's own, inside the gap; uniham puts a gapped system's E_F at "
            "its valence-band maximum, a metal's at the DFT code's own")


def cmd_bands(args) -> None:
    from uniham.io import read_hamiltonian
    from uniham.properties.bands import bands_result, plot_bands, resolve_fermi
    from uniham.properties.kpath import (
        auto_labels,
        build_path,
        parse_kpath,
        read_kpoints_file,
    )

    ham = read_hamiltonian(args.src, args.src_format)
    if args.kpoints:
        kpts = read_kpoints_file(args.kpoints)
        labels: list = []
    else:
        segs = auto_labels(ham.atoms) if args.kpath == "auto" else parse_kpath(args.kpath)
        kpts, labels = build_path(ham.atoms, segs, args.npoints)
    sparse = args.sparse or ham.norb > SPARSE_ABOVE
    if sparse:
        from uniham.properties.eigensolvers import sparse_band_energies, window_gap

        fermi, how = (args.near, "--near") if args.near is not None else (ham.fermi_level, "file")
        if fermi is None and ham.n_electrons:
            from uniham.properties.kpm import kpm_fermi_level

            fermi, res = kpm_fermi_level(ham.Hk(np.zeros(3), sparse=True), ham.Sk(np.zeros(3), sparse=True),
                                         ham.n_electrons)
            how = f"KPM electron count at Gamma, resolution {res:.2f} eV"
        if fermi is None:
            raise UnihamError("the sparse eigensolver needs an energy: give --near E (eV); the file has no E_F")
        if not args.sparse:
            print(f"{ham.norb} orbitals > {SPARSE_ABOVE}: shift-invert Lanczos for the {args.nbands} bands nearest "
                  f"{fermi:.4f} eV (--nbands, --near)")
        eigs, infos = sparse_band_energies(ham, kpts, args.nbands, fermi, args.solver, args.procs)
        result = {"kpoints_frac": np.asarray(kpts).tolist(), "labels": labels, "energies_eV": eigs.tolist(),
                  "fermi_level_eV": fermi, "gap": window_gap(eigs, fermi), "sparse": True,
                  "solver": infos[0]["solver"], "seconds_per_k": float(np.mean(
                      [i["factorize_s"] + i["lanczos_s"] for i in infos]))}
    else:
        fermi, how = resolve_fermi(ham, kmesh_arg(args.fermi_kmesh), progress=True)
        result = bands_result(ham, kpts, labels, fermi, progress=True)
    result["fermi_level_source"] = how
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    if args.plot:
        plot_bands(result, kpts @ (2 * np.pi * ham.atoms.cell.reciprocal()), args.plot, ham.atoms.get_chemical_formula())
    gap = result.get("gap")
    print(ham.summary())
    molecule = not ham.atoms.pbc.any()
    ef_text = f"{fermi:.4f}" if fermi is not None else "unknown"
    how += _fermi_note(ham, fermi, how)
    print(f"a molecule: its levels at Gamma; E_F = {ef_text} eV ({how})" if molecule else
          f"{len(kpts)} k-points; E_F = {ef_text} eV ({how})")
    if gap and result.get("sparse"):
        if gap["gap_eV"] is not None:
            print(f"{args.nbands} bands nearest {fermi:.4f} eV ({result['solver']}, {result['seconds_per_k']:.2f} s/k): "
                  f"highest state below {gap['vbm_eV']:.4f}, lowest above {gap['cbm_eV']:.4f} eV "
                  f"(gap {gap['gap_eV']:.4f} eV along the path)")
    elif gap and molecule:
        print(f"HOMO-LUMO gap {gap['gap_eV']:.4f} eV" if gap["gap_eV"] > 0 else "degenerate levels at E_F (open shell)")
    elif gap:
        print(f"band gap {gap['gap_eV']:.4f} eV (direct {gap['direct_gap_eV']:.4f} eV)" if gap["gap_eV"] > 0 else "metal (bands cross E_F)")
    for what, path in (("JSON", args.json), ("plot", args.plot)):
        if path:
            print(f"{what}: {path}")


def cmd_dos(args) -> None:
    from uniham.io import read_hamiltonian
    from uniham.properties.bands import (
        gaussian_dos,
        mesh_eigenvalues,
        plot_dos,
        resolve_fermi,
    )

    if args.emin is not None and args.emax is not None and args.emin >= args.emax:
        raise UnihamError(f"--emin {args.emin} must lie below --emax {args.emax}")
    ham = read_hamiltonian(args.src, args.src_format)
    if args.kpm or ham.norb > SPARSE_ABOVE:
        _dos_kpm(ham, args)
        return
    k, eigs = mesh_eigenvalues(ham, kmesh_arg(args.kmesh), progress=True)
    w = np.ones(len(k))
    fermi, how = resolve_fermi(ham, eigs=eigs)
    lo = eigs.min() - 5 * args.broadening if args.emin is None else args.emin
    hi = eigs.max() + 5 * args.broadening if args.emax is None else args.emax
    energies = _energy_grid(lo, hi, args.step)
    dos = gaussian_dos(eigs, w, energies, args.broadening)
    if args.json:
        Path(args.json).write_text(json.dumps({"energies_eV": energies.tolist(), "dos_per_eV": dos.tolist(),
                                               "fermi_level_eV": fermi, "kmesh_size": len(k),
                                               "broadening_eV": args.broadening}))
    if args.plot:
        # the plot (not the JSON, which keeps the whole spectrum) stops 10 eV above E_F unless --emax says
        # otherwise: a localized basis has states far up (88 eV in Si's DZVP) that would squeeze the gap region
        top = hi if args.emax is not None or fermi is None else min(hi, fermi + 10.0)
        keep = energies <= top
        plot_dos(energies[keep], dos[keep], fermi, args.plot, ham.atoms.get_chemical_formula())
    print(ham.summary())
    ef = f"{fermi:.4f} eV ({how}{_fermi_note(ham, fermi, how)})" if fermi is not None else "unknown"
    print(f"DOS on {len(k)} k-points, Gaussian broadening {args.broadening} eV, {lo:.2f} to {hi:.2f} eV; E_F = {ef}")
    for what, path in (("JSON", args.json), ("plot", args.plot)):
        if path:
            print(f"{what}: {path}")


def _energy_grid(lo: float, hi: float, step: float) -> np.ndarray:
    """DOS energies lo, lo + step, ... below hi (eV); at most 10⁶ points."""
    if (hi - lo) / step > 1e6:
        raise UnihamError(f"{lo:.2f} to {hi:.2f} eV in steps of {step:g} eV is over 10^6 points: raise --step or "
                          "narrow --emin/--emax")
    return np.arange(lo, hi, step)


def _dos_kpm(ham, args) -> None:
    from uniham.properties.bands import plot_dos
    from uniham.properties.kpm import _s_solver, kpm_dos, spectral_bounds

    h, s = ham.Hk(np.zeros(3), sparse=True), ham.Sk(np.zeros(3), sparse=True)
    if not args.kpm:
        print(f"{ham.norb} orbitals > {SPARSE_ABOVE}: kernel polynomial method at Gamma "
              f"({args.moments} moments, {args.vectors} random vectors)")
    bounds = spectral_bounds(h.tocsr(), s.tocsr(), _s_solver(s.tocsr()))
    lo = bounds[0] if args.emin is None else args.emin
    hi = bounds[1] if args.emax is None else args.emax
    energies = _energy_grid(lo, hi, args.step)
    res = kpm_dos(h, s, energies, args.moments, args.vectors, bounds=bounds)
    fermi = ham.fermi_level
    if args.json:
        Path(args.json).write_text(json.dumps({"energies_eV": energies.tolist(), "dos_per_eV": res["dos_per_eV"].tolist(),
                                               "fermi_level_eV": fermi, "method": "kpm", "moments": args.moments,
                                               "vectors": args.vectors, "bounds_eV": res["bounds_eV"],
                                               "resolution_eV": res["resolution_eV"], "seconds": res["seconds"]}))
    if args.plot:
        plot_dos(energies, res["dos_per_eV"], fermi, args.plot, ham.atoms.get_chemical_formula())
    print(ham.summary())
    print(f"KPM DOS at Gamma: spectrum [{res['bounds_eV'][0]:.2f}, {res['bounds_eV'][1]:.2f}] eV, resolution "
          f"{res['resolution_eV']:.3f} eV (Jackson), {res['seconds']:.1f} s")
    for what, path in (("JSON", args.json), ("plot", args.plot)):
        if path:
            print(f"{what}: {path}")


def _omega_grid(text: str) -> np.ndarray:
    try:
        lo, hi, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise UnihamError(f"--omega {text!r}: expected MIN:MAX:STEP in eV") from None
    if not (0 <= lo < hi and step > 0) or (hi - lo) / step > 1e6:
        raise UnihamError(f"--omega {text!r}: need 0 <= MIN < MAX and 0 < STEP (at most 1e6 points)")
    return np.arange(lo, hi + 0.5 * step, step)


def cmd_optics(args) -> None:
    from uniham.io import read_hamiltonian
    from uniham.properties.kpath import auto_mesh
    from uniham.properties.optics import plot_eps, susceptibility

    ham = read_hamiltonian(args.src, args.src_format)
    comps = [c.strip() for c in args.components.split(",") if c.strip()]
    bad = [c for c in comps if len(c) != 2 or set(c) - set("xyz")]
    if bad:
        raise UnihamError(f"--components: {bad} are not tensor components like xx, xy, zz")
    mesh = kmesh_arg(args.kmesh) or auto_mesh(ham.atoms)
    res = susceptibility(ham, mesh, _omega_grid(args.omega), args.broadening, components=comps, kT=args.kT)
    print(ham.summary())
    gap = f", gap {res['gap_eV']:.3f} eV" if res.get("gap_eV") else ""
    print(f"chi(omega) on {res['n_k']} k ({'x'.join(map(str, mesh))}), sigma {args.broadening} eV{gap}; "
          f"eps_r = 1 + chi (SI), interband, independent particles")
    for c in comps:
        line = f"  {c}: eps(0) = {res['eps'][c][0].real:.4f}"
        fs = res.get("f_sum_rule", {}).get(c)
        if fs and fs["valid"]:
            line += (f"; f-sum rule {fs['all_transitions_eV']:.1f} vs {fs['expected_eV']:.1f} eV "
                     f"({100 * fs['relative_error']:.2f} %), {100 * fs['fraction_in_window']:.0f} % of it in the window")
        kk = res["kramers_kronig"].get(c)
        if kk:
            line += (f"; Kramers-Kronig residual {kk['relative_to_max_re']:.1e} of max |Re chi| on 0-{kk['window_eV'][1]:.1f} eV "
                     + ("(from the whole absorption spectrum)" if kk.get("tail") else "(window only: no tail above it)"))
        print(line)
    if args.json:
        out = {k: v for k, v in res.items() if k not in ("chi", "eps", "omega_eV")}
        out["omega_eV"] = res["omega_eV"].tolist()
        out["chi"] = {c: {"re": x.real.tolist(), "im": x.imag.tolist()} for c, x in res["chi"].items()}
        out["eps"] = {c: {"re": x.real.tolist(), "im": x.imag.tolist()} for c, x in res["eps"].items()}
        out["units"] = "chi dimensionless (SI), eps_r = 1 + chi; omega in eV (hbar*omega)"
        Path(args.json).write_text(json.dumps(out))
        print(f"JSON: {args.json}")
    if args.plot:
        plot_eps(res, args.plot, args.plot_max)
        print(f"plot: {args.plot}")


def add_parsers(sub) -> None:
    from uniham.io import READ_FORMATS

    b = sub.add_parser("bands", help="band structure of any readable Hamiltonian")
    b.add_argument("src")
    b.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    b.add_argument("--kpath", default="auto", help='"auto" (seekpath) or labels, e.g. "G X W L G"')
    b.add_argument("--kpoints", help="file with one fractional k-point per line (input cell's reciprocal basis)")
    b.add_argument("--npoints", type=bounded(int, 2), default=120, help="k-points along the path")
    b.add_argument("--fermi-kmesh", default="auto", help="mesh for E_F by electron counting (auto or N1,N2,N3)")
    b.add_argument("--sparse", action="store_true",
                   help=f"shift-invert Lanczos for --nbands bands near --near (automatic above {SPARSE_ABOVE} orbitals)")
    b.add_argument("--nbands", type=bounded(int, 1), default=20, help="bands near --near with --sparse")
    b.add_argument("--near", type=float, help="energy (eV) the sparse bands are nearest to (default: E_F of the file)")
    b.add_argument("--solver", default="auto", choices=["auto", "pardiso", "superlu"])
    b.add_argument("--procs", type=bounded(int, 1), default=1, help="k-points in parallel processes (sparse)")
    b.add_argument("--json")
    b.add_argument("--plot")
    b.set_defaults(func=cmd_bands)

    d = sub.add_parser("dos", help="density of states on a k-mesh")
    d.add_argument("src")
    d.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    d.add_argument("--kmesh", default="auto")
    d.add_argument("--broadening", type=bounded(float, 0, strict=True), default=0.1, help="Gaussian sigma, eV")
    d.add_argument("--step", type=bounded(float, 1e-6), default=0.01, help="energy step, eV")
    d.add_argument("--emin", type=float)
    d.add_argument("--emax", type=float)
    d.add_argument("--kpm", action="store_true",
                   help=f"kernel polynomial method at Gamma (large cells; automatic above {SPARSE_ABOVE} orbitals)")
    d.add_argument("--moments", type=bounded(int, 2), default=1024, help="KPM Chebyshev moments (resolution ~ pi*width/M)")
    d.add_argument("--vectors", type=bounded(int, 1), default=16, help="KPM random vectors")
    d.add_argument("--json")
    d.add_argument("--plot")
    d.set_defaults(func=cmd_dos)

    o = sub.add_parser("optics", help="electric susceptibility chi(omega) and eps(omega) (Kubo-Greenwood, interband)")
    o.add_argument("src")
    o.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    o.add_argument("--kmesh", default="auto", help="Gamma-centred mesh N1,N2,N3 (auto: 0.15 1/A spacing)")
    o.add_argument("--omega", default="0:20:0.01", help="photon energies MIN:MAX:STEP, eV")
    o.add_argument("--broadening", type=bounded(float, 0, strict=True), default=0.1, help="Gaussian sigma, eV")
    o.add_argument("--kT", type=bounded(float, 0), default=0.01, help="Fermi-Dirac occupations for metals, eV")
    o.add_argument("--components", default="xx,yy,zz", help="tensor components, e.g. xx,yy,zz,xy")
    o.add_argument("--json")
    o.add_argument("--plot")
    o.add_argument("--plot-max", type=bounded(float, 0, strict=True), default=10.0, help="upper photon energy of the plot, eV")
    o.set_defaults(func=cmd_optics)

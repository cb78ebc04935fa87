"""``uniham dft``: one Kohn-Sham DFT run (CP2K or PySCF) to H(R), S(R)."""
from __future__ import annotations

from uniham.cli._common import bounded, kmesh_arg
from uniham.errors import UnihamError


def cmd_dft(args) -> None:
    from uniham.io import write_hamiltonian
    from uniham.structure import read_structure
    from uniham.units import RYDBERG_EV

    _check_options(args)
    atoms = read_structure(args.structure)
    if args.engine == "cp2k":
        from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

        settings = Cp2kSettings(kmesh=kmesh_arg(args.kmesh), cutoff=args.cutoff, threads=args.threads,
                                executable=args.cp2k, workdir=args.keep_files, zeroth_step=args.zeroth_step,
                                ecut=args.ke_cutoff / RYDBERG_EV if args.ke_cutoff else None)
        if args.basis:
            settings.basis = args.basis
        if args.xc:
            settings.xc = args.xc
        if args.smearing is not None:
            settings.smearing = args.smearing
        check = "check_vs_cp2k_bands"
    else:
        from uniham.dft.pyscf_engine import DFTSettings, run_dft

        settings = DFTSettings(kmesh=kmesh_arg(args.kmesh), cutoff=args.cutoff, interp_mesh=kmesh_arg(args.interp_kmesh),
                               ke_cutoff=args.ke_cutoff, density_fit=args.df, basis=args.basis or "gth-szv",
                               xc=args.xc or "pbe", smearing=args.smearing or 0.0, zeroth_step=args.zeroth_step)
        check = "truncation"
    ham = run_dft(atoms, settings, progress=True)
    write_hamiltonian(ham, args.output, "deeph-dock")
    p = ham.provenance
    print(ham.summary())
    label = "vs CP2K's own bands" if args.engine == "cp2k" else "truncation error"
    if args.zeroth_step:
        print(f"zeroth-step H0 (superposed atomic densities, no SCF; k-mesh {p['settings']['kmesh']}); "
              f"wall {p['timing']['total_s']:.1f} s")
        print(f"written to {args.output}")
        return
    print(f"SCF converged in {p['scf']['cycles']} cycles, E_tot = {p['scf']['energy_eV']:.6f} eV; "
          f"{label} (E <= E_F + 5 eV, off-mesh k) = {p[check]['max_band_error_meV']:.4f} meV; "
          f"wall {p['timing']['total_s']:.1f} s")
    print(f"written to {args.output}")


def _check_options(args) -> None:
    """Numeric options in range before any DFT runs (one line each)."""
    if args.smearing is not None and (args.smearing < 0 or (args.engine == "cp2k" and args.smearing == 0)):
        raise UnihamError(f"--smearing {args.smearing}: the Fermi-Dirac kT must be {'> 0' if args.engine == 'cp2k' else '>= 0'} eV")
    for name in ("cutoff", "ke_cutoff"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise UnihamError(f"--{name.replace('_', '-')} {v}: must be positive")
    if args.threads < 1:
        raise UnihamError(f"--threads {args.threads}: must be at least 1")


def add_parsers(sub) -> None:
    f = sub.add_parser("dft", help="Kohn-Sham DFT (CP2K or PySCF) -> H(R), S(R) as a DeepH-dock folder")
    f.add_argument("structure")
    f.add_argument("-o", "--output", required=True)
    f.add_argument("--engine", choices=["cp2k", "pyscf"], default="cp2k",
                   help="cp2k (default; fast, writes H(R) itself) or pyscf (pip-only, embedded)")
    f.add_argument("--basis", help="cp2k: DZVP-MOLOPT-SR-GTH (default), SZV-MOLOPT-SR-GTH, ...; "
                                   "pyscf: gth-szv (default), gth-dzvp, gth-dzvp-molopt-sr, ...")
    f.add_argument("--xc", help="exchange-correlation functional (default PBE)")
    f.add_argument("--kmesh", default="auto", help="SCF k-mesh: auto or N1,N2,N3 (CP2K: use odd meshes)")
    f.add_argument("--cutoff", type=float, default=None, help="keep blocks with atom distance <= cutoff (A)")
    f.add_argument("--smearing", type=float, default=None,
                   help="Fermi-Dirac kT, eV (cp2k default 0.05, always on; pyscf default 0 = none)")
    f.add_argument("--ke-cutoff", type=float, default=None,
                   help="plane-wave cutoff of the density grid, eV (cp2k default: per-element rule)")
    f.add_argument("--threads", type=bounded(int, 1), default=1, help="cp2k: OpenMP threads (1 job per core is fastest)")
    f.add_argument("--cp2k", help="cp2k: path of the CP2K executable (default: $UNIHAM_CP2K or PATH)")
    f.add_argument("--keep-files", metavar="DIR", help="cp2k: keep CP2K's input, output and matrices in DIR")
    f.add_argument("--zeroth-step", action="store_true",
                   help="no SCF: H0 = Kohn-Sham matrix of the superposed atomic densities (cp2k: same basis and "
                        "cutoff, k-mesh 1x1x1 unless --kmesh N1,N2,N3, which does not change H0; pyscf: its atom guess)")
    f.add_argument("--interp-kmesh", default="auto", help="pyscf: k-mesh whose H(k) is Fourier transformed to H(R)")
    f.add_argument("--df", default="fft", choices=["fft", "multigrid"], help="pyscf: density fitting")
    f.set_defaults(func=cmd_dft)

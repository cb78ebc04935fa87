"""The ``uniham`` command: thin wrappers over the library. Errors are one line and exit status 2."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from uniham.errors import UnihamError

SPARSE_ABOVE = 4000  # orbitals: above this `uniham bands` switches to the sparse eigensolver
LARGE_ABOVE = 500  # atoms: above this `uniham predict` runs chunked and writes prediction.h5


def _kmesh(text: str):
    if text == "auto":
        return None
    try:
        vals = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise UnihamError(f"k-mesh {text!r}: expected 'auto' or N1,N2,N3") from None
    if len(vals) != 3 or min(vals) < 1:
        raise UnihamError(f"k-mesh {text!r}: expected three positive integers")
    return vals


# ------------------------------------------------------------------------------------ convert
def cmd_convert(args) -> None:
    from uniham.io import read_hamiltonian, write_hamiltonian

    ham = read_hamiltonian(args.src, args.src_format)
    fmt = args.to
    if fmt is None:
        fmt = "deeph-legacy" if "legacy" in Path(args.dst).name.lower() else "deeph-dock"
    write_hamiltonian(ham, args.dst, fmt)
    print(f"{ham.summary()}\nwritten as {fmt} to {args.dst}")


# ------------------------------------------------------------------------------------ bands
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
        fermi, how = resolve_fermi(ham, _kmesh(args.fermi_kmesh), progress=True)
        result = bands_result(ham, kpts, labels, fermi, progress=True)
    result["fermi_level_source"] = how
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    if args.plot:
        plot_bands(result, kpts @ (2 * np.pi * ham.atoms.cell.reciprocal()), args.plot, ham.atoms.get_chemical_formula())
    gap = result.get("gap")
    print(ham.summary())
    print(f"{len(kpts)} k-points; E_F = {fermi if fermi is not None else 'unknown'} eV ({how})")
    if gap and result.get("sparse"):
        if gap["gap_eV"] is not None:
            print(f"{args.nbands} bands nearest {fermi:.4f} eV ({result['solver']}, {result['seconds_per_k']:.2f} s/k): "
                  f"highest state below {gap['vbm_eV']:.4f}, lowest above {gap['cbm_eV']:.4f} eV "
                  f"(gap {gap['gap_eV']:.4f} eV along the path)")
    elif gap:
        print(f"band gap {gap['gap_eV']:.4f} eV (direct {gap['direct_gap_eV']:.4f} eV)" if gap["gap_eV"] > 0 else "metal (bands cross E_F)")
    for what, path in (("JSON", args.json), ("plot", args.plot)):
        if path:
            print(f"{what}: {path}")


# ------------------------------------------------------------------------------------ dos
def cmd_dos(args) -> None:
    from uniham.io import read_hamiltonian
    from uniham.properties.bands import (
        gaussian_dos,
        mesh_eigenvalues,
        plot_dos,
        resolve_fermi,
    )

    ham = read_hamiltonian(args.src, args.src_format)
    if args.kpm or ham.norb > SPARSE_ABOVE:
        _dos_kpm(ham, args)
        return
    k, eigs = mesh_eigenvalues(ham, _kmesh(args.kmesh), progress=True)
    w = np.ones(len(k))
    fermi, _ = resolve_fermi(ham, eigs=eigs)
    lo = eigs.min() - 5 * args.broadening if args.emin is None else args.emin
    hi = eigs.max() + 5 * args.broadening if args.emax is None else args.emax
    energies = np.arange(lo, hi, args.step)
    dos = gaussian_dos(eigs, w, energies, args.broadening)
    if args.json:
        Path(args.json).write_text(json.dumps({"energies_eV": energies.tolist(), "dos_per_eV": dos.tolist(),
                                               "fermi_level_eV": fermi, "kmesh_size": len(k),
                                               "broadening_eV": args.broadening}))
    if args.plot:
        plot_dos(energies, dos, fermi, args.plot, ham.atoms.get_chemical_formula())
    print(ham.summary())
    print(f"DOS on {len(k)} k-points, Gaussian broadening {args.broadening} eV; E_F = {fermi} eV")
    for what, path in (("JSON", args.json), ("plot", args.plot)):
        if path:
            print(f"{what}: {path}")


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
    energies = np.arange(lo, hi, args.step)
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


# ------------------------------------------------------------------------------------ optics
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
    mesh = _kmesh(args.kmesh) or auto_mesh(ham.atoms)
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
            line += f"; Kramers-Kronig residual {100 * kk['relative_to_max_re']:.2f} % (window {kk['window_eV'][1]:.1f} eV)"
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


# ------------------------------------------------------------------------------------ dft
def cmd_dft(args) -> None:
    from uniham.io import write_hamiltonian
    from uniham.structure import read_structure
    from uniham.units import RYDBERG_EV

    atoms = read_structure(args.structure)
    if args.engine == "cp2k":
        from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

        settings = Cp2kSettings(kmesh=_kmesh(args.kmesh), cutoff=args.cutoff, threads=args.threads,
                                executable=args.cp2k, workdir=args.keep_files,
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

        settings = DFTSettings(kmesh=_kmesh(args.kmesh), cutoff=args.cutoff, interp_mesh=_kmesh(args.interp_kmesh),
                               ke_cutoff=args.ke_cutoff, density_fit=args.df, basis=args.basis or "gth-szv",
                               xc=args.xc or "pbe", smearing=args.smearing or 0.0)
        check = "truncation"
    ham = run_dft(atoms, settings, progress=True)
    write_hamiltonian(ham, args.output, "deeph-dock")
    p = ham.provenance
    print(ham.summary())
    label = "vs CP2K's own bands" if args.engine == "cp2k" else "truncation error"
    print(f"SCF converged in {p['scf']['cycles']} cycles, E_tot = {p['scf']['energy_eV']:.6f} eV; "
          f"{label} (E <= E_F + 5 eV, off-mesh k) = {p[check]['max_band_error_meV']:.4f} meV; "
          f"wall {p['timing']['total_s']:.1f} s")
    print(f"written to {args.output}")


# ------------------------------------------------------------------------------------ dataset
def cmd_dataset_plan(args) -> None:
    from uniham.data.recipe import load_recipe, plan, plan_json, plan_summary

    recipe = load_recipe(args.recipe)
    entries, skipped = plan(recipe)
    summ = plan_summary(entries, skipped)
    if args.output:
        Path(args.output).write_text(plan_json(recipe, entries, skipped))
    print(f"recipe {recipe.name} (hash {recipe.hash}): {summ['n_structures']} structures, {summ['n_skipped']} skipped")
    print("per source: " + ", ".join(f"{k} {v}" for k, v in summ["per_source"].items()))
    print(f"per element ({len(summ['per_element'])}): " + ", ".join(f"{k} {v}" for k, v in summ["per_element"].items()))
    if summ["per_prototype"]:
        print(f"per prototype ({len(summ['per_prototype'])}): "
              + ", ".join(f"{k} {v}" for k, v in sorted(summ["per_prototype"].items())))
    if summ["skip_reasons"]:
        print("skipped: " + "; ".join(f"{k} ({v})" for k, v in summ["skip_reasons"].items()))
    if args.output:
        print(f"plan written to {args.output}")


def cmd_dataset_build(args) -> None:
    from uniham.data.build import build, parse_part

    if args.hours is not None and not args.hours > 0:
        raise UnihamError(f"--hours must be positive (got {args.hours})")
    summary = build(args.recipe, args.out, workers=args.workers, scheduler=args.scheduler,
                    retry_failed=args.retry_failed, limit=args.limit, plan_file=args.plan, part=parse_part(args.part),
                    skip_from=args.skip_from or (), hours=args.hours)
    print(json.dumps(summary))


def cmd_dataset_merge(args) -> None:
    from uniham.data.store import DatasetStore

    store = DatasetStore(args.dir)
    for other in args.others:
        n = store.merge(DatasetStore(other))
        print(f"{args.dir}: {n['structures']} structures and {n['failures']} failures taken from {other} "
              f"({n['already_here']} already here)")
    info = store.info()
    print(f"{args.dir}: {info['n_structures']} structures, {info['n_failed']} failed, {info['n_elements']} elements")


def cmd_dataset_info(args) -> None:
    from uniham.data.store import DatasetStore

    store = DatasetStore(args.dir)
    info = store.info()
    if args.verify:
        info["checksum_mismatches"] = store.verify()
    if args.plot:
        from uniham.data.plots import plot_coverage

        plot_coverage(info["elements"], args.plot,
                      f"{info['path']}: {info['n_structures']} structures, {info['n_elements']} elements")
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(f"{info['path']}: recipe {info['recipe']} ({info['recipe_hash']}), {info['n_structures']} structures "
          f"({info['n_staged']} staged), {info['n_failed']} failed, {info['n_elements']} elements, "
          f"{info['n_shards']} shards, {info['bytes'] / 2**20:.1f} MiB ({info['bytes_per_structure'] / 1024:.1f} KiB/structure)")
    print("sources: " + ", ".join(f"{k} {v}" for k, v in info["sources"].items()))
    if info["n_structures"]:
        core_h = info["dft_wall_s_total"] / 3600
        print(f"DFT time: {core_h:.1f} core-hours, median {info['dft_wall_s_median']:.0f} s per structure "
              f"({info['n_structures'] / core_h:.0f} structures per core-hour)")
    print("elements: " + ", ".join(f"{k} {v}" for k, v in info["elements"].items()))
    for reason, n in info["failure_reasons"].items():
        print(f"failed ({n}): {reason}")
    if args.verify:
        print("checksums: " + ("all shards match" if not info["checksum_mismatches"]
                               else "MISMATCH " + ", ".join(info["checksum_mismatches"])))
    if args.plot:
        print(f"coverage plot written to {args.plot}")


def cmd_dataset_export(args) -> None:
    from uniham.data.store import DatasetStore
    from uniham.io import write_hamiltonian

    ham = DatasetStore(args.dir).load(args.id)
    write_hamiltonian(ham, args.output, "deeph-dock")
    print(ham.summary())
    print(f"written to {args.output}")


def cmd_dataset_remove(args) -> None:
    from uniham.data.store import DatasetStore, wrong_image_ids

    store = DatasetStore(args.dir)
    ids = list(args.ids)
    if args.wrong_images:
        ids += wrong_image_ids(store)
    unknown = set(args.ids) - set(store.ids())
    if unknown:
        raise UnihamError(f"{args.dir}: no structures {sorted(unknown)}")
    n = store.remove(ids, args.reason)
    print(f"{args.dir}: removed {n} structures ({args.reason}); `uniham dataset build` redoes them")


def cmd_dataset_split(args) -> None:
    from uniham.data.build import split_ids
    from uniham.data.store import DatasetStore

    recs = DatasetStore(args.dir).manifest["structures"]
    groups = None
    if args.by == "prototype":
        groups = {k: r["label"] for k, r in recs.items()}
    elif args.by == "composition":
        groups = {k: r["formula"] for k, r in recs.items()}
    fr = tuple(float(x) for x in args.fractions.split(","))
    splits = split_ids(sorted(recs), fr, args.seed, groups, set(args.holdout or []))
    Path(args.output).write_text(json.dumps(splits, indent=1))
    print(", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f"; written to {args.output}")


# ------------------------------------------------------------------------------------ network
def cmd_train(args) -> None:
    from uniham.model.train import train

    res = train(args.config, resume=args.resume, prepare_only=args.prepare)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        print(json.dumps(res))


def _torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def cmd_predict(args) -> None:
    _torch_threads(args.threads)
    from uniham.io import write_hamiltonian
    from uniham.model.predict import predict
    from uniham.structure import read_structure

    atoms = read_structure(args.structure)
    if args.large or len(atoms) > LARGE_ABOVE:
        from uniham.model.inference import predict_large

        out = Path(args.output) / "prediction.h5"
        res = predict_large(atoms, args.model, out, max_edges=args.max_edges, overlap=not args.no_overlap)
        t = res["timing"]
        print(f"{res['atoms']} atoms, {res['edges']} edges in {res['chunks']} chunks: graph {t['graph_s']:.1f} s, "
              f"network {t['network_s']:.1f} s, overlaps {t['overlap_s']:.1f} s, total {t['total_s']:.1f} s; "
              f"peak memory {res['peak_rss_mb']:.0f} MB")
        print(f"written to {out} ({res['file_mb']:.1f} MB, sparse; uniham bands/dos read it)")
        return
    ham = predict(atoms, args.model)
    write_hamiltonian(ham, args.output, "deeph-dock")
    p = ham.provenance
    print(ham.summary())
    if p["untrained_elements"]:
        print(f"warning: the model saw no {', '.join(p['untrained_elements'])} in training")
    print(f"network {p['timing']['network_s']:.2f} s, total {p['timing']['total_s']:.2f} s; written to {args.output}")


def cmd_evaluate(args) -> None:
    _torch_threads(args.threads)
    from uniham.model.evaluate import evaluate

    res = evaluate(args.model, args.data, n_bands=args.bands, plots=args.plots, split=args.split)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(f"H MAE {res['mae_meV']:.3f} meV over {res['n_structures']} structures")
    print("per element (meV): " + ", ".join(f"{k} {v:.2f}" for k, v in res["mae_per_element_meV"].items()))
    print("per orbital pair (meV): " + ", ".join(f"{k} {v:.2f}" for k, v in res["mae_per_orbital_pair_meV"].items()))
    for b in res.get("bands", []):
        print(f"bands {b['id']}: E_F +- 3 eV, max error {b['aligned_meV']:.2f} meV aligned, "
              f"{b['absolute_meV']:.2f} meV absolute")
    if args.json:
        print(f"JSON: {args.json}")


# ------------------------------------------------------------------------------------ info
def cmd_info(args) -> None:
    from uniham.io import read_hamiltonian

    ham = read_hamiltonian(args.src, args.src_format)
    print(ham.summary())
    print("basis: " + ", ".join(f"{el} {b} ({b.dim} orbitals)" for el, b in ham.basis.items()))
    print(f"hermiticity error: H {ham.hermiticity_error('H'):.2e} eV, S {ham.hermiticity_error('S'):.2e}")


def build_parser() -> argparse.ArgumentParser:
    from uniham import __version__
    from uniham.io import READ_FORMATS, WRITE_FORMATS

    p = argparse.ArgumentParser(prog="uniham", description="Universal DFT Hamiltonians: DFT data, formats, bands.")
    p.add_argument("--version", action="version", version=f"uniham {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress of the library")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a Hamiltonian between formats")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    c.add_argument("--to", choices=WRITE_FORMATS)
    c.set_defaults(func=cmd_convert)

    b = sub.add_parser("bands", help="band structure of any readable Hamiltonian")
    b.add_argument("src")
    b.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    b.add_argument("--kpath", default="auto", help='"auto" (seekpath) or labels, e.g. "G X W L G"')
    b.add_argument("--kpoints", help="file with one fractional k-point per line (input cell's reciprocal basis)")
    b.add_argument("--npoints", type=int, default=120)
    b.add_argument("--fermi-kmesh", default="auto", help="mesh for E_F by electron counting (auto or N1,N2,N3)")
    b.add_argument("--sparse", action="store_true",
                   help=f"shift-invert Lanczos for --nbands bands near --near (automatic above {SPARSE_ABOVE} orbitals)")
    b.add_argument("--nbands", type=int, default=20, help="bands near --near with --sparse")
    b.add_argument("--near", type=float, help="energy (eV) the sparse bands are nearest to (default: E_F of the file)")
    b.add_argument("--solver", default="auto", choices=["auto", "pardiso", "superlu"])
    b.add_argument("--procs", type=int, default=1, help="k-points in parallel processes (sparse)")
    b.add_argument("--json")
    b.add_argument("--plot")
    b.set_defaults(func=cmd_bands)

    d = sub.add_parser("dos", help="density of states on a k-mesh")
    d.add_argument("src")
    d.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    d.add_argument("--kmesh", default="auto")
    d.add_argument("--broadening", type=float, default=0.1, help="Gaussian sigma, eV")
    d.add_argument("--step", type=float, default=0.01, help="energy step, eV")
    d.add_argument("--emin", type=float)
    d.add_argument("--emax", type=float)
    d.add_argument("--kpm", action="store_true",
                   help=f"kernel polynomial method at Gamma (large cells; automatic above {SPARSE_ABOVE} orbitals)")
    d.add_argument("--moments", type=int, default=1024, help="KPM Chebyshev moments (resolution ~ pi*width/M)")
    d.add_argument("--vectors", type=int, default=16, help="KPM random vectors")
    d.add_argument("--json")
    d.add_argument("--plot")
    d.set_defaults(func=cmd_dos)

    o = sub.add_parser("optics", help="electric susceptibility chi(omega) and eps(omega) (Kubo-Greenwood, interband)")
    o.add_argument("src")
    o.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    o.add_argument("--kmesh", default="auto", help="Gamma-centred mesh N1,N2,N3 (auto: 0.15 1/A spacing)")
    o.add_argument("--omega", default="0:20:0.01", help="photon energies MIN:MAX:STEP, eV")
    o.add_argument("--broadening", type=float, default=0.1, help="Gaussian sigma, eV")
    o.add_argument("--kT", type=float, default=0.01, help="Fermi-Dirac occupations for metals, eV")
    o.add_argument("--components", default="xx,yy,zz", help="tensor components, e.g. xx,yy,zz,xy")
    o.add_argument("--json")
    o.add_argument("--plot")
    o.add_argument("--plot-max", type=float, default=10.0, help="upper photon energy of the plot, eV")
    o.set_defaults(func=cmd_optics)

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
    f.add_argument("--threads", type=int, default=1, help="cp2k: OpenMP threads (1 job per core is fastest)")
    f.add_argument("--cp2k", help="cp2k: path of the CP2K executable (default: $UNIHAM_CP2K or PATH)")
    f.add_argument("--keep-files", metavar="DIR", help="cp2k: keep CP2K's input, output and matrices in DIR")
    f.add_argument("--interp-kmesh", default="auto", help="pyscf: k-mesh whose H(k) is Fourier transformed to H(R)")
    f.add_argument("--df", default="fft", choices=["fft", "multigrid"], help="pyscf: density fitting")
    f.set_defaults(func=cmd_dft)

    ds = sub.add_parser("dataset", help="build and inspect DFT databases (recipes, Dask, shards)")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)
    x = dsub.add_parser("plan", help="list the structures of a recipe (no DFT)")
    x.add_argument("recipe")
    x.add_argument("-o", "--output", help="write every structure with its source as JSON")
    x.set_defaults(func=cmd_dataset_plan)
    x = dsub.add_parser("build", help="run (or resume) the DFT of a recipe on Dask")
    x.add_argument("recipe")
    x.add_argument("--out", required=True)
    x.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1),
                   help="local single-threaded workers (default: one per core)")
    x.add_argument("--scheduler", help="address of a running Dask scheduler (e.g. from dask-jobqueue)")
    x.add_argument("--retry-failed", action="store_true", help="run recorded failures again")
    x.add_argument("--limit", type=int, help="submit at most this many new structures")
    x.add_argument("--plan", help="structures from `uniham dataset plan RECIPE -o FILE` (no planning here)")
    x.add_argument("--part", help="I/N: only every N-th planned structure, starting at the I-th "
                                  "(N machines, N folders, then `uniham dataset merge`)")
    x.add_argument("--skip-from", nargs="+", metavar="DIR",
                   help="dataset folders of the same recipe whose structures are not redone here")
    x.add_argument("--hours", type=float, help="wall-clock budget: start no new structure after it, let the "
                                               "running ones finish, pack and exit (e.g. a batch job's limit)")
    x.set_defaults(func=cmd_dataset_build)
    x = dsub.add_parser("merge", help="take the structures of other folders built from the same recipe")
    x.add_argument("dir", help="dataset folder to merge into (created if missing)")
    x.add_argument("others", nargs="+", help="dataset folders built from the same recipe (e.g. with --part)")
    x.set_defaults(func=cmd_dataset_merge)
    x = dsub.add_parser("info", help="counts per element and source, sizes, failures")
    x.add_argument("dir")
    x.add_argument("--json", action="store_true")
    x.add_argument("--verify", action="store_true", help="check shard checksums")
    x.add_argument("--plot", metavar="FILE", help="periodic table of structures per element (PNG, PDF, SVG)")
    x.set_defaults(func=cmd_dataset_info)
    x = dsub.add_parser("export", help="one structure as a DeepH-dock folder (S recomputed by PySCF)")
    x.add_argument("dir")
    x.add_argument("id")
    x.add_argument("-o", "--output", required=True)
    x.set_defaults(func=cmd_dataset_export)
    x = dsub.add_parser("remove", help="drop finished structures so that the next build redoes them")
    x.add_argument("dir")
    x.add_argument("ids", nargs="*")
    x.add_argument("--wrong-images", action="store_true",
                   help="every CP2K structure stored with uniham < 0.1.1's image labels that were wrong for it")
    x.add_argument("--reason", required=True)
    x.set_defaults(func=cmd_dataset_remove)
    x = dsub.add_parser("split", help="deterministic train/validation/test split")
    x.add_argument("dir")
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--by", choices=["structure", "prototype", "composition"], default="structure")
    x.add_argument("--holdout", nargs="*", help="groups (prototype labels or formulas) kept for test only")
    x.add_argument("--fractions", default="0.8,0.1,0.1")
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=cmd_dataset_split)

    x = sub.add_parser("train", help="train the Hamiltonian network from a TOML config")
    x.add_argument("config")
    x.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    x.add_argument("--prepare", action="store_true",
                   help="only build OUT/samples.pt (graphs, targets; needs PySCF) and exit, e.g. before a GPU job")
    x.set_defaults(func=cmd_train)
    x = sub.add_parser("predict", help="predict H(R) of a structure; S(R) from basis integrals")
    x.add_argument("structure")
    x.add_argument("--model", required=True, help="checkpoint (.pt)")
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: busy-waiting OpenMP threads are 100x slower on a shared CPU)")
    x.add_argument("--large", action="store_true",
                   help=f"chunked, bounded-memory prediction into OUTPUT/prediction.h5 (automatic above {LARGE_ABOVE} atoms)")
    x.add_argument("--max-edges", type=int, default=20000, help="edges per chunk with --large (memory bound)")
    x.add_argument("--no-overlap", action="store_true", help="with --large: skip S(R) (H only)")
    x.set_defaults(func=cmd_predict)
    x = sub.add_parser("evaluate", help="H MAE and band errors of a model on a data set")
    x.add_argument("--model", required=True)
    x.add_argument("--data", required=True, nargs="+", help="dataset folder(s) or DeepH-dock folder(s)")
    x.add_argument("--json")
    x.add_argument("--plots", help="folder for band-structure comparison plots")
    x.add_argument("--bands", type=int, default=3, help="structures whose bands are compared")
    x.add_argument("--split", choices=["train", "validation", "test"], help="only this split of the training run")
    x.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    x.set_defaults(func=cmd_evaluate)

    i = sub.add_parser("info", help="summary of a Hamiltonian file or folder")
    i.add_argument("src")
    i.add_argument("--from", dest="src_format", choices=READ_FORMATS)
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())

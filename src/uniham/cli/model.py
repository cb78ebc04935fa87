"""``uniham train``, ``predict``, ``evaluate``: the network."""
from __future__ import annotations

import json
import os
from pathlib import Path

from uniham.cli._common import LARGE_ABOVE, bounded
from uniham.conditioning import GUARD_TAU


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
    from uniham.pretrained import notice

    ham = predict(atoms, args.model, s_guard=args.s_guard)
    write_hamiltonian(ham, args.output, "deeph-dock")
    p = ham.provenance
    for line in [notice(p["shipped_model"]), *(f"warning: {w}" for w in p["warnings"])]:
        if line:
            print(line)
    print(ham.summary())
    if p["magnetic_elements"]:
        print(f"warning: {', '.join(p['magnetic_elements'])} are usually magnetic; the model's training data are "
              "spin-restricted, so this Hamiltonian is the non-magnetic one")
    if p["beyond_cutoff"]:
        mc = p["model_config"]
        reach = (f"to {mc.get('cutoff')} A" if not mc.get("range_eps") else
                 f"to each pair's basis range at overlap {mc['range_eps']:g} (at least {mc.get('cutoff')} A)")
        print("warning: H of " + ", ".join(f"{x} reaches {r} A" for x, r in p["beyond_cutoff"].items())
              + f", the model predicts {reach}: expect band errors of tens of meV or more")
    g = p.get("overlap_guard") or {}
    if g.get("skipped"):
        print(f"warning: overlap guard not applied ({g['skipped']}): bands may suffer where S(k) is nearly singular")
    t = p["timing"]
    print(("H0 (CP2K) {:.2f} s, ".format(t["h0_s"]) if "h0_s" in t else "")
          + (f"overlap guard (tau {g['tau']:g}, mesh {'x'.join(map(str, g['mesh']))}) {t['guard_s']:.2f} s, " if g.get("applied") else "")
          + f"network {t['network_s']:.2f} s, total {t['total_s']:.2f} s; written to {args.output}")
    if args.bands:
        _predicted_bands(ham, args)


def _predicted_bands(ham, args) -> None:
    """Bands of a prediction along a path (same JSON schema as ``uniham bands``), E_F by electron counting."""
    import numpy as np

    from uniham.properties.bands import bands_result, plot_bands
    from uniham.properties.kpath import auto_labels, build_path, parse_kpath

    segs = auto_labels(ham.atoms) if args.kpath == "auto" else parse_kpath(args.kpath)
    kpts, labels = build_path(ham.atoms, segs, args.npoints)
    result = bands_result(ham, kpts, labels, ham.fermi_level) | {"fermi_level_source": "electron counting"}
    out = Path(args.output)
    (out / "bands.json").write_text(json.dumps(result))
    png = Path(args.plot) if args.plot else out / "bands.png"
    plot_bands(result, kpts @ (2 * np.pi * ham.atoms.cell.reciprocal()), png, ham.atoms.get_chemical_formula())
    gap = result.get("gap")
    if gap:
        print(f"band gap {gap['gap_eV']:.4f} eV (direct {gap['direct_gap_eV']:.4f} eV)" if gap["gap_eV"] > 0
              else "metal (bands cross E_F)")
    print(f"bands: {out / 'bands.json'}, plot: {png}")


def cmd_models(args) -> None:
    """The shipped models: name, status, one-line summary, model card."""
    from uniham.pretrained import HERE, index

    idx = index()
    if not idx["models"]:
        print("no model ships with this uniham")
    for name, e in idx["models"].items():
        mark = " (default)" if name == idx.get("default") else ""
        print(f"{name}{mark}: {e['status']}; {e.get('summary', '')}; card {HERE / e.get('card', '')}")


def cmd_evaluate(args) -> None:
    _torch_threads(args.threads)
    from uniham.model.evaluate import evaluate

    res = evaluate(args.model, args.data, n_bands=args.bands, plots=args.plots, split=args.split,
                   max_band_structures=args.band_structures, report=args.report)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    extra = ""
    if res.get("n_not_in_training_data"):
        extra = f" ({res['n_not_in_training_data']} not in the training run's data at all)"
    print(f"H MAE {res['mae_meV']:.3f} meV over {res['n_structures']} structures{extra}")
    print("per element (meV): " + ", ".join(f"{k} {v:.2f}" for k, v in res["mae_per_element_meV"].items()))
    print("per orbital pair (meV): " + ", ".join(f"{k} {v:.2f}" for k, v in res["mae_per_orbital_pair_meV"].items()))
    print("by distance (meV): " + ", ".join(f"{k} {v:.2f}" for k, v in res["mae_by_distance_meV"].items()))
    bm = res["band_metric"]
    what = "H0 + network ΔH" if res["target"]["kind"] == "delta_h0" else "network H"
    print(f"band MAE ({what}; E_ref +- 2 eV, Gamma + 7 k, median shift removed): median {bm['median_meV']:.2f} meV, "
          f"90th percentile {bm['p90_meV']:.2f} meV over {bm['n']} structures")
    if "h0_alone_band_metric" in res:
        h0 = res["h0_alone_band_metric"]
        print(f"band MAE of H0 alone (no network): median {h0['median_meV']:.2f} meV, "
              f"90th percentile {h0['p90_meV']:.2f} meV")
    for b in res.get("bands", []):
        print(f"bands {b['id']}: E_F +- 3 eV, max error {b['aligned_meV']:.2f} meV aligned, "
              f"{b['absolute_meV']:.2f} meV absolute")
    if args.json:
        print(f"JSON: {args.json}")
    if args.report:
        print(f"report: {res['report']}")


def add_parsers(sub) -> None:
    x = sub.add_parser("train", help="train the Hamiltonian network from a TOML config")
    x.add_argument("config")
    x.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    x.add_argument("--prepare", action="store_true",
                   help="only build OUT/samples.pt (graphs, targets; needs PySCF) and exit, e.g. before a GPU job")
    x.set_defaults(func=cmd_train)
    x = sub.add_parser("predict", help="predict H(R) of a structure; S(R) from basis integrals")
    x.add_argument("structure")
    x.add_argument("--model", default=None,
                   help="a shipped model's name (`uniham models` lists them) or a checkpoint (.pt); default: the "
                        "shipped default model")
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--threads", type=bounded(int, 1), default=1,
                   help="torch CPU threads (default 1: busy-waiting OpenMP threads are 100x slower on a shared CPU)")
    x.add_argument("--large", action="store_true",
                   help=f"chunked, bounded-memory prediction into OUTPUT/prediction.h5 (automatic above {LARGE_ABOVE} atoms)")
    x.add_argument("--max-edges", type=bounded(int, 1), default=20000, help="edges per chunk with --large (memory bound)")
    x.add_argument("--bands", action="store_true", help="also the band structure: OUTPUT/bands.json and a plot")
    x.add_argument("--kpath", default="auto", help='with --bands: "auto" (seekpath) or labels, e.g. "G X W L G"')
    x.add_argument("--npoints", type=bounded(int, 2), default=120, help="with --bands: k-points along the path")
    x.add_argument("--plot", help="with --bands: plot file (default OUTPUT/bands.png)")
    x.add_argument("--no-overlap", action="store_true", help="with --large: skip S(R) (H only)")
    x.add_argument("--s-guard", type=bounded(float, 0, 1), default=GUARD_TAU, metavar="TAU",
                   help="keep a ΔH model's correction off the overlap's near-null space: F ΔH F with F = S(S+TAU)^-1 "
                        f"(default {GUARD_TAU}, chosen on the validation split; 0 = off; docs/zeroth_step.md)")
    x.set_defaults(func=cmd_predict)
    x = sub.add_parser("models", help="the models shipped with uniham (name, status, model card)")
    x.set_defaults(func=cmd_models)

    x = sub.add_parser("evaluate", help="H MAE and band errors of a model on a data set")
    x.add_argument("--model", required=True)
    x.add_argument("--data", required=True, nargs="+", help="dataset folder(s) or DeepH-dock folder(s)")
    x.add_argument("--json")
    x.add_argument("--plots", help="folder for band-structure comparison plots")
    x.add_argument("--report", help="folder for a Markdown + PNG report: per-element heat map, four materials' bands "
                                    "and Im ε(ω) at the 20/40/60/80 %% ranks, figures by family and prototype")
    x.add_argument("--bands", type=bounded(int, 0), default=3, help="structures whose bands are plotted (with --plots)")
    x.add_argument("--band-structures", type=bounded(int, 1), default=None,
                   help="band metric on the first N structures only (default: all)")
    x.add_argument("--split", choices=["train", "validation", "test"],
                   help="only the structures this split holds by the training run's rule (on a bigger folder, e.g. "
                        "the full store of a subset, also ones the run never had; never one it trained on)")
    x.add_argument("--threads", type=bounded(int, 1), default=1, help="torch CPU threads")
    x.set_defaults(func=cmd_evaluate)

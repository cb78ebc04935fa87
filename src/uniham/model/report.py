"""``uniham evaluate --report DIR``: a paper-like evaluation of a model on a split, as Markdown + PNG.

What it holds (all from one :func:`uniham.model.evaluate.evaluate` result and its items):
- the headline table: H MAE (overall, on-site, by distance shell) and the band metric (median, 90th
  percentile; for a ΔH model also that of H0 alone, the baseline it must beat);
- a periodic-table heat map of the per-element H MAE (meV);
- DFT vs predicted bands (and H0 alone for a ΔH model) and Im ε(ω) for four test materials at the ~20/40/60/80 %
  ranks of the band-metric distribution;
- the band metric by structure family (the store's ``source``: elements, binaries, prototypes, layers, …)
  and by prototype, with the prototypes the training run held out (``holdout``) marked as such.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RANKS = (0.2, 0.4, 0.6, 0.8)


def _fmt(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def rank_picks(rows: list[dict], ranks=RANKS) -> list[dict]:
    """The rows at the given quantile ranks of ``band_mae_meV`` (finite values only; no row twice)."""
    ok = sorted((r for r in rows if np.isfinite(r.get("band_mae_meV", np.nan))), key=lambda r: r["band_mae_meV"])
    out, seen = [], set()
    for q in ranks:
        if not ok:
            break
        r = ok[min(len(ok) - 1, int(round(q * (len(ok) - 1))))]
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r | {"rank": q})
    return out


def family_table(rows: list[dict], items: dict, field: str) -> list[dict]:
    """Band metric grouped by a manifest-record ``field`` of each structure (n, median, p90; H0 alone)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        rec = items[r["id"]].record or {}
        groups.setdefault(str(rec.get(field, "?")), []).append(r)
    out = []
    for g, rr in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        v = np.array([r["band_mae_meV"] for r in rr], float)
        h0 = np.array([r.get("h0_alone_band_mae_meV", np.nan) for r in rr], float)
        out.append({"group": g, "n": len(rr), "median_meV": float(np.nanmedian(v)) if np.isfinite(v).any() else None,
                    "p90_meV": float(np.nanpercentile(v, 90)) if np.isfinite(v).any() else None,
                    "h0_alone_median_meV": float(np.nanmedian(h0)) if np.isfinite(h0).any() else None})
    return out


def _material_figure(ref, pred, h0, errs: dict, png: Path, title: str, kmesh: int) -> dict:
    """Bands along the auto path (DFT, model, H0 alone) and Im ε_xx(ω) (DFT, model) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uniham.properties.kpath import auto_labels, build_path
    from uniham.properties.optics import susceptibility

    try:
        kpts, _ = build_path(ref.atoms, auto_labels(ref.atoms), 60)
    except Exception:  # noqa: BLE001 - molecules and odd cells: a straight line through the zone
        kpts = np.linspace([0, 0, 0], [0.5, 0.5, 0.5], 60) * ref.atoms.pbc
    ef = errs["e_ref_eV"]
    er = ref.eigenvalues(kpts)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
    x = np.arange(len(kpts))
    a1.plot(x, er - ef, color="k", lw=1.2)
    shift = errs["shift_meV"] / 1000
    a1.plot(x, pred.eigenvalues(kpts)[:, :er.shape[1]] - shift - ef, color="tab:red", lw=0.9, ls="--")
    a1.plot([], [], color="k", label="DFT (SCF)")
    a1.plot([], [], color="tab:red", ls="--", label=f"model ({errs['band_mae_meV']:.1f} meV)")
    if h0 is not None:
        eh = h0.eigenvalues(kpts)[:, :er.shape[1]]
        eh = eh - np.median(eh[:, :er.shape[1]] - er) - ef
        a1.plot(x, eh, color="tab:blue", lw=0.6, ls=":")
        a1.plot([], [], color="tab:blue", ls=":", label="H0 alone")
    a1.set_ylim(-4, 4)
    a1.set_xticks([])
    a1.set_ylabel("E - E_ref (eV)")
    a1.legend(fontsize=7, loc="lower right")
    a1.set_title(title, fontsize=9)
    omega = np.arange(0.0, 12.0 + 1e-9, 0.02)
    mesh = tuple(kmesh if p else 1 for p in ref.atoms.pbc)
    out = {}
    for ham, lab, kw in ((ref, "DFT (SCF)", {"color": "k"}), (pred, "model", {"color": "tab:red", "ls": "--"})):
        chi = susceptibility(ham, mesh, omega, 0.1, components=("xx",), progress=False, sum_rule=False)
        im = np.imag(chi["eps"]["xx"])
        a2.plot(omega, im, label=lab, **kw)
        out[lab] = im
    a2.set_xlabel("photon energy (eV)")
    a2.set_ylabel("Im ε_xx")
    a2.set_title(f"{mesh[0]}×{mesh[1]}×{mesh[2]} k, 0.1 eV broadening", fontsize=9)
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    d, m = out["DFT (SCF)"], out["model"]
    return {"im_eps_xx_mae": float(np.mean(np.abs(m - d))), "im_eps_xx_peak_dft": float(d.max())}


def write_report(res: dict, items: list, lm, out_dir, kmesh: int = 6, title: str | None = None) -> Path:
    """Write ``out_dir/report.md`` (+ PNGs, ``report.json``) for ``res`` = evaluate(...) on ``items`` with the
    model ``lm`` (a :class:`uniham.model.predict.LoadedModel`)."""
    from uniham.data.plots import periodic_table
    from uniham.model.evaluate import delta_inputs, predicted_pair, zeroth_step_alone
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_id = {it.id: it for it in items}
    ckpt_path = lm.path
    rule = lm.ckpt.get("split_rule") or {}
    periodic_table(res["mae_per_element_meV"], out / "mae_per_element.png", "test H MAE (meV)", "%.1f",
                   f"H MAE per element, {res.get('split') or 'all'} split")
    rows = res["band_metric_per_structure"]
    picks = []
    for r in rank_picks(rows):
        it = by_id[r["id"]]
        inputs = delta_inputs(it) if it.target == "delta_h0" else None
        ref, pred = predicted_pair(it, lm, inputs)
        h0 = zeroth_step_alone(it, inputs)[1] if inputs is not None else None
        png = out / f"material_{int(100 * r['rank'])}.png"
        formula = ref.atoms.get_chemical_formula()
        extra = _material_figure(ref, pred, h0, r, png, f"{formula} ({r['id']}), rank {int(100 * r['rank'])} %", kmesh)
        picks.append(r | extra | {"formula": formula, "png": png.name})
    fams = family_table(rows, by_id, "source")
    protos = family_table(rows, by_id, "label")
    held = set(rule.get("holdout") or [])
    report = {"checkpoint": str(ckpt_path), "split": res.get("split"), "split_rule": rule, "n": res["n_structures"],
              "mae_meV": res["mae_meV"], "mae_by_distance_meV": res["mae_by_distance_meV"],
              "band_metric": res["band_metric"], "h0_alone_band_metric": res.get("h0_alone_band_metric"),
              "materials": picks, "by_source": fams, "by_prototype": protos, "held_out_prototypes": sorted(held)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(report, res, title or f"Evaluation of {Path(str(ckpt_path)).name}"))
    return out / "report.md"


def _markdown(rep: dict, res: dict, title: str) -> str:
    bm, h0 = rep["band_metric"], rep.get("h0_alone_band_metric")
    rule = rep["split_rule"]
    lines = [f"# {title}", "",
             f"Checkpoint `{rep['checkpoint']}` (step {res.get('step')}), {rep['n']} structures of the "
             f"**{rep['split'] or 'whole'}** split (split by {rule.get('split_by', '?')}, fractions "
             f"{rule.get('fractions')}, seed {rule.get('seed')}). Written by `uniham evaluate --report`.", "",
             "| | value |", "|---|---|", f"| H MAE, all blocks within the model's range | {_fmt(rep['mae_meV'])} meV |"]
    lines += [f"| H MAE, {k} | {_fmt(v)} meV |" for k, v in rep["mae_by_distance_meV"].items()]
    lines += [f"| band MAE (E_ref ± 2 eV, Γ + 7 k), median / 90th percentile | {_fmt(bm['median_meV'])} / "
              f"{_fmt(bm['p90_meV'])} meV over {bm['n']} structures |"]
    if h0:
        lines += [f"| H0 alone (no network), median / 90th percentile | {_fmt(h0['median_meV'])} / "
                  f"{_fmt(h0['p90_meV'])} meV |"]
    lines += ["", "The band metric: `uniham.properties.band_metric` (per structure the mean |E_pred − E_DFT − s| over "
              "the DFT bands within E_ref ± 2 eV at Γ and 7 fixed k, s the median shift, E_ref the VBM of gapped "
              "structures, else E_F).", "", "## H MAE per element", "", "![per element](mae_per_element.png)", "",
              "| element | meV |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(res["mae_per_element_meV"].items(), key=lambda kv: -kv[1])]
    lines += ["", "## Four test materials (ranks 20/40/60/80 % of the band metric)", "",
              "Left: bands along the seekpath path (model aligned by its median shift s; H0 alone by its own). "
              "Right: Im ε_xx(ω) of the DFT and the predicted Hamiltonian (independent-particle, no shift).", ""]
    for p in rep["materials"]:
        lines += [f"### {p['formula']} — {p['id']} (rank {int(100 * p['rank'])} %)", "",
                  f"band MAE {_fmt(p['band_mae_meV'])} meV (shift {_fmt(p['shift_meV'])} meV)"
                  + (f", H0 alone {_fmt(p['h0_alone_band_mae_meV'])} meV" if "h0_alone_band_mae_meV" in p else "")
                  + f"; Im ε_xx mean |Δ| {p['im_eps_xx_mae']:.3f} (DFT peak {p['im_eps_xx_peak_dft']:.2f})", "",
                  f"![{p['id']}]({p['png']})", ""]
    lines += ["## By structure family", "", "| family | n | median meV | p90 meV | H0 alone median meV |",
              "|---|---|---|---|---|"]
    lines += [f"| {f['group']} | {f['n']} | {_fmt(f['median_meV'])} | {_fmt(f['p90_meV'])} | "
              f"{_fmt(f['h0_alone_median_meV'])} |" for f in rep["by_source"]]
    held = set(rep["held_out_prototypes"])
    lines += ["", "## Out of distribution by prototype", ""]
    if held:
        lines += [f"The training run held out the prototypes {', '.join(sorted(held))} (`holdout`): they are "
                  "marked ✱ below and are out of distribution.", ""]
    else:
        by = rule.get("split_by", "?")
        lines += ["The training run held out no prototype (`holdout` empty), so no row below is out of distribution "
                  "by prototype" + (": with the split by composition every test composition is new to the model, "
                                    "but its prototype may have been seen with other elements." if by == "composition"
                                    else f" (split by {by})."), ""]
    lines += ["| prototype | n | median meV | p90 meV | H0 alone median meV |", "|---|---|---|---|---|"]
    lines += [f"| {f['group']}{' ✱' if f['group'] in held else ''} | {f['n']} | {_fmt(f['median_meV'])} | "
              f"{_fmt(f['p90_meV'])} | {_fmt(f['h0_alone_median_meV'])} |" for f in rep["by_prototype"]]
    return "\n".join(lines) + "\n"

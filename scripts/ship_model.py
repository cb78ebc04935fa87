"""Ship a campaign's model inside the package: weights, checksum, model card (Markdown + JSON), report.

    python scripts/ship_model.py CAMPAIGN --name NAME --data STORE [--baseline CAMPAIGN --baseline-data STORE]
                                 [--report docs/models/NAME] [--threads N] [--default]

It evaluates CAMPAIGN/weights.pt on the test split of STORE by the training run's own rule (H MAE overall, per
element, per orbital pair, by distance; the band metric on every test structure; for a ΔH model H0 alone), and
the baseline campaign (the direct model) on the same split; copies the weights to
``src/uniham/pretrained/NAME.pt``; records its sha256, status and summary in ``src/uniham/pretrained/index.json``;
writes ``NAME.md`` and ``NAME.json`` (the model card) beside it; and, with ``--report``, the paper-like
evaluation report (:mod:`uniham.model.report`).

Status: "default" only if the model's band-metric median beats both H0 alone and the baseline's, else
"experimental" (``uniham predict`` then says so in one line). ``--default`` makes NAME the package's default model
(the best model we have ships, experimental or not).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRE = ROOT / "src" / "uniham" / "pretrained"
MAGNETIC_NOTE = ("db1 is spin-restricted: magnetic materials (Fe, Co, Ni, Mn, Cr, …) come out non-magnetic, and "
                 "`uniham predict` warns for them")


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def _manifest_summary(store: Path) -> dict:
    m = json.loads((store / "manifest.json").read_text())
    recs = m["structures"]
    elements = sorted({x for r in recs.values() for x in r.get("elements", [])})
    return {"path": _rel(store), "structures": len(recs), "elements": elements, "derived": m.get("derived"),
            "failures": len(m.get("failures", {})), "first_dft": next(iter(recs.values()), {}).get("dft")}


def evaluate_campaign(camp: Path, data: Path, report: Path | None = None, split: str = "test",
                      weights: Path | None = None) -> dict:
    from uniham.model.evaluate import evaluate

    return evaluate(weights or camp / "weights.pt", [data], n_bands=0, split=split, report=report)


def _worse_than_h0(res: dict, n_worst: int = 5) -> list[str]:
    """The known limit a ΔH model's per-structure band table shows: where H0 alone has the better bands."""
    rows = [r for r in res.get("band_metric_per_structure", []) if r.get("h0_alone_band_mae_meV") is not None
            and r.get("band_mae_meV") is not None]
    worse = sorted((r for r in rows if r["band_mae_meV"] > r["h0_alone_band_mae_meV"]),
                   key=lambda r: r["h0_alone_band_mae_meV"] - r["band_mae_meV"])
    if not worse:
        return []
    h0 = res.get("h0_alone_band_metric") or {}
    top = ", ".join(f"{r['id'].split('/')[-1]} {r['band_mae_meV']:.0f} vs {r['h0_alone_band_mae_meV']:.0f}"
                    for r in worse[:n_worst])
    return [f"on {len(worse)} of {len(rows)} test structures H0 alone has the better bands (90th percentiles: "
            f"model {_f(res['band_metric']['p90_meV'])}, H0 alone {_f(h0.get('p90_meV'))} meV); the worst, model vs H0 alone "
            f"(meV): {top} (docs/zeroth_step.md, where the model loses to H0)"]


def card(name: str, camp: Path, data: Path, res: dict, base: dict | None, base_camp: Path | None, status: str,
         report: Path | None, weights: Path | None = None) -> dict:
    import torch

    from uniham.model.checkpoint import load_checkpoint

    ck = load_checkpoint(weights or camp / "weights.pt")
    from ase.data import chemical_symbols

    n_params = sum(v.numel() for v in ck["state_dict"].values())
    state = json.loads((camp / "state.json").read_text())
    store = _manifest_summary(data)
    src = None
    if store["derived"]:
        from uniham.data.store import DatasetStore
        from uniham.data.zeroth_step import source_store

        src = _manifest_summary(source_store(DatasetStore(data)).root)
    dft = [x.pop("first_dft") for x in (src, store) if x][0]  # the SCF's settings (the source store's, for ΔH)
    return {
        "name": name, "status": status, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": _commit(),
        "file": f"{name}.pt", "target": ck.get("target"), "basis_family": ck.get("basis_family"),
        "parameters": int(n_params), "model_config": ck["model_config"], "torch": torch.__version__,
        "elements_covered": [chemical_symbols[int(z)] for z in sorted(ck.get("elements_seen", []))],
        "data": {"store": store | {"elements": len(store["elements"])},
                 "source_store": (src | {"elements": len(src["elements"])}) if src else None,
                 "scf_dft_settings_example": dft,
                 "split_rule": ck.get("split_rule"),
                 "n_train": len(ck.get("split_keys", {}).get("train", []))},
        "training": {"campaign": _rel(camp), "stretches": len(state["stretches"]),
                     "totals": state["totals"], "best_val_mae_meV": state["best_val_mae_meV"],
                     "reproduce": f"python scripts/campaign.py run {_rel(camp)} --hours H --threads 1 "
                                  f"(stretch by stretch, as recorded in {_rel(camp)}/state.json)"
                                  + (f", then `{ck['soup']['reproduce']}` (the mean of those stretches' weights)"
                                     if ck.get("soup") else ""),
                     "soup": ck.get("soup")},
        "split": res.get("split"),
        "test": {k: res.get(k) for k in ("n_structures", "mae_meV", "mae_per_element_meV", "mae_per_orbital_pair_meV",
                                         "mae_by_distance_meV", "band_metric", "h0_alone_band_metric",
                                         "unguarded_band_metric", "overlap_guard_tau")},
        "baseline_direct": ({"campaign": _rel(base_camp), "mae_meV": base["mae_meV"],
                             "mae_by_distance_meV": base["mae_by_distance_meV"], "band_metric": base["band_metric"],
                             "core_hours": json.loads((base_camp / "state.json").read_text())["totals"]["cpu_core_hours"]}
                            if base else None),
        "report": _rel(report / "report.md") if report else None,
        "known_limits": [
            MAGNETIC_NOTE,
            "a ΔH model needs CP2K for H0 at prediction time (one diagonalization: up to a few hundred atoms on a "
            "workstation); larger cells take a direct model (`uniham predict --large`)" if (ck.get("target") or {})
            .get("kind") == "delta_h0" else "a direct model: H is cut at the model's edges",
            "trained on db1's kinds of cells (elements, binaries, prototypes, layers; ideal, strained and rattled "
            "copies); molecules, surfaces with adsorbates and defects are outside its data",
            "the energy zero of a predicted H is CP2K's; band energies are judged after removing a median shift",
            *_worse_than_h0(res),
        ],
        "machine": {"node": platform.node(), "python": sys.version.split()[0]},
    }


def _f(x) -> str:
    from uniham.model.report import _fmt

    return _fmt(x)


def card_markdown(c: dict) -> str:
    t, b = c["test"], c["baseline_direct"]
    bm, h0 = t["band_metric"], t.get("h0_alone_band_metric")
    tot = c["training"]["totals"]
    lines = [f"# Model card: {c['name']} ({c['status']})", "",
             f"What it predicts: {'ΔH on the zeroth-step Hamiltonian H0 (H = H0 + ΔH, H0 by CP2K)' if (c['target'] or {}).get('kind') == 'delta_h0' else 'H directly'}; "
             f"basis {c['basis_family']}; {c['parameters']:,} parameters; {len(c['elements_covered'])} elements: "
             f"{' '.join(c['elements_covered'])}.", "",
             f"Data: `{c['data']['store']['path']}` ({c['data']['store']['structures']} structures"
             + (f"; ΔH of `{c['data']['source_store']['path']}`, {c['data']['source_store']['structures']} SCF structures"
                if c["data"]["source_store"] else "") + f"), split by {c['data']['split_rule']['split_by']} "
             f"{c['data']['split_rule']['fractions']} seed {c['data']['split_rule']['seed']}; {c['data']['n_train']} "
             "training structures.", "",
             f"DFT (the SCF it learns): {json.dumps(c['data']['scf_dft_settings_example'])}", "",
             f"Training compute: {tot['cpu_core_hours']:.2f} CPU core-hours, {tot['gpu_minutes']:.1f} GPU minutes, "
             f"{tot['steps']} steps over {c['training']['stretches']} stretches. Reproduce: `{c['training']['reproduce']}`.",
             "", f"## {c['split'].capitalize()} split ({t['n_structures']} structures)", "", "| | this model |"
             + (" direct baseline |" if b else ""), "|---|---|" + ("---|" if b else "")]
    lines.append(f"| H MAE overall (meV) | {_f(t['mae_meV'])} |" + (f" {_f(b['mae_meV'])} |" if b else ""))
    for k, v in t["mae_by_distance_meV"].items():
        lines.append(f"| H MAE {k} (meV) | {_f(v)} |" + (f" {_f(b['mae_by_distance_meV'].get(k))} |" if b else ""))
    lines.append(f"| band MAE median (meV) | {_f(bm['median_meV'])} |" + (f" {_f(b['band_metric']['median_meV'])} |" if b else ""))
    lines.append(f"| band MAE 90th percentile (meV) | {_f(bm['p90_meV'])} |" + (f" {_f(b['band_metric']['p90_meV'])} |" if b else ""))
    if h0:
        lines += ["", f"H0 alone (no network) on the same structures: band MAE median {_f(h0['median_meV'])}, "
                  f"90th percentile {_f(h0['p90_meV'])} meV."]
    ug = t.get("unguarded_band_metric")
    if ug:
        lines += [f"Bands as `uniham predict` gives them: ΔH kept off the overlap's near-null space (overlap guard "
                  f"τ = {t.get('overlap_guard_tau')}, `uniham.conditioning`); without the guard (`--s-guard 0`) the "
                  f"band MAE median is {_f(ug['median_meV'])}, 90th percentile {_f(ug['p90_meV'])} meV."]
    if b:
        lines += [f"Direct baseline: `{b['campaign']}`, {b['core_hours']:.2f} CPU core-hours."]
    lines += ["", "Band metric: per structure the mean |E_pred − E_DFT − s| over the DFT bands within E_ref ± 2 eV at Γ "
              "and 7 fixed k (s the median shift; E_ref the VBM of gapped structures, else E_F); median and 90th "
              "percentile over the test structures (`uniham.properties.band_metric`).", "",
              "## Per element (test H MAE, meV)", "",
              ", ".join(f"{k} {_f(v)}" for k, v in sorted(t["mae_per_element_meV"].items())), "",
              "## Per orbital pair (test H MAE, meV)", "",
              ", ".join(f"{k} {_f(v)}" for k, v in t["mae_per_orbital_pair_meV"].items()), "",
              "## Known limits", ""] + [f"- {x}" for x in c["known_limits"]]
    if c["status"] == "experimental":
        lines += ["- **experimental**: its band median does not yet beat both H0 alone and the direct baseline"]
    if c.get("prediction_vs_scf"):
        pv = c["prediction_vs_scf"]
        lines += ["", "## Prediction vs SCF wall time (same run, same machine)", "",
                  "| cell | atoms | predict (s) | of which H0 (s) | SCF (s) | predict / SCF | band metric vs that SCF (meV) |",
                  "|---|---|---|---|---|---|---|"]
        for r in pv["rows"]:
            scf = r.get("scf_wall_s") or r.get("scf_wall_s_extrapolated")
            lab = "" if "scf_wall_s" in r else " (extrapolated)"
            ratio = r.get("ratio_predict_over_scf") or r.get("ratio_predict_over_scf_extrapolated")
            lines.append(f"| Si {r['cell']} | {r['atoms']} | {r['predict_wall_s']:.1f} | {r['predict_h0_s']:.1f} | "
                         f"{scf:.0f}{lab} | {ratio:.2f}{lab} | {_f(r.get('band_metric_meV'))} |")
        lines += ["", f"`{pv['source']}` ({pv.get('note', '')}); the band column is for the weights the benchmark "
                  "ran with, which may be an earlier state of this model (its timing does not depend on them)."]
    if c["report"]:
        lines += ["", f"Full evaluation report: `{c['report']}`."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("campaign", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--baseline-data", type=Path)
    ap.add_argument("--weights", type=Path, help="the weights to ship (default CAMPAIGN/weights.pt; e.g. a soup of its "
                                                 "stretches by `scripts/campaign.py soup`)")
    ap.add_argument("--candidate-json", type=Path, help="this campaign's evaluation JSON instead of evaluating here")
    ap.add_argument("--timing", type=Path, help="bench/predict_vs_scf.py's JSON, quoted in the card")
    ap.add_argument("--baseline-json", type=Path, help="the baseline's evaluation JSON instead of evaluating it here")
    ap.add_argument("--report", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--default", action="store_true")
    ap.add_argument("--into", type=Path, default=PRE, help="the package folder of shipped models (default: %(default)s)")
    ap.add_argument("--split", default="test", help="the split the card's figures come from (test)")
    a = ap.parse_args()
    import torch

    from uniham.pretrained import index, sha256_file

    torch.set_num_threads(a.threads)
    camp = a.campaign.resolve()
    report = a.report.resolve() if a.report else None
    # the candidate's `uniham evaluate --split test --json [--report]` of its weights, or evaluated here
    res = json.loads(a.candidate_json.read_text()) if a.candidate_json else evaluate_campaign(camp, a.data, report, a.split,
                                                                                             a.weights)
    if a.baseline_json:  # the baseline's `uniham evaluate --split test --json` (e.g. run beside this one)
        base = json.loads(a.baseline_json.read_text())
    else:
        base = evaluate_campaign(a.baseline.resolve(), a.baseline_data or a.data, split=a.split) if a.baseline else None
    med = res["band_metric"]["median_meV"]
    beats = [med < res["h0_alone_band_metric"]["median_meV"] if "h0_alone_band_metric" in res else True,
             med < base["band_metric"]["median_meV"] if base else False]
    status = "default" if all(beats) else "experimental"
    pre = a.into.resolve()
    pre.mkdir(parents=True, exist_ok=True)
    dst = pre / f"{a.name}.pt"
    shutil.copyfile(a.weights or camp / "weights.pt", dst)
    c = card(a.name, camp, a.data.resolve(), res, base, a.baseline.resolve() if a.baseline else None, status, report,
             a.weights)
    if a.timing:
        t = json.loads(a.timing.read_text())
        c["prediction_vs_scf"] = {"source": _rel(a.timing), "commit": t.get("commit"), "machine": t.get("machine"),
                                  "rows": t["rows"], "scf_scaling": t.get("scf_scaling"), "note": t.get("note")}
    (pre / f"{a.name}.json").write_text(json.dumps(c, indent=1))
    (pre / f"{a.name}.md").write_text(card_markdown(c))
    idx = index() if pre == PRE else (json.loads((pre / "index.json").read_text()) if (pre / "index.json").exists()
                                      else {"default": None, "models": {}})
    h0 = res.get("h0_alone_band_metric")
    summary = (f"test band MAE median {med:.1f} meV, p90 {res['band_metric']['p90_meV']:.1f} meV"
               + (f" (H0 alone {h0['median_meV']:.1f} meV" if h0 else " (")
               + (f", direct baseline {base['band_metric']['median_meV']:.1f} meV)" if base else ")"))
    idx["models"][a.name] = {"file": dst.name, "sha256": sha256_file(dst), "status": status, "card": f"{a.name}.md",
                             "summary": summary, "elements": len(c["elements_covered"])}
    if a.default or not idx.get("default"):
        idx["default"] = a.name
    (pre / "index.json").write_text(json.dumps(idx, indent=1) + "\n")
    print(json.dumps({"name": a.name, "status": status, "summary": summary, "file": str(dst),
                      "size_mb": round(dst.stat().st_size / 2 ** 20, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

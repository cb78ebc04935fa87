"""Network speed and memory, SO(2) vs the DeepH-E3-like tensor-product baseline, same hyper-parameters.

Training throughput: forward + backward + AdamW step on batches of real structures (a uniham dataset or
DeepH-dock folders; default data/si_rattled), edges/s and structures/s, median of REPEATS timed steps.
Inference: forward time and peak RSS growth vs number of atoms (diamond-Si supercells).

    python bench/model_speed.py [DATA] [--threads N] [--lmax L] [--channels C] [--cutoff A]   # prints JSON
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
from ase.build import bulk

from uniham.model.data import discover, load_samples
from uniham.model.graph import collate, structure_graph
from uniham.model.net import ModelConfig, build_model


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_speed(kind: str, samples: list[dict], cfg: ModelConfig, batch_size: int, repeats: int) -> dict:
    model = build_model(ModelConfig(**{**cfg.__dict__, "kind": kind}))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    n_edges = 0
    for r in range(repeats + 1):
        batch = collate(samples[(r * batch_size) % len(samples):][:batch_size] or samples[:batch_size])
        t0 = time.perf_counter()
        hs, he = model(batch)
        loss = ((hs - batch["h_site"]) * batch["m_site"]).pow(2).mean() + ((he - batch["h_edge"]) * batch["m_edge"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if r:  # the first step warms up
            times.append(time.perf_counter() - t0)
            n_edges = batch["edge_index"].shape[1]
    med = statistics.median(times)
    return {"step_s_median": round(med, 4), "edges_per_s": round(n_edges / med, 1),
            "structures_per_s": round(batch_size / med, 3), "edges_per_batch": n_edges,
            "parameters": sum(p.numel() for p in model.parameters())}


def inference_scaling(kind: str, cfg: ModelConfig, sizes) -> list[dict]:
    model = build_model(ModelConfig(**{**cfg.__dict__, "kind": kind}))
    model.eval()
    rows = []
    for reps in sizes:
        atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(reps)
        g = structure_graph(atoms, cfg.cutoff)
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        with torch.no_grad():
            model(g)
        rows.append({"atoms": len(atoms), "edges": int(g["edge_index"].shape[1]),
                     "forward_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
                     "rss_growth_mb": round(peak_rss_mb() - rss0, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default="data/si_rattled")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lmax", type=int, default=4)
    ap.add_argument("--mmax", type=int, default=2)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--cutoff", type=float, default=9.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kinds", default="so2,e3")
    ap.add_argument("--sizes", default="1,2,3", help="cubic Si supercell repeats for inference")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(cutoff=a.cutoff, lmax=a.lmax, mmax=a.mmax, channels=a.channels, layers=a.layers, heads=4,
                      layout=((0, 2), (1, 2), (2, 1)))
    items = discover([a.data])[: a.batch * (a.repeats + 1)]
    samples = load_samples(items, cfg.cutoff, build_model(cfg).layout, progress=False)
    out = {"device": "cpu", "threads": a.threads, "config": cfg.to_dict(), "batch_size": a.batch}
    sizes = [int(x) for x in a.sizes.split(",")]
    for kind in a.kinds.split(","):
        out[kind] = {"train": train_speed(kind, samples, cfg, a.batch, a.repeats),
                     "inference": inference_scaling(kind, cfg, sizes)}
    if "so2" in out and "e3" in out:
        out["e3_over_so2_step_time"] = round(out["e3"]["train"]["step_s_median"] / out["so2"]["train"]["step_s_median"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

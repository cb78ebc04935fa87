"""Network speed and memory, SO(2) vs the DeepH-E3-like tensor-product baseline, same hyper-parameters.

Training throughput: forward + backward + AdamW step on batches of real structures (a uniham dataset or
DeepH-dock folders; default data/si_rattled), edges/s and structures/s, median of REPEATS timed steps.
Inference: forward time and peak memory vs number of atoms (diamond-Si supercells): RSS growth on CPU,
``torch.cuda.max_memory_allocated`` on CUDA (timings synchronized).

    python bench/model_speed.py [DATA] [--threads N] [--lmax L] [--channels C] [--cutoff A] [--range-eps E]  # JSON
    python bench/model_speed.py --cache runs/X/samples.pt --device cuda [--amp]      # a GPU node without PySCF
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


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_speed(kind: str, samples: list[dict], cfg: ModelConfig, batch_size: int, repeats: int,
                device=torch.device("cpu"), amp: bool = False) -> dict:
    from uniham.model.train import to_device

    model = build_model(ModelConfig(**{**cfg.__dict__, "kind": kind})).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    n_edges = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for r in range(repeats + 2):
        batch = to_device(collate(samples[(r * batch_size) % len(samples):][:batch_size] or samples[:batch_size]),
                          device, torch.float32)
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            hs, he = model(batch)
        hs, he = hs.float(), he.float()
        loss = ((hs - batch["h_site"]) * batch["m_site"]).pow(2).mean() + ((he - batch["h_edge"]) * batch["m_edge"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        if r > 1:  # two warm-up steps (allocator, kernels)
            times.append(time.perf_counter() - t0)
            n_edges = batch["edge_index"].shape[1]
    med = statistics.median(times)
    res = {"step_s_median": round(med, 4), "edges_per_s": round(n_edges / med, 1),
           "structures_per_s": round(batch_size / med, 3), "edges_per_batch": n_edges,
           "parameters": sum(p.numel() for p in model.parameters())}
    if device.type == "cuda":
        res["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


def inference_scaling(kind: str, cfg: ModelConfig, sizes, device=torch.device("cpu"), amp: bool = False) -> list[dict]:
    from uniham.model.train import to_device

    model = build_model(ModelConfig(**{**cfg.__dict__, "kind": kind})).to(device)
    model.eval()
    rows = []
    for reps in sizes:
        atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(reps)
        g = to_device(structure_graph(atoms, model.edge_range()), device, torch.float32)
        rss0 = peak_rss_mb()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model(g)
        _sync(device)
        row = {"atoms": len(atoms), "edges": int(g["edge_index"].shape[1]),
               "forward_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
               "rss_growth_mb": round(peak_rss_mb() - rss0, 1)}
        if device.type == "cuda":
            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        rows.append(row)
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
    ap.add_argument("--range-eps", type=float, default=0.0, help="per-pair edge ranges at this overlap (0: fixed cutoff)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kinds", default="so2,e3")
    ap.add_argument("--sizes", default="1,2,3", help="cubic Si supercell repeats for inference")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    ap.add_argument("--cache", help="a trainer's samples.pt instead of DATA (its cutoff and layout are used)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    layout, cutoff, range_eps = ((0, 2), (1, 2), (2, 1)), a.cutoff, a.range_eps
    if a.cache:
        from uniham.model.data import load_sample_cache

        sets, meta = load_sample_cache(a.cache, None)
        samples = sets["train"][: a.batch * (a.repeats + 2)]
        layout, cutoff = tuple(tuple(x) for x in meta["layout"]), meta.get("cutoff", a.cutoff)
        range_eps = meta.get("range_eps", 0.0)
    cfg = ModelConfig(cutoff=cutoff, range_eps=range_eps, lmax=a.lmax, mmax=a.mmax, channels=a.channels, layers=a.layers, heads=4,
                      layout=layout)
    if not a.cache:
        items = discover([a.data])[: a.batch * (a.repeats + 2)]
        model = build_model(cfg)
        samples = load_samples(items, model.edge_range(), model.layout, progress=False, with_overlap=False)
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "threads": a.threads,
           "amp_bf16": a.amp, "config": cfg.to_dict(), "batch_size": a.batch}
    sizes = [int(x) for x in a.sizes.split(",")]
    for kind in a.kinds.split(","):
        out[kind] = {"train": train_speed(kind, samples, cfg, a.batch, a.repeats, device, a.amp),
                     "inference": inference_scaling(kind, cfg, sizes, device, a.amp)}
    if "so2" in out and "e3" in out:
        out["e3_over_so2_step_time"] = round(out["e3"]["train"]["step_s_median"] / out["so2"]["train"]["step_s_median"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""Overfit one structure with the whole training step captured in a CUDA graph.

A batch-1 training step of this network is a few thousand small kernels: on a GPU it is bound by launch
latency (0.14 s/step on an H200, session 3), so reaching the < 0.1 meV overfit takes long in eager
mode. The structure never changes, so forward, loss, backward, gradient clipping and AdamW
(capturable, learning rate as a device tensor) are captured once and replayed.

    python bench/overfit_graph.py bench/configs/overfit_eager.toml --minutes 7 --out OUT [--eager]

Reads graphs/targets from the config's trainer cache (``uniham train CONFIG --prepare``), writes
OUT/best.pt (a uniham checkpoint: ``uniham evaluate``/``predict`` read it), OUT/log.csv and prints
JSON (steps, s/step, final MAE). ``--eager`` runs the same loop without the graph (CPU or baseline).
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch


def main() -> None:
    import uniham
    from uniham.model.data import load_sample_cache
    from uniham.model.graph import collate
    from uniham.model.net import ModelConfig, build_model
    from uniham.model.train import (
        fit_site_reference,
        load_config,
        loss_fn,
        lr_at,
        save_checkpoint,
        to_device,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--log-every", type=int, default=500)
    a = ap.parse_args()
    cfg = load_config(a.config)
    t = cfg["train"]
    cached = load_sample_cache(Path(cfg["out"]) / "samples.pt", None)
    if cached is None:
        raise SystemExit(f"no trainer cache in {cfg['out']}: run `uniham train {a.config} --prepare` first")
    sets, meta = cached
    sample = sets["train"][0]
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    graphs = not a.eager and dev.type == "cuda"
    if graphs:
        # the geometry never changes: compute the edge frames' Wigner matrices once (torch.matrix_exp picks
        # its Taylor degree with a host-side nonzero(), which a CUDA graph cannot capture)
        import uniham.model.net as net

        exact, memo = net.edge_wigner, {}

        def fixed_wigner(vec, lmax):
            key = (vec.data_ptr(), tuple(vec.shape), lmax)
            if key not in memo:
                memo[key] = exact(vec, lmax)
            return memo[key]

        net.edge_wigner = fixed_wigner
    torch.manual_seed(t["seed"])
    mcfg = ModelConfig.from_dict(cfg["model"])
    mcfg.layout = tuple(tuple(x) for x in meta["layout"])
    model = build_model(mcfg).to(dev)
    if t["site_reference"]:
        model.site_ref.copy_(fit_site_reference([sample], model.layout).to(dev))
    batch = to_device(collate([sample]), dev, torch.float32)
    lr = torch.tensor(t["lr"], device=dev) if graphs else t["lr"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=t["weight_decay"], capturable=graphs)

    def step_fn():
        opt.zero_grad(set_to_none=False)
        loss, mae = loss_fn(model(batch), batch, t["loss"], t["gauge"], t["overlap_weight"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"], foreach=True)
        opt.step()
        return loss, mae

    def set_lr(step, frac):
        v = lr_at(step, t, frac)
        if graphs:
            lr.fill_(v)
        else:
            opt.param_groups[0]["lr"] = v

    t0 = time.perf_counter()
    step = 0
    if graphs:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up outside the graph (allocations, cached index tensors, AdamW state)
                set_lr(step, 0.0)
                step_fn()
                step += 1
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss, static_mae = step_fn()
        step += 1  # the capture does not run the step; the first replay does
        run = graph.replay
    else:
        holder = {}

        def run():
            holder["loss"], holder["mae"] = step_fn()

    budget = 60 * a.minutes
    rows = []
    t_loop = time.perf_counter()
    n_loop = 0
    while step < t["steps"]:
        frac = (time.perf_counter() - t0) / budget
        if frac >= 1:
            break
        set_lr(step, frac)
        run()
        step += 1
        n_loop += 1
        if step % a.log_every == 0:
            mae = (static_mae if graphs else holder["mae"]).item()
            loss = (static_loss if graphs else holder["loss"]).item()
            if not torch.isfinite(torch.tensor(loss)):
                raise SystemExit(f"loss became {loss} at step {step}")
            rows.append([step, f"{lr_at(step, t, frac):.3e}", f"{1000 * mae:.5f}", f"{time.perf_counter() - t0:.1f}"])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    s_per_step = (time.perf_counter() - t_loop) / max(1, n_loop)
    with torch.no_grad():
        final = 1000 * loss_fn(model(batch), batch, "mae", t["gauge"])[1].item()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "lr", "train_mae_meV", "wall_s"])
        w.writerows(rows)
    save_checkpoint(out / "best.pt", {
        "format": "uniham-checkpoint-1", "version": uniham.__version__, "config": cfg, "model_config": mcfg.to_dict(),
        "layout": [list(x) for x in mcfg.layout], "basis_family": meta.get("basis_family"),
        "elements_seen": sorted({int(z) for z in sample["z"].tolist()}), "state_dict": model.state_dict(),
        "ema_state_dict": None, "ema_n": 0, "optimizer": None, "step": step, "epoch": step, "best_val_mae_meV": final,
        "bad_evals": 0, "splits": {"train": [sample["id"]], "validation": [], "test": []}, "rng": {}, "final": True})
    print(json.dumps({"structure": sample["id"], "cuda_graph": graphs, "device": str(dev), "steps": step,
                      "s_per_step": s_per_step, "wall_s": time.perf_counter() - t0, "final_mae_meV": final}))


if __name__ == "__main__":
    main()

"""What bfloat16 autocast costs in accuracy and gains in speed, for a trained model on its own data.

Loads a checkpoint and the trainer's sample cache (``OUT/samples.pt``; no PySCF needed), evaluates the
validation (or train) set with float32 and with bfloat16 autocast, and times the forward passes.

    python bench/amp_accuracy.py runs/X/best.pt runs/X/samples.pt [--set validation] [--device cuda]  # JSON
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from uniham.model.data import load_sample_cache
from uniham.model.graph import collate
from uniham.model.train import (
    load_checkpoint,
    model_from_checkpoint,
    residuals,
    to_device,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("cache")
    ap.add_argument("--set", default="validation")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    device = torch.device(a.device)
    model = model_from_checkpoint(load_checkpoint(a.checkpoint)).to(device).eval()
    sets, _ = load_sample_cache(a.cache, None)
    samples = sets[a.set] or sets["train"]
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "set": a.set,
           "n_structures": len(samples)}
    for name, amp in (("float32", False), ("bf16_autocast", True)):
        err, n, times = 0.0, 0, []
        with torch.no_grad():
            for rep in range(3):
                for k in range(0, len(samples), a.batch):
                    b = to_device(collate(samples[k:k + a.batch]), device, torch.float32)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                        hs, he = model(b)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                    if rep == 0:
                        rs, re = residuals((hs.float(), he.float()), b, "absolute")
                        err += float(rs.abs().sum() + re.abs().sum())
                        n += int(b["m_site"].sum() + b["m_edge"].sum())
        out[name] = {"mae_meV": round(1000 * err / n, 4), "forward_s_median": round(statistics.median(times[1:]), 4)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

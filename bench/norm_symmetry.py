"""How well predictions keep a crystal's symmetry: diamond Si's bands at k and at its images under the cubic
group (permutations of the fractional k in the fcc primitive basis), and its on-site p block (isotropic at a
tetrahedral site), for the shipped model (float32 and float64 network) and for random networks with each
node-feature norm (uniham.model.so2.EquivariantNorm). The DFT's own H0 and SCF keep it to ~1e-3 meV.

    python bench/norm_symmetry.py > bench/results/norm_symmetry/norm_symmetry_cpu.json
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import torch
from _meta import run_meta


def band_breaking_meV(ham, k=(0.11, 0.23, 0.37), nbands: int = 8) -> float:
    k = np.asarray(k)
    e = [ham.eigh(k[list(p)])[:nbands] for p in itertools.permutations(range(3))]
    return float(1000 * max(np.abs(x - e[0]).max() for x in e))


def p_anisotropy(block: np.ndarray) -> float:
    p = block[2:5, 2:5]
    return float((np.abs(np.diag(p) - np.diag(p).mean()).max() + np.abs(p - np.diag(np.diag(p))).max()) / np.abs(p).max())


def main() -> None:
    from ase.build import bulk

    from uniham.model.graph import structure_graph
    from uniham.model.net import ModelConfig, build_model
    from uniham.model.predict import predict

    atoms = bulk("Si", "diamond", a=5.431)
    rows = []
    for dtype in (torch.float32, torch.float64):
        ham = predict(atoms, None, dtype=dtype)
        rows.append({"model": "uniham-v1 (shipped, norm 'degree')", "network_dtype": str(dtype).split(".")[-1],
                     "band_symmetry_breaking_meV": band_breaking_meV(ham)})
    for norm in ("degree", "separable"):
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(4)
            cfg = ModelConfig(cutoff=5.0, lmax=4, mmax=2, channels=16, layers=3, heads=4,
                              layout=((0, 2), (1, 2), (2, 1)), norm=norm)
            model = build_model(cfg).to(dtype)
            with torch.no_grad():
                hs, _ = model(structure_graph(atoms, cfg.cutoff, dtype))
            rows.append({"model": f"random network, norm '{norm}'", "network_dtype": str(dtype).split(".")[-1],
                         "onsite_p_anisotropy_relative": p_anisotropy(hs[0].double().numpy())})
    print(json.dumps(run_meta() | {"structure": "diamond Si, a = 5.431 A, primitive cell", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

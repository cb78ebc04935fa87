"""Loops of small dense k-point solves: one BLAS thread vs the library default.

Times ``Hamiltonian.eigenvalues`` on 200 random k-points of a DeepH-dock folder (default: out/Si from the
README's first command) with BLAS limited to one thread (what uniham does below
``uniham.hamiltonian.SMALL_DENSE`` orbitals) and with the default thread count, medians of --reps.
Run it on an idle machine and next to other work (e.g. a database build): the difference is the load.

    python bench/dense_threads.py [FOLDER] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

import uniham.hamiltonian
from uniham.io import read_hamiltonian


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default="out/Si")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    ham = read_hamiltonian(a.folder)
    ks = np.random.default_rng(0).uniform(-0.5, 0.5, (200, 3))
    out = {"folder": a.folder, "norb": ham.norb, "n_k": len(ks), "cpus": os.cpu_count(),
           "load_1min": os.getloadavg()[0]}
    for name, small in (("one_thread_s", uniham.hamiltonian.SMALL_DENSE), ("default_threads_s", 0)):
        uniham.hamiltonian.SMALL_DENSE = small  # 0: never limit
        times = []
        for _ in range(a.reps):
            t = time.perf_counter()
            ham.eigenvalues(ks)
            times.append(time.perf_counter() - t)
        out[name] = round(statistics.median(times), 3)
    out["ratio_default_over_one"] = round(out["default_threads_s"] / out["one_thread_s"], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

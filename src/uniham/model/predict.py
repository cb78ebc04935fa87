"""Prediction and evaluation with a trained checkpoint.

``predict``: any structure -> every H block within the model cutoff (EMA weights), S(R) for the same
blocks from the CP2K basis definition by PySCF integrals (no SCF), E_F by electron counting (GTH
valence charges). The result is a :class:`uniham.hamiltonian.Hamiltonian` that ``uniham bands``,
``dos`` and ``convert`` accept once written as a DeepH-dock folder.

Energy zero: the network learns the DFT code's zero (average electrostatic potential = 0) when trained
with ``gauge = "absolute"``; with ``gauge = "free"`` absolute energies are undetermined up to a constant
times S, and only E_F-aligned bands are meaningful (``evaluate`` reports both).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from ase import Atoms

from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.model.graph import EdgeRange, structure_graph
from uniham.model.train import load_checkpoint, model_from_checkpoint


def predict(atoms: Atoms, ckpt_path, fermi: bool = True, dtype=torch.float32) -> Hamiltonian:
    from ase.data import atomic_numbers

    import uniham
    from uniham.dft.cp2k_basis import DEFAULT_BASIS, load_basis, overlap_over_range
    from uniham.properties.bands import resolve_fermi
    from uniham.structure import ensure_box

    t0 = time.perf_counter()
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt).to(dtype)
    model.eval()
    family = ckpt.get("basis_family") or DEFAULT_BASIS
    box = ensure_box(atoms)
    symbols = box.get_chemical_symbols()
    try:
        bases = {x: load_basis(x, family) for x in dict.fromkeys(symbols)}
    except UnihamError as exc:
        raise UnihamError(f"the model's basis {family}: {exc}") from None
    layout = model.layout
    index = {}
    for x, b in bases.items():
        try:
            index[x] = layout.element_index(b.orbital_basis())
        except ValueError:
            raise UnihamError(f"{x} ({b.orbital_basis()}) does not fit the model's orbital layout "
                              f"{dict(layout.counts)}") from None
    trained = {int(z) for z in ckpt.get("elements_seen", [])}
    graph = structure_graph(box, model.edge_range(), dtype)
    with torch.no_grad():
        hs, he = model(graph)
    hs, he = hs.double().numpy(), he.double().numpy()
    H = {}
    for a, x in enumerate(symbols):
        ia = index[x]
        H[(0, 0, 0, a, a)] = hs[a][np.ix_(ia, ia)]
    ei, ej = graph["edge_index"].numpy()
    for e, (a, b, s) in enumerate(zip(ei, ej, graph["shift"].numpy())):
        H[(int(s[0]), int(s[1]), int(s[2]), int(a), int(b))] = he[e][np.ix_(index[symbols[a]], index[symbols[b]])]
    t_net = time.perf_counter() - t0
    # H stops at the model cutoff, S at its own range (else S(k) can lose positive definiteness)
    S = overlap_over_range(box, bases, also=H)
    n_el = float(sum(bases[x].valence for x in symbols))
    ham = Hamiltonian(box, {x: b.orbital_basis() for x, b in bases.items()}, H, S, None, n_el, False)
    if fermi and ham.norb <= 3000:
        ham.fermi_level = resolve_fermi(ham)[0]
    ham.provenance = {"engine": "uniham-model", "versions": {"uniham": uniham.__version__, "torch": torch.__version__},
                      "checkpoint": str(ckpt_path), "checkpoint_step": ckpt.get("step"),
                      "model_config": ckpt["model_config"], "basis_family": family,
                      "untrained_elements": sorted({x for x in symbols if trained and atomic_numbers[x] not in trained}),
                      "beyond_cutoff": beyond_cutoff(bases, model.edge_range()),
                      "timing": {"network_s": t_net, "total_s": time.perf_counter() - t0}}
    return ham


# per-pair edge ranges at overlap <= this are taken as complete: db1's bands within 26 meV (max over 40
# structures, median 3.4 meV; bench/results/model_range_db1.json)
COMPLETE_RANGE_EPS = 1e-5


def beyond_cutoff(bases: dict, edges: float | EdgeRange, eps: float = 1e-6, margin: float = 1.0) -> dict[str, float]:
    """Elements whose H reaches well past the model's edges: {symbol: basis range (A) at overlap ``eps``}
    for ranges above the element's own edge range + margin. Their H blocks beyond it are missing from a
    prediction, and with DZVP-MOLOPT-SR that costs tens of meV to eV in the bands (Mg 17 meV, Na 92 meV,
    Y 20 eV with H cut at 10 A; bench/results/store_range_dft.json). ``edges``: the model's fixed cutoff (A)
    or :class:`EdgeRange`; per-pair ranges at overlap <= :data:`COMPLETE_RANGE_EPS` name no element."""
    from ase.data import atomic_numbers

    from uniham.dft.cp2k_basis import overlap_range

    edges = edges if isinstance(edges, EdgeRange) else EdgeRange(float(edges))
    if 0 < edges.eps <= COMPLETE_RANGE_EPS:
        return {}
    rng = overlap_range(bases, eps)
    own = {x: float(edges.pair(atomic_numbers[x], atomic_numbers[x])) for x in bases}
    return {x: round(rng[(x, x)], 1) for x in sorted(bases) if rng[(x, x)] > own[x] + margin}


def band_errors(pred: Hamiltonian, ref: Hamiltonian, n_k: int = 8, window: float = 3.0, seed: int = 0) -> dict:
    """Band energy errors (meV) of pred vs ref at random k, for ref bands within E_F +- window eV.

    "absolute": raw energies; "aligned": after shifting pred by the mean difference (the gauge constant);
    both the largest error, and "aligned_mean_abs" the mean over all compared band energies.
    """
    from uniham.properties.bands import resolve_fermi

    rng = np.random.default_rng(seed)
    ks = np.vstack([np.zeros(3), rng.uniform(-0.5, 0.5, (n_k - 1, 3))]) * ref.atoms.pbc  # Gamma included
    er, ep = ref.eigenvalues(ks), pred.eigenvalues(ks)
    nb = min(er.shape[1], ep.shape[1])
    er, ep = er[:, :nb], ep[:, :nb]
    ef = resolve_fermi(ref)[0]
    sel = np.abs(er - ef) <= window
    d = ep[sel] - er[sel]
    if not d.size:
        d = np.array([np.nan])
    return {"absolute_meV": float(1000 * np.abs(d).max()), "aligned_meV": float(1000 * np.abs(d - d.mean()).max()),
            "aligned_mean_abs_meV": float(1000 * np.abs(d - d.mean()).mean()),
            "mean_shift_meV": float(1000 * d.mean()), "n_bands": int(sel.sum()), "window_eV": window,
            "fermi_ref_eV": float(ef)}

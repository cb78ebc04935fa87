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

from uniham.conditioning import GUARD_TAU
from uniham.errors import UnihamError
from uniham.hamiltonian import Hamiltonian
from uniham.model.graph import EdgeRange, structure_graph
from uniham.model.checkpoint import load_checkpoint, model_from_checkpoint


class LoadedModel:
    """A checkpoint made ready for inference: the network (EMA weights, eval mode), its basis family, what it
    learns (``target``: "H" or "delta_h0" with the H0 settings) and the elements it was trained on."""

    def __init__(self, ckpt_path=None, dtype=torch.float32):
        """``ckpt_path``: a checkpoint file, the name of a shipped model, or None for the shipped default
        (:mod:`uniham.pretrained`; ``self.shipped`` is its index entry, None for a file of one's own)."""
        from uniham.dft.cp2k_basis import DEFAULT_BASIS
        from uniham.pretrained import resolve

        ckpt_path, self.shipped = resolve(ckpt_path)
        self.path = str(ckpt_path)
        self.ckpt = load_checkpoint(ckpt_path)
        self.model = model_from_checkpoint(self.ckpt, path=ckpt_path).to(dtype)
        self.model.eval()
        self.dtype = dtype
        self.family = self.ckpt.get("basis_family") or DEFAULT_BASIS
        self.target = self.ckpt.get("target") or {"kind": "H"}
        self.trained = {int(z) for z in self.ckpt.get("elements_seen", [])}

    def bases(self, symbols) -> dict:
        from uniham.dft.cp2k_basis import load_basis

        try:
            return {x: load_basis(x, self.family) for x in dict.fromkeys(symbols)}
        except UnihamError as exc:
            raise UnihamError(f"the model's basis {self.family}: {exc}") from None

    def blocks(self, box: Atoms, bases: dict, h0: dict | None = None) -> dict:
        """{(R1,R2,R3,i,j): block (eV, float64)} the network gives for every atom and every edge of its graph
        (H itself, or ΔH for a delta_h0 model); ``h0``: the H0 blocks a prior model takes as input."""
        layout, symbols = self.model.layout, box.get_chemical_symbols()
        index = {}
        for x, b in bases.items():
            try:
                index[x] = layout.element_index(b.orbital_basis())
            except ValueError:
                raise UnihamError(f"{x} ({b.orbital_basis()}) does not fit the model's orbital layout "
                                  f"{dict(layout.counts)}") from None
        graph = structure_graph(box, self.model.edge_range(), self.dtype)
        if self.model.cfg.prior:
            from uniham.model.prior import prior_sample

            if h0 is None:
                raise UnihamError("this model takes H0 as input: no H0 given")
            graph |= prior_sample(h0, symbols, {x: b.orbital_basis() for x, b in bases.items()}, graph, layout, self.dtype)
        with torch.no_grad():
            hs, he = self.model(graph)
        hs, he = hs.double().numpy(), he.double().numpy()
        H = {(0, 0, 0, a, a): hs[a][np.ix_(index[x], index[x])] for a, x in enumerate(symbols)}
        ei, ej = graph["edge_index"].numpy()
        for e, (a, b, s) in enumerate(zip(ei, ej, graph["shift"].numpy())):
            H[(int(s[0]), int(s[1]), int(s[2]), int(a), int(b))] = he[e][np.ix_(index[symbols[a]], index[symbols[b]])]
        return H


# elements whose ground state in db1's kind of cells is usually magnetic: db1 is spin-restricted, so a model
# trained on it gives their non-magnetic Hamiltonian
MAGNETIC = ("Cr", "Mn", "Fe", "Co", "Ni", "Ru", "Rh", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Eu", "Sm", "Nd", "Pr")


def predict(atoms: Atoms, ckpt_path=None, fermi: bool = True, dtype=torch.float32, strict: bool = True,
            s_guard: float = GUARD_TAU) -> Hamiltonian:
    """The Hamiltonian of ``atoms`` from the checkpoint (a path, a shipped model's name, None for the shipped
    default, or a :class:`LoadedModel`): the network's
    blocks (direct model), or H0 + the network's ΔH (delta_h0 model: H0 by CP2K over its full range).

    ``strict``: refuse elements the model never saw in training (one :class:`UnihamError` naming them).
    ``s_guard``: τ of the overlap guard of a delta_h0 model's ΔH (:mod:`uniham.conditioning`; 0 = off)."""
    from ase.data import atomic_numbers

    import uniham
    from uniham.conditioning import guarded_hamiltonian
    from uniham.dft.cp2k_basis import overlap_blocks, overlap_over_range
    from uniham.properties.bands import resolve_fermi
    from uniham.structure import ensure_box

    t0 = time.perf_counter()
    lm = ckpt_path if isinstance(ckpt_path, LoadedModel) else LoadedModel(ckpt_path, dtype)
    box = ensure_box(atoms)
    symbols = box.get_chemical_symbols()
    untrained = sorted({x for x in symbols if lm.trained and atomic_numbers[x] not in lm.trained})
    if strict and untrained:
        raise UnihamError(f"the model was not trained on {', '.join(untrained)} ({len(lm.trained)} elements covered); "
                          "it cannot predict this structure")
    bases = lm.bases(symbols)
    timing, h0, warnings = {}, None, []
    if lm.target["kind"] == "delta_h0":  # H = H0 + ΔH_pred: H0 over its full range, ΔH on the model's edges
        h0 = zeroth_step_prior(box, lm.target["h0"], lm.family)
        timing["h0_s"] = time.perf_counter() - t0
        trained_with, now = lm.target.get("h0_cp2k_versions") or [], h0.provenance["versions"]["cp2k"]
        if trained_with and now not in trained_with:
            warnings.append(f"H0 came from CP2K {now}, the model's training H0 from CP2K {', '.join(trained_with)}: "
                            "if that version changed H0, expect larger errors")
    t1 = time.perf_counter()
    H = lm.blocks(box, bases, h0.H if h0 is not None else None)
    t_net = time.perf_counter() - t1
    guard = None
    if h0 is not None:
        missing = [k for k in H if k not in h0.H]
        S = dict(h0.S)  # CP2K's own S on every H0 block (equal to the PySCF integrals to 1e-9)
        if missing:
            S |= overlap_blocks(symbols, box.positions, box.cell.array, bases, missing)
        # H0 + ΔH_pred with ΔH_pred kept off S(k)'s near-null space (uniham.conditioning)
        t2 = time.perf_counter()
        H, guard = guarded_hamiltonian(Hamiltonian(box, h0.basis, h0.H, S), H, s_guard)
        timing["guard_s"] = time.perf_counter() - t2
    else:  # H stops at the model cutoff, S at its own range (else S(k) can lose positive definiteness)
        S = overlap_over_range(box, bases, also=H)
    n_el = float(sum(bases[x].valence for x in symbols))
    ham = Hamiltonian(box, {x: b.orbital_basis() for x, b in bases.items()}, H, S, None, n_el, False)
    if fermi and ham.norb <= 3000:
        ham.fermi_level = resolve_fermi(ham)[0]
    ham.provenance = {"engine": "uniham-model", "versions": {"uniham": uniham.__version__, "torch": torch.__version__},
                      "checkpoint": lm.path, "shipped_model": lm.shipped, "checkpoint_step": lm.ckpt.get("step"),
                      "model_config": lm.ckpt["model_config"], "basis_family": lm.family, "target": lm.target,
                      "untrained_elements": untrained, "warnings": warnings, "overlap_guard": guard,
                      "magnetic_elements": sorted({x for x in symbols if x in MAGNETIC}),
                      # (a delta_h0 model's H0 has every block: nothing is cut)
                      "beyond_cutoff": {} if lm.target["kind"] == "delta_h0" else beyond_cutoff(bases, lm.model.edge_range()),
                      "timing": {"network_s": t_net, **timing, "total_s": time.perf_counter() - t0}}
    return ham


def zeroth_step_prior(box: Atoms, settings: dict, family: str) -> Hamiltonian:
    """H0 of ``box`` by CP2K with the settings the model's ΔH data was made with (basis, xc, EPS_DEFAULT,
    the default cutoff rule), so that H0 + ΔH_pred is what the model was trained to give."""
    from uniham.dft.cp2k_engine import Cp2kSettings, run_dft

    s = {k: v for k, v in settings.items() if k in Cp2kSettings.__dataclass_fields__ and k not in ("kmesh", "workdir")}
    h0 = run_dft(box, Cp2kSettings(**(s | {"basis": s.get("basis", family), "zeroth_step": True})))
    if not np.allclose(h0.atoms.positions, box.positions, atol=1e-3):
        raise UnihamError("CP2K moved the atoms of the H0 run: cannot add the network's blocks")
    return h0


# per-pair edge ranges at overlap <= this are taken as complete: db1's bands within 26 meV (max over 40
# structures, median 3.4 meV; bench/results/model_range/model_range_db1.json)
COMPLETE_RANGE_EPS = 1e-5


def beyond_cutoff(bases: dict, edges: float | EdgeRange, eps: float = 1e-6, margin: float = 1.0) -> dict[str, float]:
    """Elements whose H reaches well past the model's edges: {symbol: basis range (A) at overlap ``eps``}
    for ranges above the element's own edge range + margin. Their H blocks beyond it are missing from a
    prediction, and with DZVP-MOLOPT-SR that costs tens of meV to eV in the bands (Mg 17 meV, Na 92 meV,
    Y 20 eV with H cut at 10 A; bench/results/store_range/store_range_dft.json). ``edges``: the model's fixed cutoff (A)
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

"""k-point paths and meshes, always as fractional coordinates in the reciprocal basis of the
*input* cell (the cell the Hamiltonian's R vectors refer to).

The automatic path comes from seekpath (Hinuma et al. 2017) for the standardized primitive cell;
its points are mapped back through seekpath's rotation: k_cart(input) = Q^T k_cart(std), then
k_frac = A k_cart / 2 pi with A the input lattice (rows).
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

from uniham.errors import UnihamError

ALIASES = {"G": "GAMMA", "Γ": "GAMMA", "GAMMA": "GAMMA"}


def _seek(atoms: Atoms) -> dict:
    import seekpath

    cell = atoms.cell.array
    try:
        return seekpath.get_path((cell, atoms.get_scaled_positions(), atoms.numbers), with_time_reversal=True)
    except Exception as exc:
        raise UnihamError(f"seekpath could not classify the cell: {exc}") from None


def _std_to_input(atoms: Atoms, res: dict, frac_std: np.ndarray) -> np.ndarray:
    b_std = np.array(res["reciprocal_primitive_lattice"])  # rows, includes 2 pi
    k_std_cart = np.asarray(frac_std) @ b_std
    q = np.array(res.get("rotation_matrix", np.eye(3)))
    k_in_cart = k_std_cart @ q  # = (Q^T k)^T
    return k_in_cart @ atoms.cell.array.T / (2 * np.pi)


def special_points(atoms: Atoms, res: dict | None = None) -> dict[str, np.ndarray]:
    """Named high-symmetry points in the input cell's fractional reciprocal coordinates.

    ``res``: a seekpath result for ``atoms`` when the caller already has one.
    """
    if not atoms.pbc.any():
        return {"GAMMA": np.zeros(3)}
    res = res or _seek(atoms)
    pts = {name: _std_to_input(atoms, res, c) for name, c in res["point_coords"].items()}
    if not atoms.pbc.all():  # slab: keep in-plane points only
        pts = {n: k for n, k in pts.items() if np.allclose(k[~atoms.pbc], 0.0, atol=1e-8)}
    return pts


def auto_labels(atoms: Atoms) -> list[list[str]]:
    """Segments of labels, e.g. [["GAMMA","X"],["X","U"],...] from seekpath (slabs: in-plane only)."""
    if not atoms.pbc.any():
        return [["GAMMA"]]
    res = _seek(atoms)
    pts = special_points(atoms, res)
    segs = [list(s) for s in res["path"] if s[0] in pts and s[1] in pts]
    if not segs:
        raise UnihamError("no automatic k-path for this cell; give --kpath explicitly")
    return segs


def parse_kpath(text: str) -> list[list[str]]:
    """"G X W L G" -> one continuous segment list; "|" breaks: "G X | L G"."""
    segs = []
    for part in text.split("|"):
        names = [ALIASES.get(n.upper(), n) for n in part.split()]
        segs += [[a, b] for a, b in zip(names[:-1], names[1:])]
    if not segs:
        raise UnihamError(f"k-path {text!r} needs at least two points")
    return segs


def build_path(atoms: Atoms, segments: list[list[str]], npoints: int = 100) -> tuple[np.ndarray, list]:
    """Explicit k-points (n, 3) fractional along segments, ~``npoints`` total, and [index, label] pairs.
    A molecule (no periodic direction; ``auto_labels`` gives [["GAMMA"]]) has one k-point: its levels."""
    if not atoms.pbc.any() or all(len(s) == 1 for s in segments):
        if atoms.pbc.any():
            raise UnihamError("a k-path needs at least two points (e.g. --kpath \"G X\")")
        return np.zeros((1, 3)), [[0, "G"]]
    pts = special_points(atoms)
    upper = {n.upper(): n for n in pts}
    def get(name):
        key = upper.get(name.upper())
        if key is None:
            raise UnihamError(f"unknown k-point label {name!r}; known here: {', '.join(sorted(pts))}")
        return pts[key]
    recip = 2 * np.pi * atoms.cell.reciprocal()
    lengths = [np.linalg.norm((get(b) - get(a)) @ recip) for a, b in segments]
    total = sum(lengths) or 1.0
    kpts: list[np.ndarray] = []
    labels: list[list] = []
    for (a, b), ln in zip(segments, lengths):
        n = max(2, int(round(npoints * ln / total)) + 1)
        ka, kb = get(a), get(b)
        continuous = bool(labels) and labels[-1][1] == _pretty(a)
        seg = [ka + (kb - ka) * t for t in np.linspace(0, 1, n)]
        if continuous:
            seg = seg[1:]
        else:
            labels.append([len(kpts), _pretty(a)])
        kpts += seg
        labels.append([len(kpts) - 1, _pretty(b)])
    return np.array(kpts), labels


def _pretty(name: str) -> str:
    return "G" if name.upper() == "GAMMA" else name


def read_kpoints_file(path) -> np.ndarray:
    """One k-point per line, three fractional coordinates (extra columns ignored, # comments)."""
    try:
        data = np.loadtxt(path, ndmin=2, comments="#")
    except (OSError, ValueError) as exc:
        raise UnihamError(f"cannot read k-points file {path}: {exc}") from None
    if data.shape[1] < 3 or len(data) == 0:
        raise UnihamError(f"k-points file {path} needs three numbers per line")
    return data[:, :3]


def monkhorst_pack(mesh) -> np.ndarray:
    """Gamma-centred mesh (n1*n2*n3, 3) of fractional k-points."""
    axes = [np.arange(n) / n for n in mesh]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return g


def auto_mesh(atoms: Atoms, density: float = 0.15) -> tuple[int, int, int]:
    """Mesh with spacing <= ``density`` (1/Angstrom, 2 pi included) along each periodic direction."""
    recip = 2 * np.pi * atoms.cell.reciprocal()
    out = []
    for ax in range(3):
        if not atoms.pbc[ax]:
            out.append(1)
        else:
            out.append(max(1, int(np.ceil(np.linalg.norm(recip[ax]) / density))))
    return tuple(out)

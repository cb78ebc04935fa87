"""How one structure's H(R) is kept in a shard: the HDF5 group layout, H's fixed-point encoding and the
band check that chooses its step. :mod:`uniham.data.store` holds the folder around it (shards, manifest,
atomic writes).

One structure (HDF5 group named by its id):
    attrs  symbols (JSON), cell (3,3) A, positions (n,3) A, pbc (3,), fermi_eV, n_electrons, basis
    keys   (nb, 5) int32  R1 R2 R3 i j (0-based atoms), only the half i < j, or i == j with R >= 0
           (lexicographically); the other half is H_ji(-R) = H_ij(R)^T
    Hq     (sum of block sizes,) uint32: blocks concatenated row-major in key order, as integers
           k = rint(H / H_step_eV) in zigzag order (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...: small |H| give
           small numbers whatever the sign), one chunk per structure, shuffle, gzip 6. The step (attr
           H_step_eV, also in the manifest record) is the recipe's [store] ``h_step`` (1e-5 eV by default),
           or with ``h_band_tol`` per structure the coarsest step that keeps its bands within that
           (:func:`choose_step`; db1 from its 2,110th structure on). Since uniham 0.1.3
           the keys (and blocks) are ordered by interatomic distance (3-4% fewer bytes than lexicographic:
           gzip adapts to the falling magnitudes); readers take any order. Shards written by uniham <= 0.1.1
           hold ``H`` instead: float32, HDF5 scale-offset to 1e-5 eV, shuffle, gzip 6 (36% larger for the
           same precision); both are read, and ``uniham dataset repack`` converts them (values move by <= 5e-6
           eV: the scale-offset grid starts at each chunk's minimum, the zigzag grid at zero).
S is not stored: it is recomputed from the CP2K basis definition by PySCF integrals
(:func:`uniham.dft.cp2k_basis.overlap_blocks`).
"""
from __future__ import annotations

import json

import numpy as np

from uniham.errors import UnihamError

H_STEP_EV = 1e-5  # default fixed-point step of stored H (eV); a recipe's [store] h_step overrides it


def half_keys(keys) -> list[tuple]:
    """The stored half of a Hermitian set of blocks: i < j, or i == j and R >= 0 lexicographically."""
    return [k for k in keys if k[3] < k[4] or (k[3] == k[4] and tuple(k[:3]) >= (0, 0, 0))]


def block_sizes(symbols: list[str], basis: str, keys: np.ndarray) -> np.ndarray:
    """(nb,) number of H elements of each block ``keys`` (nb, 5) names, from the CP2K basis definition."""
    from uniham.dft.cp2k_basis import load_basis

    dims = {x: load_basis(x, basis).orbital_basis().dim for x in dict.fromkeys(symbols)}
    n = np.array([dims[x] for x in symbols], dtype=np.int64)
    keys = np.asarray(keys, dtype=np.int64).reshape(-1, 5)
    return n[keys[:, 3]] * n[keys[:, 4]]


def by_distance(data: dict) -> dict:
    """``data`` with its blocks (keys and the flat H) reordered by interatomic distance |r_j + R - r_i|
    (stable: ties keep their order). Lossless; gzip then meets falling magnitudes and stores 3-4% fewer bytes."""
    keys = np.asarray(data["keys"], dtype=np.int64).reshape(-1, 5)
    if not len(keys):
        return data
    pos, cell = np.asarray(data["positions"], float), np.asarray(data["cell"], float)
    dist = np.linalg.norm(pos[keys[:, 4]] + keys[:, :3] @ cell - pos[keys[:, 3]], axis=1)
    order = np.argsort(np.round(dist, 6), kind="stable")
    sizes = block_sizes(data["symbols"], data["basis"], keys)
    offs = np.concatenate([[0], np.cumsum(sizes)])
    h = np.asarray(data["H"]).ravel()
    if offs[-1] != h.size:
        raise UnihamError(f"H has {h.size} elements but its {len(keys)} blocks need {offs[-1]}")
    idx = np.concatenate([np.arange(offs[i], offs[i + 1]) for i in order])
    return data | {"keys": keys[order].astype(np.int32), "H": h[idx]}


def write_group(h5, gid: str, data: dict, step: float | None = None) -> None:
    """Write one structure (dict from :func:`uniham.data.build.compute`, blocks in the order given: the build
    and :meth:`uniham.data.store.DatasetStore.repack` give them by distance) as group ``gid`` of an open file,
    H rounded to ``step`` eV (default: ``data["H_step_eV"]``, else :data:`H_STEP_EV`)."""
    step = float(step or data.get("H_step_eV") or H_STEP_EV)
    if not 0 < step <= 1e-3:
        raise UnihamError(f"H step {step} eV: expected 0 < step <= 1e-3 eV")
    g = h5.create_group(gid)
    for name in ("cell", "positions", "pbc"):
        g.attrs[name] = np.asarray(data[name])
    g.attrs["symbols"] = json.dumps(data["symbols"])
    g.attrs["fermi_eV"] = data["fermi_eV"]
    g.attrs["n_electrons"] = data["n_electrons"]
    g.attrs["basis"] = data["basis"]
    g.create_dataset("keys", data=np.asarray(data["keys"], dtype=np.int32), compression="gzip", shuffle=True)
    g.create_dataset("Hq", **_compressed(encode_h(data["H"], step)))
    g.attrs["H_step_eV"] = step
    g.attrs["H_encoding"] = "Hq: uint32 zigzag of k = rint(H / H_step_eV), eV; blocks by distance; shuffle, gzip 6"


# k-points (fractional) at which the rounding of H to a step is checked against the unrounded bands: Gamma,
# where the rounding errors of all images add in phase, and 5 random ones
ROUNDING_KPTS = np.vstack([np.zeros(3), np.random.default_rng(2026).uniform(-0.5, 0.5, (5, 3))])
STEP_LADDER = (1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6)  # eV: what a band tolerance chooses from
FINEST_STEP = 1e-6  # eV: a build's finest (|H| < 2147 eV in uint32 zigzag). Few need it: hcp Be's bands
                    # move by 5 meV at Gamma already at 1e-5 eV (diffuse basis, S(k) near singular)


def rounding_band_errors(ham, keys, values, steps) -> dict[float, float]:
    """{step: max |E(rounded) - E| in meV}: the bands E <= E_F + 5 eV at :data:`ROUNDING_KPTS` of the stored
    blocks ``keys`` (nb, 5) with ``values`` (flat, eV, float64) against the same blocks rounded to each step
    (eV); S is ``ham.S``. Rounding errors add up coherently over the thousands of small far elements (a long
    range such as Cs's 17 A): 5e-5 eV leaves most structures within 1 meV, Cs metal at ~10 meV."""
    err = _rounding_check(ham, keys, values)
    return {s: err(s) for s in steps}


def _rounding_check(ham, keys, values):
    """The function step -> band error (meV) of :func:`rounding_band_errors`, the reference bands computed once."""
    from uniham.hamiltonian import Hamiltonian

    dims = [ham.basis[x].dim for x in ham.atoms.get_chemical_symbols()]
    keys = [tuple(k) for k in np.asarray(keys).tolist()]
    offs = np.concatenate([[0], np.cumsum([dims[k[3]] * dims[k[4]] for k in keys])])

    def bands(flat):
        H = {k: flat[offs[i]:offs[i + 1]].reshape(dims[k[3]], dims[k[4]]) for i, k in enumerate(keys)}
        for k, blk in list(H.items()):
            H.setdefault((-k[0], -k[1], -k[2], k[4], k[3]), blk.T)
        H |= {k: np.zeros_like(v) for k, v in ham.S.items() if k not in H}
        return Hamiltonian(ham.atoms, ham.basis, H, ham.S, ham.fermi_level).eigenvalues(ROUNDING_KPTS)

    flat = np.asarray(values, dtype=np.float64).ravel()
    ref = bands(flat)
    window = ref <= (ham.fermi_level if ham.fermi_level is not None else np.inf) + 5.0
    return lambda s: float(1e3 * np.abs(bands(np.rint(flat / s) * s) - ref)[window].max(initial=0.0))


def choose_step(ham, keys, values, coarsest: float, tol_meV: float, finest: float = H_STEP_EV,
                on_grid: bool = False) -> tuple[float, float]:
    """(step eV, its band error meV): the coarsest step of ``coarsest`` and the :data:`STEP_LADDER` below it
    (down to ``finest``) whose rounding keeps the bands within ``tol_meV`` (see :func:`rounding_band_errors`);
    ``finest`` if none does. ``on_grid``: ``values`` are already multiples of ``finest`` (a repack), so only
    odd multiples of it are tried: an even one (2e-5 from 1e-5) meets exact ties at every odd value and
    rounds the many +-1e-5 elements all to zero, a coherent error as large as a coarser step's."""
    steps = sorted({coarsest, finest} | {s for s in STEP_LADDER if finest <= s < coarsest}, reverse=True)
    if on_grid:
        steps = [s for s in steps if round(s / finest) % 2 == 1]
    check = _rounding_check(ham, keys, values)
    for s in steps:
        err = check(s)
        if err <= tol_meV or s == steps[-1]:
            return s, err
    raise AssertionError("unreachable")


def encode_h(h, step: float = H_STEP_EV) -> np.ndarray:
    """H (eV, any shape) -> flat uint32: zigzag of k = rint(H / step). Fixed point, then zigzag so that
    the many small elements of either sign become small integers whose high bytes are zero: with byte
    shuffle and gzip, 0.64x the bytes of HDF5's scale-offset filter at the same 1e-5 eV (db1 sample of 30,
    bench/store_encoding.py)."""
    k = np.rint(np.asarray(h, dtype=np.float64).ravel() / step)
    if k.size and np.abs(k).max() >= 2 ** 31:
        raise UnihamError(f"|H| = {np.abs(k).max() * step:.0f} eV: beyond the store's fixed-point range")
    k = k.astype(np.int64)
    return ((k << 1) ^ (k >> 63)).astype(np.uint32)


def decode_h(z: np.ndarray, step: float = H_STEP_EV) -> np.ndarray:
    """Inverse of :func:`encode_h`: flat float64 H in eV."""
    z = np.asarray(z).astype(np.int64)
    return ((z >> 1) ^ -(z & 1)).astype(np.float64) * step


def _compressed(a: np.ndarray) -> dict:
    # one chunk per structure: gzip sees the whole array (0.85x the bytes of h5py's automatic chunks)
    return {"data": a} if not a.size else {"data": a, "chunks": a.shape, "shuffle": True, "compression": "gzip",
                                           "compression_opts": 6}


def read_group(g) -> dict:
    return {"symbols": json.loads(g.attrs["symbols"]), "cell": g.attrs["cell"], "positions": g.attrs["positions"],
            "pbc": g.attrs["pbc"], "fermi_eV": float(g.attrs["fermi_eV"]),
            "n_electrons": float(g.attrs["n_electrons"]), "basis": str(g.attrs["basis"]),
            "keys": g["keys"][()],
            "H": decode_h(g["Hq"][()], float(g.attrs["H_step_eV"])) if "Hq" in g else g["H"][()]}

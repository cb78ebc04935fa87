"""Dataset recipes: a TOML file that deterministically yields the structures of a database.

A recipe names elements, structure sources, perturbations, DFT settings and a seed. The same recipe
always yields the same structures (same ids, same coordinates): every random draw comes from a
generator seeded by (recipe seed, source index). Sources nobody here wrote:

* ``elements``   -- ASE's reference crystal structure of each element (``ase.build.bulk``),
* ``prototypes`` -- pymatgen's 288 AFLOW prototypes, species substituted by elements whose common
  oxidation states balance the charge (or all metals: intermetallics), lattice scaled so the
  shortest bond is the sum of covalent radii,
* ``molecules``  -- ASE's g2 molecule collection (boxed with vacuum by the engine),
* ``layers``     -- 2D monolayers: ``ase.build.mx2`` (MoS2-type) and hexagonal AB layers
  (``ase.build.graphene``-type), vacuum along z.

Each source can add copies with random strain (|e_ij| <= ``strain``), Gaussian rattles (sigma drawn
in ``rattle``, Angstrom) and small supercells. Structures that the engine cannot treat (element without
basis/pseudopotential, too many atoms/electrons/orbitals) are listed as skipped with the reason.

Example::

    name = "demo"
    seed = 7
    elements = ["H", "C", "N", "O", "Si", "Cu"]      # or "all": every element with a basis
    [dft]                                           # uniham.dft.cp2k_engine.Cp2kSettings fields
    basis = "DZVP-MOLOPT-SR-GTH"
    [limits]
    max_atoms = 8
    max_orbitals = 200
    [[sources]]
    kind = "elements"
    copies = 2            # perturbed copies per element (plus the unperturbed one if keep_ideal)
    strain = 0.03
    rattle = [0.02, 0.1]
    supercells = [[1, 1, 1], [2, 1, 1]]
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from uniham.errors import UnihamError

SOURCE_KINDS = ("elements", "prototypes", "molecules", "layers")
SOURCE_KEYS = {"kind", "copies", "keep_ideal", "strain", "rattle", "supercells", "max_atoms", "per_prototype",
               "names", "metals", "chalcogens", "pairs", "vacuum", "elements"}


@dataclass
class Entry:
    """One planned structure."""

    id: str
    source: str
    label: str  # element / prototype / molecule / layer name it came from
    atoms: Atoms
    perturbation: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        a = self.atoms
        return {"id": self.id, "source": self.source, "label": self.label, "formula": a.get_chemical_formula(),
                "symbols": a.get_chemical_symbols(), "cell": np.round(a.cell.array, 10).tolist(),
                "positions": np.round(a.positions, 10).tolist(), "pbc": [bool(p) for p in a.pbc],
                "perturbation": self.perturbation}

    @staticmethod
    def from_json(d: dict) -> Entry:
        atoms = Atoms(d["symbols"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])
        return Entry(d["id"], d["source"], d["label"], atoms, d.get("perturbation", {}))


@dataclass
class Recipe:
    name: str
    seed: int
    elements: list[str]
    dft: dict
    limits: dict
    store: dict
    sources: list[dict]
    text: str

    @property
    def hash(self) -> str:
        """The dataset's identity: what fixes the structures and their DFT, i.e. every table but [store]
        (how H is kept: range, encoding), which may change while a database grows; each structure's record
        says how it was stored. Comments and layout of the file do not count."""
        return identity_hash(tomllib.loads(self.text))


def identity_hash(doc: dict) -> str:
    """Hash of a parsed recipe without its [store] table (see :attr:`Recipe.hash`)."""
    ident = {k: v for k, v in doc.items() if k != "store"}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def load_recipe(path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text()
        d = tomllib.loads(text)
    except FileNotFoundError:
        raise UnihamError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise UnihamError(f"{path}: a folder, not a recipe file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UnihamError(f"{path}: not a valid TOML recipe: {exc}") from None
    unknown = set(d) - {"name", "seed", "elements", "dft", "limits", "store", "sources"}
    if unknown:
        raise UnihamError(f"{path}: unknown recipe keys {sorted(unknown)}")
    for s in d.get("sources", []):
        if s.get("kind") not in SOURCE_KINDS:
            raise UnihamError(f"{path}: source kind {s.get('kind')!r} is not one of {SOURCE_KINDS}")
        if set(s) - SOURCE_KEYS:
            raise UnihamError(f"{path}: unknown keys {sorted(set(s) - SOURCE_KEYS)} in a {s['kind']} source")
    if not d.get("sources"):
        raise UnihamError(f"{path}: the recipe has no [[sources]]")
    store = d.get("store", {})
    known = {"cutoff", "range_eps", "h_step", "h_band_tol"}
    if set(store) - known:
        raise UnihamError(f"{path}: unknown [store] keys {sorted(set(store) - known)} (known: {', '.join(sorted(known))})")
    for key, hi in (("cutoff", 100.0), ("range_eps", 1.0), ("h_step", 1e-3), ("h_band_tol", 100.0)):
        v = store.get(key)
        if v is not None and not (isinstance(v, (int, float)) and 0 < v <= hi):
            raise UnihamError(f"{path}: [store] {key} = {v!r}: expected a number in (0, {hi:g}]")
    from uniham.dft.cp2k_basis import DEFAULT_BASIS, elements_with_basis

    basis = d.get("dft", {}).get("basis", DEFAULT_BASIS)
    covered = elements_with_basis(basis)
    els = d.get("elements", "all")
    if els == "all":
        els = covered
    bad = [e for e in els if e not in atomic_numbers]
    if bad:
        raise UnihamError(f"{path}: unknown elements {bad}")
    return Recipe(d.get("name", path.stem), int(d.get("seed", 0)), list(els), d.get("dft", {}),
                  d.get("limits", {}), d.get("store", {}), d["sources"], text)


# ----------------------------------------------------------------------------- perturbations
def perturb(atoms: Atoms, rng: np.random.Generator, strain: float, rattle) -> tuple[Atoms, dict]:
    """Random symmetric strain (|e_ij| <= strain) on periodic axes, then a Gaussian rattle."""
    a = atoms.copy()
    info = {}
    if strain:
        e = rng.uniform(-strain, strain, (3, 3))
        e = (e + e.T) / 2
        mask = np.outer(a.pbc, a.pbc)
        e = e * mask
        a.set_cell(a.cell.array @ (np.eye(3) + e), scale_atoms=True)
        info["strain"] = np.round(e, 6).tolist()
    if rattle:
        lo, hi = (rattle, rattle) if np.isscalar(rattle) else rattle
        sigma = float(rng.uniform(lo, hi))
        a.positions += rng.normal(0.0, sigma, a.positions.shape)
        info["rattle_sigma"] = round(sigma, 6)
    return a, info


def _variants(base: Atoms, src: dict, rng, prefix: str, label: str, source: str) -> list[Entry]:
    out = []
    cells = src.get("supercells", [[1, 1, 1]])
    for sc in cells:
        atoms = base.repeat(tuple(int(x) for x in sc)) if any(x != 1 for x in sc) else base.copy()
        tag = "x".join(map(str, sc))
        if src.get("keep_ideal", True):
            out.append(Entry(f"{prefix}-{tag}-0", source, label, atoms, {"supercell": sc}))
        for c in range(int(src.get("copies", 0))):
            a, info = perturb(atoms, rng, float(src.get("strain", 0.0)), src.get("rattle", 0.0))
            out.append(Entry(f"{prefix}-{tag}-{c + 1}", source, label, a, {"supercell": sc} | info))
    return out


# ----------------------------------------------------------------------------- sources
def _elements_source(recipe: Recipe, src: dict, rng, skipped: list) -> list[Entry]:
    from ase.build import bulk

    out = []
    for sym in src.get("elements", recipe.elements):
        try:
            base = bulk(sym)
        except (ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
            skipped.append({"source": "elements", "label": sym, "reason": f"ase.build.bulk has no crystal: {exc}"})
            continue
        out += _variants(base, src, rng, f"el-{sym}", sym, "elements")
    return out


def _covalent_scale(atoms: Atoms) -> Atoms:
    """Scale the cell so the shortest interatomic distance equals the sum of covalent radii."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, 6.0)
    if not len(d):
        return atoms
    z = atoms.numbers
    ratio = float(np.min(d / (covalent_radii[z[i]] + covalent_radii[z[j]])))
    out = atoms.copy()
    out.set_cell(out.cell.array / ratio, scale_atoms=True)
    return out


def _balanced(species_counts: list[tuple[str, int]]) -> bool:
    from pymatgen.core import Element

    els = [Element(s) for s, _ in species_counts]
    if all(e.is_metal for e in els):
        return True
    states = [e.common_oxidation_states or (0,) for e in els]
    import itertools

    return any(sum(o * n for o, (_, n) in zip(combo, species_counts)) == 0 and any(o != 0 for o in combo)
               for combo in itertools.product(*states))


def aflow_prototypes(max_atoms: int) -> list[dict]:
    """pymatgen's AFLOW prototype library, small cells first (deterministic order)."""
    from importlib.resources import files

    from monty.serialization import loadfn

    data = loadfn(str(files("pymatgen.analysis.prototypes") / "aflow_prototypes.json.gz"))
    out = []
    for d in data:
        s = d["snl"].structure
        if len(s) <= max_atoms:
            out.append({"aflow": d["tags"]["aflow"], "mineral": d["tags"].get("mineral", ""), "structure": s})
    return sorted(out, key=lambda p: (len(p["structure"]), p["aflow"]))


def _prototype_source(recipe: Recipe, src: dict, rng, skipped: list) -> list[Entry]:
    from pymatgen.io.ase import AseAtomsAdaptor

    out = []
    pool = list(src.get("elements", recipe.elements))
    for proto in aflow_prototypes(int(src.get("max_atoms", 4))):
        s = proto["structure"]
        species = sorted({str(sp) for sp in s.species})
        counts = [sum(1 for sp in s.species if str(sp) == x) for x in species]
        made, tries, picked = 0, 0, set()
        while made < int(src.get("per_prototype", 3)) and tries < 200:
            tries += 1
            pick = [str(x) for x in rng.choice(pool, size=len(species), replace=False)] if len(pool) >= len(species) else None
            if pick is None or tuple(pick) in picked or not _balanced(list(zip(pick, counts))):
                continue
            picked.add(tuple(pick))
            sub = s.copy()
            sub.replace_species({sp: el for sp, el in zip(species, pick)})
            atoms = _covalent_scale(AseAtomsAdaptor.get_atoms(sub))
            label = proto["aflow"]
            out += _variants(atoms, src | {"supercells": [[1, 1, 1]]}, rng,
                             f"proto-{label}-{''.join(pick)}", label, "prototypes")
            made += 1
        if made == 0:
            skipped.append({"source": "prototypes", "label": proto["aflow"],
                            "reason": "no charge-balanced substitution from the element list"})
    return out


def _molecule_source(recipe: Recipe, src: dict, rng, skipped: list) -> list[Entry]:
    from ase.build import molecule
    from ase.collections import g2

    out = []
    names = src.get("names") or sorted(g2.names)
    for name in names:
        atoms = molecule(name)
        atoms.pbc = False
        missing = sorted(set(atoms.get_chemical_symbols()) - set(recipe.elements))
        if missing:
            skipped.append({"source": "molecules", "label": name, "reason": f"elements {missing} not in the recipe"})
            continue
        out += _variants(atoms, src | {"strain": 0.0, "supercells": [[1, 1, 1]]}, rng, f"mol-{name}", name,
                         "molecules")
    return out


def _layer_source(recipe: Recipe, src: dict, rng, skipped: list) -> list[Entry]:
    from ase.build import graphene, mx2

    out = []
    vacuum = float(src.get("vacuum", 10.0))
    for m in src.get("metals", []):
        for x in src.get("chalcogens", []):
            if m not in recipe.elements or x not in recipe.elements:
                skipped.append({"source": "layers", "label": f"{m}{x}2", "reason": "element not in the recipe"})
                continue
            d = covalent_radii[atomic_numbers[m]] + covalent_radii[atomic_numbers[x]]
            a = d * 1.31  # 2H-MoS2 geometry: a = 3.16 A for a M-X bond of 2.41 A
            atoms = mx2(f"{m}{x}2", kind="2H", a=a, thickness=a * 0.99, vacuum=vacuum)
            atoms.pbc = (True, True, False)
            out += _variants(atoms, src, rng, f"layer-{m}{x}2", f"2H-{m}{x}2", "layers")
    for pair in src.get("pairs", []):
        if any(e not in recipe.elements for e in pair):
            skipped.append({"source": "layers", "label": "".join(pair), "reason": "element not in the recipe"})
            continue
        d = covalent_radii[atomic_numbers[pair[0]]] + covalent_radii[atomic_numbers[pair[1]]]
        atoms = graphene(formula="".join(pair), a=d * np.sqrt(3), vacuum=vacuum)
        atoms.pbc = (True, True, False)
        out += _variants(atoms, src, rng, f"layer-{''.join(pair)}", f"hex-{''.join(pair)}", "layers")
    return out


_SOURCES = {"elements": _elements_source, "prototypes": _prototype_source, "molecules": _molecule_source,
            "layers": _layer_source}


def plan(recipe: Recipe) -> tuple[list[Entry], list[dict]]:
    """Every structure of the recipe, in a deterministic order, and the skipped ones with reasons."""
    from uniham.dft.cp2k_basis import DEFAULT_BASIS, load_basis

    entries: list[Entry] = []
    skipped: list[dict] = []
    for n, src in enumerate(recipe.sources):
        rng = np.random.default_rng([recipe.seed, n])
        entries += _SOURCES[src["kind"]](recipe, src, rng, skipped)
    basis = recipe.dft.get("basis", DEFAULT_BASIS)
    lim = recipe.limits
    keep, seen = [], set()
    for e in entries:
        symbols = e.atoms.get_chemical_symbols()
        reason = None
        try:
            bases = {x: load_basis(x, basis) for x in set(symbols)}
        except UnihamError as exc:
            reason = str(exc)
        if reason is None:
            n_orb = sum(bases[x].orbital_basis().dim for x in symbols)
            n_el = sum(bases[x].valence or 0 for x in symbols)
            if len(symbols) > lim.get("max_atoms", 10 ** 9):
                reason = f"{len(symbols)} atoms > max_atoms {lim['max_atoms']}"
            elif n_orb > lim.get("max_orbitals", 10 ** 9):
                reason = f"{n_orb} orbitals > max_orbitals {lim['max_orbitals']}"
            elif n_el > lim.get("max_electrons", 10 ** 9):
                reason = f"{n_el} electrons > max_electrons {lim['max_electrons']}"
        if reason is None and len(e.atoms) > 1:
            from ase.neighborlist import neighbor_list

            d = neighbor_list("d", e.atoms if any(e.atoms.pbc) else _boxed(e.atoms), 0.5)
            if len(d):
                reason = "atoms closer than 0.5 A"
        if e.id in seen:
            reason = "duplicate id"
        seen.add(e.id)
        if reason:
            skipped.append({"source": e.source, "label": e.label, "id": e.id, "reason": reason})
        else:
            keep.append(e)
    return keep, skipped


def _boxed(atoms: Atoms) -> Atoms:
    from uniham.structure import ensure_box

    return ensure_box(atoms)


def plan_summary(entries: list[Entry], skipped: list[dict]) -> dict:
    from collections import Counter

    per_el: Counter = Counter()
    for e in entries:
        for x in set(e.atoms.get_chemical_symbols()):
            per_el[x] += 1
    return {"n_structures": len(entries), "n_skipped": len(skipped),
            "per_source": dict(Counter(e.source for e in entries)),
            "per_element": dict(sorted(per_el.items())),
            "per_prototype": dict(Counter(e.label for e in entries if e.source == "prototypes")),
            "skip_reasons": dict(Counter(s["reason"].split(":")[0] for s in skipped))}


def plan_json(recipe: Recipe, entries: list[Entry], skipped: list[dict]) -> str:
    return json.dumps({"recipe": recipe.name, "recipe_hash": recipe.hash, "seed": recipe.seed,
                       "summary": plan_summary(entries, skipped), "structures": [e.to_json() for e in entries],
                       "skipped": skipped}, indent=1)

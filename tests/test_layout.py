"""The house: uniham's own imports (module level and inside functions) flow one way between its rooms, so no
cycle can form. A room may import itself and any room of a lower rank, never one above it."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "uniham"

# lower ranks are nearer the ground floor; rooms of one rank may not import each other
RANK = {"errors": 0, "units": 0,
        "structure": 1, "basis": 1, "pretrained": 1,
        "hamiltonian": 2,
        "properties": 3, "conditioning": 3,
        "dft": 4,
        "io": 5,
        "data": 6,
        "model": 7,
        "api": 8, "cli": 9}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "uniham"


def uniham_imports() -> list[tuple[str, str, str]]:
    """(importing file, importing room, imported room) for every import of uniham's own modules."""
    out = []
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC.parent).with_suffix("")
        room = _room(".".join(rel.parts).removesuffix(".__init__"))
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "uniham":
                targets = [_room(node.module)] if node.module != "uniham" else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [_room(a.name) for a in node.names if a.name.split(".")[0] == "uniham"]
            else:
                continue
            out += [(str(rel), room, t) for t in targets]
    return out


def test_every_room_has_a_rank():
    rooms = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert rooms <= set(RANK), f"rooms without a rank in tests/test_layout.py: {sorted(rooms - set(RANK))}"


def test_imports_flow_one_way():
    # the package root (uniham/__init__: __version__, the API's names) may be imported from anywhere
    upward = [f"{f}: {a} -> {b}" for f, a, b in uniham_imports()
              if a != b and b not in ("uniham", "__version__") and a in RANK and RANK.get(b, 99) >= RANK[a]]
    assert not upward, "imports against the flow (or between rooms of one rank):\n" + "\n".join(sorted(set(upward)))

"""MkDocs hooks: pages generated from the code, so that they cannot drift from it.

- ``cli.md``: the marker ``<!-- uniham-cli-help -->`` becomes every subcommand's ``--help``, from the parser
  the ``uniham`` command itself builds.
- ``models/cards/NAME.md``: the model cards shipped inside the package (``src/uniham/pretrained/*.md``).
- ``benchmarks.md``: the marker ``<!-- uniham-bench-index -->`` becomes the index of ``bench/results``: per
  folder the benchmark script's own description and every result with its provenance.
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- uniham-cli-help -->"
BENCH_MARKER = "<!-- uniham-bench-index -->"


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "uniham"):
    """(command line, parser) for every leaf subcommand, depth first."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield prefix, parser
        return
    for name, sub in actions[0].choices.items():
        yield from _subparsers(sub, f"{prefix} {name}")


def cli_reference() -> str:
    from uniham.cli import build_parser

    parts = []
    for cmd, p in _subparsers(build_parser()):
        buf = io.StringIO()
        with redirect_stdout(buf):
            p.print_help()
        parts.append(f"### `{cmd}`\n\n```text\n{buf.getvalue().rstrip()}\n```\n")
    return "\n".join(parts)


def _script_summary(script: Path | None) -> str:
    """The first paragraph of a benchmark script's docstring (Python) or leading comment (shell)."""
    if script is None or not script.exists():
        return "(no script: a training or evaluation run, see the provenance)"
    text = script.read_text()
    if script.suffix == ".py":
        doc = ast.get_docstring(ast.parse(text)) or ""
    else:
        doc = "\n".join(line.lstrip("# ") for line in text.splitlines()[1:] if line.startswith("#"))
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def bench_index() -> str:
    parts = []
    for folder in sorted(p for p in (ROOT / "bench/results").iterdir() if p.is_dir()):
        prov = json.loads((folder / "provenance.json").read_text()) if (folder / "provenance.json").exists() else {}
        script = prov.get("script")
        parts.append(f"### {folder.name}\n\n" + (f"`{script}`: " if script else "")
                     + _script_summary(ROOT / script if script else None) + "\n")
        rows = ["| result | commit | date | machine |", "|---|---|---|---|"]
        for name, meta in prov.get("results", {}).items():
            commit = meta.get("commit") or f"{meta.get('commit_added', '?')} (added)"
            machine = meta.get("machine")
            if isinstance(machine, dict):
                machine = f"{machine.get('node', '?')}, {machine.get('cpus', '?')} CPUs"
            rows.append(f"| `bench/results/{folder.name}/{name}` | {commit} | {str(meta.get('when', '?'))[:10]} | {machine} |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def on_files(files, config):
    for card in sorted((ROOT / "src/uniham/pretrained").glob("*.md")):
        text = card.read_text()
        # a card links the report with a path from the repository root; on the site it is a sibling page
        text = re.sub(r"\]\((?:\.\./)*docs/(models/[^)]+)\)", r"](../../\1)", text)
        files.append(File.generated(config, f"models/cards/{card.name}", content=text))
    return files


def on_page_markdown(markdown: str, page, config, files):
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, bench_index())
    return markdown

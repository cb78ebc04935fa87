"""Run one benchmark case in its own subprocess (its own peak RSS) and return its last JSON line."""
from __future__ import annotations

import json
import subprocess
import sys


def run_case(cmd: list[str], timeout: float, label: dict) -> dict:
    """The case's JSON row, or ``label`` with an "error" (its last stderr line, or the timeout);
    the row is echoed to stderr as it comes."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        row = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else \
            {**label, "error": p.stderr.strip().splitlines()[-1:]}
    except subprocess.TimeoutExpired:
        row = {**label, "error": f"over {timeout} s"}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row

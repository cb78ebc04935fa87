"""What every benchmark's JSON records about its run: the command, the commit (with a dirty flag) and the machine."""
import os
import platform
import subprocess
import sys
import time


def run_meta() -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, timeout=10,
                                  cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "machine": {"node": platform.node(), "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version()},
            "when": time.strftime("%Y-%m-%dT%H:%M:%S")}

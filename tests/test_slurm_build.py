"""scripts/slurm_build.py: the database's DFT on SLURM worker jobs through dask-jobqueue.

No SLURM here: ``sbatch`` and ``scancel`` are stood in for by two shell scripts that run a job script in the
background on this machine and kill it, which is all dask-jobqueue asks of them. The worker that job starts,
its CP2K runs and the store are real."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uniham.data.store import DatasetStore

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_build.py"
TINY = Path(__file__).parent / "data" / "tiny_recipe.toml"

pytest.importorskip("dask_jobqueue", reason="dask-jobqueue (the [test] and [cluster] extras) is not installed")

SBATCH = """#!/usr/bin/env bash
# stand-in for sbatch: run (a copy of: it is deleted once submitted) the job script, the last argument,
# in the background
n=$(( $(ls "{jobs}" | grep -c '[.]pid$') + 1001 ))
cp "${{@: -1}}" "{jobs}/$n.sh"
setsid bash "{jobs}/$n.sh" > "{jobs}/$n.log" 2>&1 < /dev/null &
echo $! > "{jobs}/$n.pid"
echo "Submitted batch job $n"
"""
SCANCEL = """#!/usr/bin/env bash
# stand-in for scancel: kill the process group of each job id given
for n in "$@"; do echo $n >> "{jobs}/cancelled"; kill -TERM -- -$(cat "{jobs}/$n.pid") 2>/dev/null; done
exit 0
"""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_job_script():
    """Each worker job: one core, the partition/account/walltime asked for, OMP_NUM_THREADS=1 and the
    prologue before the Dask worker starts."""
    r = _run(TINY, "--out", "unused", "--queue", "cpu", "--account", "proj", "--walltime", "02:00:00",
             "--memory", "2GB", "--prologue", "module load cp2k", "--sbatch=--constraint=avx2",
             "--host", "127.0.0.1", "--print-job-script")
    assert r.returncode == 0, r.stderr
    s = r.stdout
    for line in ("#SBATCH -p cpu", "#SBATCH -A proj", "#SBATCH -t 02:00:00", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --constraint=avx2", "#SBATCH -J uniham-dft"):
        assert line in s.splitlines(), (line, s)
    body = s.splitlines()
    i_omp, i_mod = body.index("export OMP_NUM_THREADS=1"), body.index("module load cp2k")
    i_worker = next(i for i, x in enumerate(body) if "distributed.cli.dask_worker tcp://127.0.0.1:" in x)
    assert i_omp < i_mod < i_worker and "--nthreads 1" in body[i_worker]
    assert not Path("unused").exists()


def test_build_on_worker_jobs(cp2k, tmp_path):
    """A build whose structures run on a submitted worker job: the first round (two structures) is computed
    there with CP2K, packed, the job cancelled at the end; the next run goes on from there."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        (bin_ / name).write_text(text.format(jobs=jobs))
        (bin_ / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "ds"
    r = _run(TINY, "--out", out, "--jobs", 1, "--hours", 1e-9, "--host", "127.0.0.1", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["started"] == 2 and summary["done"] + summary["failed"] == 2
    store = DatasetStore(out)
    assert len(store.manifest["structures"]) == summary["done"] > 0 and store.verify() == []
    assert sorted(p.name for p in jobs.glob("*.pid")) == ["1001.pid"]  # one job was submitted ...
    assert (jobs / "cancelled").read_text().split() == ["1001"]  # ... and cancelled when the build ended
    pid, deadline = int((jobs / "1001.pid").read_text()), time.time() + 60
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive(pid), "the worker job outlived its scancel"
    log = (jobs / "1001.log").read_text()
    assert "Starting Worker" in log or "Start worker" in log, log[-2000:]

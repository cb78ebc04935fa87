#!/usr/bin/env python
"""Build a uniham dataset on a SLURM cluster: dask-jobqueue submits single-core Dask worker jobs (sbatch), the
build runs in this process (on the login node, or in a small job of its own) and alone writes the store.

    pip install -e ".[cluster]"                      # uniham + dask-jobqueue, on a filesystem the nodes share
    uniham dataset plan data/recipes/db1.toml -o plan.json
    python scripts/slurm_build.py data/recipes/db1.toml --out db1 --plan plan.json --jobs 200 \\
        --queue cpu --account myproj --walltime 04:00:00 --hours 3.5 --prologue "module load cp2k"
    python scripts/slurm_build.py ... --print-job-script   # what each worker job runs; submits nothing

Each worker job is one core with one single-threaded CP2K (the throughput setting measured on db1, ~87 s
per structure); ``--prologue`` lines run in each job before the worker starts (modules, a virtual
environment, UNIHAM_CP2K). ``--hours`` should end before the jobs' walltime: after it no structure is handed
out, the running ones finish, everything is packed, and the jobs are cancelled; run the same command again
to go on (nothing finished is redone). Stopping this process (^C, scancel of its own job) kills the CP2K runs
in flight, packs what finished and cancels the worker jobs.
"""
from __future__ import annotations

import argparse
import sys


def slurm_cluster(args: argparse.Namespace):
    """The dask-jobqueue SLURMCluster of ``args`` (no job is submitted until it is scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        sys.exit('error: dask-jobqueue is not installed (pip install -e ".[cluster]")')
    scheduler = {"dashboard_address": ":0"} | ({"host": args.host} if args.host else {})
    return SLURMCluster(cores=1, processes=1, memory=args.memory, walltime=args.walltime, queue=args.queue,
                        account=args.account, job_name="uniham-dft",
                        job_script_prologue=["export OMP_NUM_THREADS=1", *args.prologue],
                        job_extra_directives=args.sbatch, scheduler_options=scheduler,
                        log_directory=args.log_directory)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("recipe")
    p.add_argument("--out", required=True, help="dataset folder (created or resumed)")
    p.add_argument("--plan", help="plan file from `uniham dataset plan RECIPE -o FILE`")
    p.add_argument("--jobs", type=int, default=16, help="worker jobs (one core each); default 16")
    p.add_argument("--queue", help="partition (#SBATCH -p)")
    p.add_argument("--account", help="account (#SBATCH -A)")
    p.add_argument("--walltime", default="04:00:00", help="of each worker job; default 04:00:00")
    p.add_argument("--memory", default="4GB", help="of each worker job; default 4GB (db1's cells need < 1 GB)")
    p.add_argument("--hours", type=float, help="hand out structures for this long (end before --walltime)")
    p.add_argument("--prologue", action="append", default=[], help="a shell line each job runs first (repeatable)")
    p.add_argument("--sbatch", action="append", default=[], help="an extra #SBATCH directive, e.g. --sbatch=--constraint=avx2 (repeatable)")
    p.add_argument("--log-directory", help="where the worker jobs write their logs")
    p.add_argument("--host", help="address the scheduler listens on (default: dask-jobqueue's choice)")
    p.add_argument("--print-job-script", action="store_true", help="print a worker job's script and exit")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")

    cluster = slurm_cluster(args)
    try:
        if args.print_job_script:
            print(cluster.job_script())
            return 0
        from uniham.cli import main as uniham

        cluster.scale(jobs=args.jobs)
        print(f"{args.jobs} worker jobs submitted; scheduler {cluster.scheduler_address}", file=sys.stderr)
        build = ["dataset", "build", args.recipe, "--out", args.out, "--scheduler", cluster.scheduler_address]
        build += ["--plan", args.plan] if args.plan else []
        build += ["--hours", str(args.hours)] if args.hours is not None else []
        return uniham(build)  # its progress bar, JSON summary, one-line errors and exit codes
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: Snakemake's job selection (the profile's ``scheduler`` settings) on many jobs.

A generated workflow of N independent ``touch`` jobs, each reading ``--inputs`` files
(a subject's source check reads ~40) and with a ``log:`` and a ``benchmark:`` as our
rules have, runs to completion with ``--cores 2`` under each setting, alternately,
``--repeats`` times: the ILP selector (Snakemake's default), the greedy one, and the
greedy one considering a random 50 of the ready jobs per step (profiles/default).
Medians of wall and CPU (user + system of the process tree) are printed with each
setting's ratio to the ILP's in the same run. Snakemake selects after every finished
job, over every ready job, and first stats every input of those jobs; ARC has ~2,000
jobs, ~1,300 ready at once. Usage::

    python tests/benchmarks/bench_scheduler.py [--jobs 300,1500] [--inputs 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """
rule all:
    input: expand("out/{{i}}.txt", i=range({n}))
rule touch_output:
    input: lambda wildcards: [f"in/{{int(wildcards.i) % 100}}_{{k}}.txt" for k in range({k})]
    output: "out/{{i}}.txt"
    log: "logs/{{i}}.log"
    benchmark: "bench/{{i}}.tsv"
    shell: "touch {{output}} > {{log}} 2>&1"
"""
SETTINGS = {
    "ilp": ["--scheduler", "ilp"],
    "greedy": ["--scheduler", "greedy"],
    "greedy+subsample 50": ["--scheduler", "greedy", "--scheduler-subsample", "50"],
}


def run(workdir: Path, setting: str) -> tuple[float, float]:
    """One complete run in a fresh folder: (wall s, CPU s)."""
    for name in ("out", "logs", "bench", ".snakemake"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *SETTINGS[setting], "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"snakemake ({setting}) failed: {proc.stderr.read()!r}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", default="300,1500", help="comma-separated job counts")
    ap.add_argument("--inputs", type=int, default=20, help="input files per job")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'jobs':>6} {'setting':>20} {'wall s':>8} {'cpu s':>8} {'ms/job':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.jobs.split(",")):
            work = Path(tmp) / str(n)
            work.mkdir()
            (work / "Snakefile").write_text(SNAKEFILE.format(n=n, k=args.inputs))
            (work / "in").mkdir()
            for i in range(100):
                for k in range(args.inputs):
                    (work / "in" / f"{i}_{k}.txt").touch()
            got: dict[str, list[tuple[float, float]]] = {s: [] for s in SETTINGS}
            for _ in range(args.repeats):
                for scheduler in got:
                    got[scheduler].append(run(work, scheduler))
            med = {
                s: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
                for s, r in got.items()
            }
            base = med["ilp"]
            for s, (wall, cpu) in med.items():
                print(f"{n:>6} {s:>20} {wall:>8.1f} {cpu:>8.1f} {1000 * wall / n:>7.1f}"
                      f"   wall {wall / base[0]:.2f}x, cpu {cpu / base[1]:.2f}x the ILP's")  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

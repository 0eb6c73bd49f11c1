"""Benchmark: Snakemake's job selectors (``--scheduler greedy`` vs ``ilp``) on many small jobs.

A generated workflow of N independent ``touch`` jobs (each with a ``log:`` and a
``benchmark:``, as our rules have) runs to completion with ``--cores 2`` under each
selector, alternately, ``--repeats`` times; medians of wall and CPU (user + system of
the process tree) are printed with greedy's ratio to ILP's in the same run. The ILP
selector solves an integer program over the ready jobs at every scheduling step, so
its cost per job grows with the number of jobs ready at once; ARC has ~2,000 jobs,
most of them ready together. Usage::

    python tests/benchmarks/bench_scheduler.py [--jobs 300,1500] [--repeats 1]
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
    output: "out/{{i}}.txt"
    log: "logs/{{i}}.log"
    benchmark: "bench/{{i}}.tsv"
    shell: "touch {{output}} > {{log}} 2>&1"
"""


def run(workdir: Path, scheduler: str) -> tuple[float, float]:
    """One complete run in a fresh folder: (wall s, CPU s)."""
    for name in ("out", "logs", "bench", ".snakemake"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--scheduler", scheduler, "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"snakemake --scheduler {scheduler} failed: {proc.stderr.read()!r}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", default="300,1500", help="comma-separated job counts")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'jobs':>6} {'selector':>8} {'wall s':>8} {'cpu s':>8} {'ms/job':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.jobs.split(",")):
            work = Path(tmp) / str(n)
            work.mkdir()
            (work / "Snakefile").write_text(SNAKEFILE.format(n=n))
            got: dict[str, list[tuple[float, float]]] = {"greedy": [], "ilp": []}
            for _ in range(args.repeats):
                for scheduler in got:
                    got[scheduler].append(run(work, scheduler))
            med = {
                s: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
                for s, r in got.items()
            }
            for s, (wall, cpu) in med.items():
                print(f"{n:>6} {s:>8} {wall:>8.1f} {cpu:>8.1f} {1000 * wall / n:>7.1f}")
            print(f"{n:>6} greedy/ilp wall {med['greedy'][0] / med['ilp'][0]:.2f}x, "
                  f"cpu {med['greedy'][1] / med['ilp'][1]:.2f}x")  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""End to end: the default workflow on a sized ARC-like tree, against its baselines.

What is measured, in one run
----------------------------
A synthetic ARC-shaped tree (bench_shards' generator: real level-6 gzip streams of
MRI-like data; default 2.6 GB in 12 sessions, the largest ~590 MB) is written once
under ``--workdir``. Then, one after the other:

* ``cp -r + fsync`` -- the tree copied with ``cp -r`` and every copy fsynced;
* ``gzip -t + sha256sum`` -- ``gzip -t`` of every ``.gz`` and ``sha256sum`` of every
  file (the work a full source check must do, in C tools);
* ``datasets path`` -- ``Dataset.from_dict`` -> ``cast`` -> ``embed_table_storage`` ->
  ``to_parquet`` of every session (what ``push_to_hub`` does; bench_shards' runner);
* ``peer`` -- the ARC upload pipeline (``--peer-dir``: an export of
  The-Obstacle-Is-The-Way/neuroimaging-go-brrrr at 2f5cd6c, installed in its own
  virtualenv ``--peer-python`` with datasets 4.5): its ``bids_hub`` ARC build with the
  push stubbed (``HfApi`` replaced by an object that records the call; the parquet
  shards are written as in a real push). Skipped with a message when not given;
* ``ours: shards`` -- ``snakemake --cores N --until write_shard`` on a fresh out_dir;
* ``ours: rest`` -- then the default target ``all`` (validation, masks with the
  threshold backend, card, paper).

Wall and CPU (user + system of the process tree, ``os.wait4``) of each, then per stage
of our run the jobs' own wall, CPU and peak RSS from the rules' benchmark files, with
ratios to the baselines and the peak RSS against the largest session. The goals of the
issue are printed with PASS/FAIL.

The peer is not on PyPI: export its tree at that commit (``git archive 2f5cd6c``) into
a folder, then ``python -m venv V && V/bin/pip install 'datasets==4.5.*'
'pandas==2.3.3' -e FOLDER`` (pandas as its ``uv.lock`` pins it: with pandas 3 its
pandas round trip of each shard yields ``large_string`` paths that ``datasets`` 4.5
cannot cast to ``Nifti``). ``make bench PEER_DIR=FOLDER PEER_PYTHON=V/bin/python``
passes them on. Usage::

    python tests/benchmarks/bench_e2e.py --peer-dir P --peer-python V/bin/python
    python tests/benchmarks/bench_e2e.py --size-gb 0.5 --sessions 4      # quick
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "workflow"), str(REPO / "tests" / "benchmarks")]

from bench_shards import _datasets_runner, generate_dataset  # noqa: E402
from bids2hub.index.manifest import load_index  # noqa: E402
from bids2hub.index.phenotype import read_participants  # noqa: E402
from bids2hub.shards.colmap import load_map  # noqa: E402
from bids2hub.validate.counts import found_counts  # noqa: E402

MB = 1e6


def rule_stages() -> dict[str, str]:
    """Rule -> stage: the rules file that defines it (``rules/validate.smk`` -> validate)."""
    out = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            if line.startswith(("rule ", "checkpoint ")):
                out[line.split()[1].rstrip(":")] = smk.stem
    return out


#: Runs the peer's ARC build with its Hub calls stubbed (argv: bids root, staging cwd).
PEER_RUNNER = """
import sys, os
from pathlib import Path
import bids_hub.core.builder as builder
from bids_hub.core.config import DatasetBuilderConfig
from bids_hub.datasets.arc import build_and_push_arc

class StubApi:
    def __init__(self, *a, **k): pass
    def create_repo(self, *a, **k): pass
    def upload_large_folder(self, *a, folder_path=None, **k):
        n = len(list(Path(folder_path, "data").glob("*.parquet")))
        print(f"stub upload_large_folder: {n} parquet file(s)", flush=True)

builder.HfApi = StubApi
builder._verify_remote_upload_complete = lambda *a, **k: None
os.chdir(sys.argv[2])
build_and_push_arc(DatasetBuilderConfig(bids_root=Path(sys.argv[1]),
                   hf_repo_id="bench/arc", dry_run=False))
"""


def _timed_children(fn: Any) -> tuple[float, float]:
    """Wall, and CPU of this process and its finished children, around ``fn()``."""
    r0s, r0c = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    r1s, r1c = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    cpu = sum(
        getattr(b, f) - getattr(a, f)
        for a, b in ((r0s, r1s), (r0c, r1c))
        for f in ("ru_utime", "ru_stime")
    )
    return wall, cpu


def _check(cmd: list[str], **kw: Any) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:5])} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def _copy_fsync(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    _check(["cp", "-r", str(src), str(dst)])
    for path in dst.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _gzip_sha(root: Path) -> None:
    files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    _check(["gzip", "-t", *[f for f in files if f.endswith(".gz")]])
    _check(["sha256sum", *files])


def _stage_rows(out: Path) -> dict[str, dict[str, float]]:
    """Per stage: jobs, summed job wall and CPU, max peak RSS (MB), from benchmark files."""
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    stages = rule_stages()
    for tsv in sorted((out / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(out / "benchmarks").parts[0]
        stage = stages.get(rule, rule)
        with open(tsv) as fh:
            rec = next(csv.DictReader(fh, delimiter="\t"))
        row = rows[stage]
        row["jobs"] += 1
        row["wall"] += float(rec["s"])
        row["cpu"] += float(rec.get("cpu_time") or 0)
        row["rss"] = max(row["rss"], float(rec.get("max_rss") or 0))
    return rows


def _dataset_map(work: Path, manifest: Any) -> str:
    """A ds004884 map whose expected counts are this tree's."""
    counts = found_counts(manifest, manifest.shard_keys())
    path = work / "bench-arc.yaml"
    (work / "ds004884.yaml").write_text(
        (REPO / "config" / "datasets" / "ds004884.yaml").read_text()
    )
    path.write_text(yaml.safe_dump({"name": "ds004884", "extends": "ds004884", "expected": counts}))
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.6)
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--peer-dir", type=Path, default=None, help="the peer's source tree")
    ap.add_argument("--peer-python", type=Path, default=None, help="its virtualenv's python")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    root = work / "bids"
    if not (root / "participants.tsv").exists():
        generate_dataset(root, args.size_gb, args.sessions, seed=11)
    manifest, _ = load_index(root, work / "index" / "manifest.parquet")
    keys = manifest.shard_keys()
    sizes = {k: sum(r.size for r in manifest.files_for(*k)) for k in keys}
    total, largest = sum(sizes.values()), max(sizes.values())
    print(
        f"tree: {len(keys)} sessions, {total / 1e9:.2f} GB, largest session "
        f"{largest / MB:.0f} MB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    res: dict[str, tuple[float, float]] = {}
    res["cp -r + fsync"] = _timed_children(lambda: _copy_fsync(root, work / "copy"))
    shutil.rmtree(work / "copy", ignore_errors=True)
    res["gzip -t + sha256sum"] = _timed_children(lambda: _gzip_sha(root))

    cmap = load_map(REPO / "config" / "datasets" / "ds004884.yaml")
    people = read_participants(root / "participants.tsv")
    dsout = work / "datasets-path"
    shutil.rmtree(dsout, ignore_errors=True)
    dsout.mkdir()
    run_one = _datasets_runner(manifest, cmap, people, dsout, True)
    res["datasets embed + to_parquet"] = _timed_children(lambda: [run_one(*k) for k in keys])
    shutil.rmtree(dsout, ignore_errors=True)

    if args.peer_dir and args.peer_python:
        stage = work / "peer"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        runner = work / "peer_runner.py"
        runner.write_text(PEER_RUNNER)
        cmd = [str(args.peer_python), str(runner), str(root), str(stage)]
        res["peer: bids_hub ARC build, push stubbed"] = _timed_children(lambda: _check(cmd))
        shutil.rmtree(stage, ignore_errors=True)
    else:
        print("peer: not run (give --peer-dir and --peer-python)")

    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    cfg = work / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "bids_dir": str(root),
                "out_dir": str(out),
                "dataset": _dataset_map(work, manifest),
                "segment": {"backend": "threshold"},
            }
        )
    )
    smk = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
        "-d", str(work), "--cores", str(args.cores), "--configfile", str(cfg), "--quiet",
        # what `snakemake` from the repository root loads by itself (job selection)
        "--workflow-profile", str(REPO / "profiles" / "default"),
    ]  # fmt: skip
    res["ours: shards (--until write_shard)"] = _timed_children(
        lambda: _check([*smk, "all", "--until", "write_shard"])
    )
    res["ours: the rest of the default run"] = _timed_children(lambda: _check([*smk, "all"]))

    print(f"\n{'run':44} {'wall s':>8} {'cpu s':>8} {'MB/s':>8}")
    for name, (wall, cpu) in res.items():
        print(f"{name:44} {wall:8.1f} {cpu:8.1f} {total / MB / wall:8.0f}")
    stages = _stage_rows(out)
    print(f"\n{'stage (job benchmark files)':28} {'jobs':>5} {'wall s':>8} {'cpu s':>8} "
          f"{'MB/s cpu':>9} {'peak RSS MB':>12} {'x largest':>10}")  # fmt: skip
    for name, row in sorted(stages.items(), key=lambda kv: -kv[1]["cpu"]):
        rate = total / MB / row["cpu"] if row["cpu"] else float("nan")
        print(
            f"{name:28} {row['jobs']:5.0f} {row['wall']:8.1f} {row['cpu']:8.1f} {rate:9.0f} "
            f"{row['rss']:12.0f} {row['rss'] * MB / largest:10.2f}"
        )
    shards = res["ours: shards (--until write_shard)"][0]
    whole = shards + res["ours: the rest of the default run"][0]
    cp = res["cp -r + fsync"][0]
    goals = [("shard stage >= 0.5x cp+fsync (cp / ours)", cp / shards, ">=", 0.5)]
    peer = res.get("peer: bids_hub ARC build, push stubbed")
    if peer:
        goals += [
            ("shard stage <= 0.33x the peer", shards / peer[0], "<=", 0.33),
            ("whole run <= the peer's time", whole / peer[0], "<=", 1.0),
        ]
    val = stages.get("validate", {}).get("cpu", 0.0)
    floor = res["gzip -t + sha256sum"][1]
    goals.append(("validation CPU / gzip -t + sha256sum CPU", val / floor, "info", 0))
    worst = max((r["rss"] for r in stages.values()), default=0.0) * MB / largest
    goals.append(("peak RSS per job <= 1.5x the largest session", worst, "<=", 1.5))
    print(f"\nwhole default run: {whole:.1f} s wall; load average {os.getloadavg()[0]:.1f}")
    for label, x, op, goal in goals:
        verdict = (
            "" if op == "info" else "PASS" if (x >= goal if op == ">=" else x <= goal) else "FAIL"
        )
        print(f"{label:48} {x:6.2f}  {'' if op == 'info' else f'{op} {goal}'}  {verdict}")
    print(f"workdir: {work}")


if __name__ == "__main__":
    main()

"""Indexing an ARC-shaped BIDS tree: ``bids2hub.index.manifest`` versus a bare walk, pybids, bids2table.

What is measured
----------------
``tests.synthetic.write_arc_like_tree`` writes the real ds004884 structure (230
subjects, 902 sessions, ~14.5k files, tiny NIfTIs); ``--scales 1,4`` adds a 4x
replica (920 subjects, 3,608 sessions, ~58k files). On each tree, every measurement
runs ``--repeats`` times (median reported), each time in a fresh child interpreter
that times only the call (imports excluded) and reports its peak RSS (``VmHWM`` of
``/proc/self/status``, reset at exec, unlike ``ru_maxrss``):

* ``scandir walk``   -- baseline: recursive ``os.scandir`` with ``entry.stat()`` per file.
* ``ours cold``      -- ``load_index(root, cache)`` without a cache: walk, parse every
  name, write ``manifest.parquet``.
* ``ours warm``      -- ``load_index(root, cache)`` with a valid cache: walk, signature,
  read the parquet (what the main Snakemake process pays on every start).
* ``ours job``       -- ``load_index(root, cache, refresh=False)``: only reads the cache
  (what every cluster job pays when Snakemake re-parses the Snakefile).
* ``pybids cold``    -- ``bids.BIDSLayout(root, validate=False)``, in-memory database.
* ``pybids db cold`` -- the same with a fresh ``database_path`` (indexes and saves).
* ``pybids db warm`` -- the same with the saved ``database_path`` (reload).
* ``bids2table``     -- ``bids2table.index_dataset(root)`` (no cache of its own).
* per-session queries, one per session (902 on the real tree): pybids
  ``layout.get(subject=, session=, extension='.nii.gz')`` after a warm reload, ours
  ``[r for r in manifest.files_for(sub, ses) if r.is_image]`` after a job-mode load,
  bids2table a pyarrow filter of its table.

"Cold" means no cache of the tool; the kernel's dentry/inode cache is warm (the tree
was just written and walked; caches are not dropped). pybids (``derivatives=False``)
and bids2table do not index ``derivatives/lesion_masks`` and bids2table does not stat
files; the ``files`` column says how many files each one indexed. A pybids run longer
than ``--pybids-cap`` seconds (default 180) is killed, shown as capped and not repeated.

Run
---
    .venv/bin/python tests/benchmarks/bench_index.py                    # real tree, 3 repeats
    .venv/bin/python tests/benchmarks/bench_index.py --scales 1,4 --repeats 3
    .venv/bin/python tests/benchmarks/bench_index.py --skip pybids      # without pybids
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import peak_rss_mb

#: Measurement key -> (label, tool family for --skip).
MEASUREMENTS: dict[str, tuple[str, str]] = {
    "scandir": ("scandir walk + stat", "ours"),
    "ours_cold": ("ours cold (no cache)", "ours"),
    "ours_warm": ("ours warm (walk+sig+read)", "ours"),
    "ours_job": ("ours job (read cache)", "ours"),
    "pybids_cold": ("pybids cold", "pybids"),
    "pybids_db_cold": ("pybids db cold (save)", "pybids"),
    "pybids_db_warm": ("pybids db warm (reload)", "pybids"),
    "bids2table": ("bids2table cold", "bids2table"),
    "ours_queries": ("ours per-session queries", "ours"),
    "pybids_queries": ("pybids per-session queries", "pybids"),
    "b2t_queries": ("bids2table per-session queries", "bids2table"),
}

# --------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------


def scandir_walk(top: str) -> int:
    """Recursive ``os.scandir`` with one ``stat`` per file; number of files."""
    n = 0
    with os.scandir(top) as it:
        for entry in it:
            if entry.is_dir():
                n += scandir_walk(entry.path)
            else:
                entry.stat()
                n += 1
    return n


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement; return seconds, files indexed and RSS."""
    m = spec["method"]
    root, cache, db = Path(spec["root"]), Path(spec["cache"]), spec["db"]
    sessions = [tuple(s) for s in spec.get("sessions", [])]
    import pyarrow  # every child pays it: the same RSS floor

    t_imp = time.perf_counter()

    if m == "rss_pyarrow":
        import pyarrow.parquet

        return {"seconds": 0.0, "files": 0, "imports_mb": peak_rss_mb(), "peak_mb": peak_rss_mb()}
    extra: dict[str, Any] = {}
    if m.startswith("ours"):
        import pyarrow.parquet  # noqa: F401  (imported lazily by read_manifest)
        from bids2hub.index.manifest import load_index

        t_imp = time.perf_counter() - t_imp
        imports = peak_rss_mb()
        t0 = time.perf_counter()
        if m == "ours_cold":
            manifest, rewritten = load_index(root, cache)
            assert rewritten, "cache unexpectedly valid"
        elif m == "ours_warm":
            manifest, rewritten = load_index(root, cache)
            assert not rewritten, "cache unexpectedly rebuilt"
        else:
            manifest, _ = load_index(root, cache, refresh=False)
        seconds = time.perf_counter() - t0
        files = len(manifest.records)
        if m == "ours_queries":
            t0 = time.perf_counter()
            hits = sum(
                len([r for r in manifest.files_for(sub, ses) if r.is_image])
                for sub, ses in sessions
            )
            seconds = time.perf_counter() - t0
            extra["hits"] = hits
    elif m == "scandir":
        t_imp = 0.0
        imports = peak_rss_mb()
        t0 = time.perf_counter()
        files = scandir_walk(str(root))
        seconds = time.perf_counter() - t0
    elif m.startswith("pybids"):
        import warnings

        from bids import BIDSLayout

        warnings.simplefilter("ignore")
        t_imp = time.perf_counter() - t_imp
        imports = peak_rss_mb()
        t0 = time.perf_counter()
        if m == "pybids_cold":
            layout = BIDSLayout(root, validate=False)
        else:
            layout = BIDSLayout(root, validate=False, database_path=db)
        seconds = time.perf_counter() - t0
        files = len(layout.files)
        if m == "pybids_queries":
            t0 = time.perf_counter()
            hits = sum(
                len(layout.get(subject=sub, session=ses, extension=".nii.gz"))
                for sub, ses in sessions
            )
            seconds = time.perf_counter() - t0
            extra["hits"] = hits
    elif m in ("bids2table", "b2t_queries"):
        import pyarrow.compute as pc
        from bids2table import index_dataset

        t_imp = time.perf_counter() - t_imp
        imports = peak_rss_mb()
        t0 = time.perf_counter()
        table = index_dataset(root)
        seconds = time.perf_counter() - t0
        files = table.num_rows
        if m == "b2t_queries":
            t0 = time.perf_counter()
            nii = table.filter(pc.equal(table["ext"], ".nii.gz"))
            hits = 0
            for sub, ses in sessions:
                mask = pc.and_(pc.equal(nii["sub"], sub), pc.equal(nii["ses"], ses))
                hits += len(nii.filter(mask))
            seconds = time.perf_counter() - t0
            extra["hits"] = hits
    else:
        raise SystemExit(f"unknown method {m}")
    return {
        "seconds": seconds,
        "import_s": t_imp,
        "files": files,
        "imports_mb": imports,
        "peak_mb": peak_rss_mb(),
        **extra,
    }


# --------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------


def run_child(spec: dict[str, Any], timeout: float | None) -> dict[str, Any] | None:
    """Run one measurement in a fresh interpreter; None when it ran past ``timeout``."""
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['method']} failed:\n{proc.stdout}\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def prepare(method: str, cache: Path, db: Path) -> None:
    """Put the caches in the state the measurement needs (outside the timed child)."""
    if method == "ours_cold":
        cache.unlink(missing_ok=True)
    elif method == "pybids_db_cold":
        shutil.rmtree(db, ignore_errors=True)


def bench_tree(
    root: Path, workdir: Path, methods: list[str], repeats: int, cap: float
) -> tuple[dict[str, list[dict[str, Any] | None]], dict[str, Any], int]:
    """Run every measurement on one tree."""
    from bids2hub.index.manifest import load_index

    cache = workdir / f"{root.name}_index" / "manifest.parquet"
    db = workdir / f"{root.name}_pybids_db"
    cache.unlink(missing_ok=True)
    manifest, _ = load_index(root, cache)  # also warms the dentry cache
    sessions = manifest.shard_keys()
    base = {"root": str(root), "cache": str(cache), "db": str(db), "sessions": sessions}
    rss = run_child({**base, "method": "rss_pyarrow", "sessions": []}, None)
    assert rss is not None
    results: dict[str, list[dict[str, Any] | None]] = {}
    db_saved: bool | None = None  # a complete pybids database exists at ``db``
    for method in methods:
        results[method] = []
        if method in ("pybids_db_warm", "pybids_queries"):
            if db_saved is None:
                prepare("pybids_db_cold", cache, db)
                db_saved = run_child({**base, "method": "pybids_db_cold"}, cap) is not None
            if not db_saved:
                label = MEASUREMENTS[method][0]
                print(f"  {root.name} {label:<32} skipped: pybids could not save its database")
                continue
        is_pybids = method.startswith("pybids")
        for rep in range(repeats):
            prepare(method, cache, db)
            res = run_child({**base, "method": method}, cap if is_pybids else None)
            results[method].append(res)
            if method == "pybids_db_cold":
                db_saved = res is not None
            shown = f"{res['seconds']:8.3f} s" if res else f"> {cap:.0f} s (capped)"
            print(f"  {root.name} {MEASUREMENTS[method][0]:<32} rep {rep + 1}: {shown}", flush=True)
            if res is None:
                break
    return results, rss, len(sessions)


def report(
    name: str,
    results: dict[str, list[dict[str, Any] | None]],
    rss: dict[str, Any],
    n_sessions: int,
    repeats: int,
    cap: float,
) -> None:
    """Print one tree's table."""
    print(f"\n== {name}: {n_sessions} sessions; median of {repeats} fresh processes ==")
    print(
        f"{'measurement':<32}{'median s':>10}{'min s':>9}{'x scandir':>11}{'import s':>9}"
        f"{'files':>8}"
        f"{'imports MB':>12}{'peak MB':>9}{'peak-imp':>9}"
    )
    print(f"{'python + import pyarrow':<32}{'':>47}{rss['imports_mb']:12.1f}{rss['peak_mb']:9.1f}")
    ok = [r for r in results.get("scandir", []) if r]
    walk = statistics.median(r["seconds"] for r in ok) if ok else float("nan")
    for method, runs in results.items():
        label = MEASUREMENTS[method][0]
        done = [r for r in runs if r]
        if not runs:
            print(f"{label:<32}{'skipped':>10}   (no saved pybids database: db cold was capped)")
            continue
        if not done:
            print(f"{label:<32}{f'> {cap:.0f} (capped)':>19}")
            continue
        med = statistics.median(r["seconds"] for r in done)
        best = min(r["seconds"] for r in done)
        imp = statistics.median(r["imports_mb"] for r in done)
        peak = statistics.median(r["peak_mb"] for r in done)
        line = (
            f"{label:<32}{med:10.3f}{best:9.3f}{med / walk:10.1f}x"
            f"{statistics.median(r['import_s'] for r in done):9.3f}{done[0]['files']:8d}"
            f"{imp:12.1f}{peak:9.1f}{peak - imp:9.1f}"
        )
        if "hits" in done[0]:
            line += f"   {1e3 * med / n_sessions:.3f} ms/query, {done[0]['hits']} images"
        if len(done) < len(runs) or len(runs) < repeats:
            line += "   (capped after this run)"
        print(line)


def main(argv: list[str] | None = None) -> int:
    """Entry point (see module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1", help="comma-separated replication factors")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pybids-cap", type=float, default=180.0, help="seconds per run")
    parser.add_argument(
        "--skip", default="", help="comma-separated tools to leave out: pybids,bids2table"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new /tmp dir")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the trees")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(_child(json.loads(args.child))), flush=True)
        return 0
    skip = {s for s in args.skip.split(",") if s}
    methods = [m for m, (_, tool) in MEASUREMENTS.items() if tool not in skip]
    scales = [int(s) for s in args.scales.split(",") if s]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_index_", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    try:
        from tests.synthetic import write_arc_like_tree

        tables = []
        for scale in scales:
            root = workdir / f"arc_x{scale}"
            stamp = workdir / f".arc_x{scale}.done"
            if not stamp.is_file():
                shutil.rmtree(root, ignore_errors=True)
                t0 = time.perf_counter()
                write_arc_like_tree(root, scale=scale)
                stamp.touch()
                n = sum(len(f) for _, _, f in os.walk(root))
                print(f"wrote {root} ({n} files) in {time.perf_counter() - t0:.1f} s", flush=True)
            results, rss, n_sessions = bench_tree(
                root, workdir, methods, args.repeats, args.pybids_cap
            )
            tables.append((f"ARC-shaped tree x{scale}", results, rss, n_sessions))
        for name, results, rss, n_sessions in tables:
            report(name, results, rss, n_sessions, args.repeats, args.pybids_cap)
        print(f"\nbenchmark wall time {time.perf_counter() - t_start:.0f} s")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

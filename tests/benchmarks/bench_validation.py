"""Benchmark: the whole validation stage on an ARC-shaped tree with ARC's full counts.

Writes a synthetic tree (230 subjects, 902 sessions, tiny NIfTIs; real ds004884 names),
then measures, in one run:

* baselines: reading every file once (4 MiB chunks), indexing the tree;
* the per-session source checks in one process (all sessions), and the per-shard
  round-trip with and without the ``datasets`` decode, and the cost of importing
  ``datasets`` in a fresh process (paid once per round-trip job);
* real Snakemake runs: the shard stage (``--until write_shard``), then the validation
  targets (per-session, per-shard, validator, report), with the jobs' own wall times
  from their benchmark files.

Ratios are printed against the plain read. Usage::

    python tests/benchmarks/bench_validation.py [--subjects N] [--cores 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow"))

from bids2hub.index.manifest import load_index  # noqa: E402
from bids2hub.index.phenotype import read_participants  # noqa: E402
from bids2hub.shards.colmap import load_map  # noqa: E402
from bids2hub.validate.counts import compare_counts, found_counts  # noqa: E402
from bids2hub.validate.roundtrip import check_shard  # noqa: E402
from bids2hub.validate.sources import check_session  # noqa: E402

from tests.synthetic import write_arc_like_tree  # noqa: E402


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _read_all(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
    return total


def _snakemake(workdir: Path, cfg: Path, cores: int, *extra: str) -> float:
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
        "-d", str(workdir), "--cores", str(cores), "--configfile", str(cfg), "--quiet", "all",
        *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return took


def _job_seconds(out: Path, rule: str) -> list[float]:
    times = []
    for tsv in (out / "benchmarks" / rule).rglob("*.tsv"):
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        times.append(float(row["s"]))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=None, help="first N ARC subjects (all)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--no-snakemake", action="store_true", help="in-process numbers only")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-validation-"))
    bids, out = work / "bids", work / "out"

    root, t_tree = _timed(write_arc_like_tree, bids, args.subjects)
    nbytes, t_read = _timed(_read_all, root)
    (manifest, _), t_index = _timed(load_index, root, work / "index" / "manifest.parquet")
    keys = manifest.shard_keys()
    cmap = load_map(REPO / "config" / "datasets" / "ds004884.yaml")
    counts = compare_counts(found_counts(manifest, keys), cmap.expected)
    bad = [c for c in counts if c["status"] != "ok"]
    print(f"tree: {len(keys)} sessions, {len(manifest.records)} files, {nbytes / 1e6:.1f} MB "
          f"(written in {t_tree:.1f} s); expected counts of ds004884: "
          f"{'all ok' if not bad else f'{len(bad)} mismatch(es)'}")  # fmt: skip

    sessions, t_sessions = _timed(lambda: {k: check_session(manifest, cmap, *k) for k in keys})
    failures = sum(len(r["failures"]) for r in sessions.values())

    from bids2hub.shards.writer import write_shard

    people = read_participants(root / "participants.tsv")
    shard_dir = work / "shards"
    for sub, ses in keys:
        write_shard(manifest, cmap, sub, ses, people, shard_dir / f"{sub}_{ses}.parquet")

    def round_trips(decode: bool) -> int:
        n = 0
        for (sub, ses), result in sessions.items():
            rt = check_shard(
                shard_dir / f"{sub}_{ses}.parquet", manifest, cmap, sub, ses, result, decode=decode
            )
            n += len(rt["failures"])
        return n

    _, t_rt_plain = _timed(round_trips, False)
    rt_fail, t_rt_decode = _timed(round_trips, True)
    imp = [
        _timed(subprocess.run, [sys.executable, "-c", "import datasets"], check=True)[1]
        for _ in range(3)
    ]
    t_import = statistics.median(imp)

    rows = [
        ("baseline: read every file once", t_read),
        ("baseline: index the tree", t_index),
        (f"source checks, {len(keys)} sessions, one process", t_sessions),
        (f"round-trip, {len(keys)} shards, no decode", t_rt_plain),
        (f"round-trip, {len(keys)} shards, with datasets decode", t_rt_decode),
        ("import datasets in a fresh process (median of 3)", t_import),
    ]
    if not args.no_snakemake:
        dataset = "ds004884"
        if args.subjects is not None:  # ARC's columns, this subset's own expected counts
            from bids2hub.validate.counts import count_names

            from tests.synthetic import arc_expected_counts

            ref = arc_expected_counts(args.subjects)
            (work / "ds004884.yaml").write_text(
                (REPO / "config" / "datasets" / "ds004884.yaml").read_text()
            )
            sub_map = {"name": "ds004884", "extends": "ds004884",
                       "expected": {k: ref[k] for k in count_names([])}}  # fmt: skip
            (work / "subset.yaml").write_text(yaml.safe_dump(sub_map))
            dataset = str(work / "subset.yaml")
        cfg = work / "config.yaml"
        cfg.write_text(yaml.safe_dump({"bids_dir": str(root), "out_dir": str(out),
                                       "dataset": dataset}))  # fmt: skip
        t_shards = _snakemake(work, cfg, args.cores, "--until", "write_shard")
        t_validation = _snakemake(work, cfg, args.cores)
        t_noop = _snakemake(work, cfg, args.cores)
        rows += [
            (f"snakemake: shard stage ({len(keys)} write_shard jobs)", t_shards),
            (f"snakemake: validation targets ({2 * len(keys) + 4} jobs)", t_validation),
            ("snakemake: rerun with nothing to do", t_noop),
        ]
        report = yaml.safe_load((out / "validation" / "report.json").read_text())
        for rule in ("check_session", "check_shard", "run_bids_validator",
                     "list_intact_sessions", "write_validation_report"):  # fmt: skip
            times = _job_seconds(out, rule)
            if times:
                rows.append((f"  {rule}: {len(times)} job(s), median job wall time",
                             statistics.median(times)))  # fmt: skip
        print(f"report: status {report['status']}, "
              f"{report['summary']['hard_failures']} hard failure(s), validator "
              f"{report['validator']['version']} {report['validator']['status']}")  # fmt: skip
    print(f"in-process failures: {failures} source, {rt_fail} round-trip")
    print(f"{'step':62} {'seconds':>9} {'x read':>8}")
    for name, secs in rows:
        print(f"{name:62} {secs:9.2f} {secs / t_read:8.1f}")
    print(f"workdir: {work}")


if __name__ == "__main__":
    main()

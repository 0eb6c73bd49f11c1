"""The ``bids2hub`` command line: one subcommand per rule action.

Errors meant for users (:class:`bids2hub.errors.Bids2HubError`) are printed
as one ``bids2hub: error: ...`` line with exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Bids2HubError

if TYPE_CHECKING:
    from .colmap import ColumnMap
    from .index import Manifest

log = logging.getLogger("bids2hub")


def _cmd_index(args: argparse.Namespace) -> int:
    from .index import load_index

    manifest, rebuilt = load_index(
        Path(args.bids_dir),
        Path(args.out_dir) / "index" / "manifest.parquet",
        exclude=[Path(args.out_dir)],
    )
    state = "written" if rebuilt else "up to date"
    print(f"{len(manifest.records)} files, {len(manifest.shard_keys())} shards; index {state}")
    return 0


def _cmd_write_shard(args: argparse.Namespace) -> int:
    from .colmap import ColumnMap
    from .index import read_manifest, shard_id
    from .phenotype import read_participants
    from .shards import ShardOptions, write_shard

    manifest = read_manifest(Path(args.manifest))
    cmap = ColumnMap.from_json(Path(args.columns).read_text(encoding="utf-8"))
    rec = manifest.top_level("participants.tsv")
    people = read_participants(manifest.absolute(rec) if rec else None)
    prov = write_shard(
        manifest,
        cmap,
        args.subject,
        args.session,
        people,
        Path(args.output),
        ShardOptions(content_defined_chunking=args.content_defined_chunking),
    )
    nbytes = sum(s["size"] for s in prov["sources"])
    log.info(
        "%s: %d source files, %d bytes -> %s",
        shard_id(args.subject, args.session),
        len(prov["sources"]),
        nbytes,
        args.output,
    )
    return 0


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from .demo import write_demo_dataset

    out = write_demo_dataset(Path(args.out), n_subjects=args.subjects, seed=args.seed)
    print(f"demo BIDS dataset written to {out}")
    return 0


def _load_inputs(args: argparse.Namespace) -> tuple[Manifest, ColumnMap]:
    from .colmap import ColumnMap
    from .index import read_manifest

    manifest = read_manifest(Path(args.manifest))
    cmap = ColumnMap.from_json(Path(args.columns).read_text(encoding="utf-8"))
    return manifest, cmap


def _write_json(path: Path, text: str) -> None:
    from .fsutil import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _cmd_check_session(args: argparse.Namespace) -> int:
    from .validate.sources import check_session, dumps

    manifest, cmap = _load_inputs(args)
    result = check_session(manifest, cmap, args.subject, args.session)
    _write_json(Path(args.output), dumps(result))
    log.info(
        "%s: %s checked; %d failure(s), %d warning(s)",
        result["shard"],
        result["checked"],
        len(result["failures"]),
        len(result["warnings"]),
    )
    return 0


def _cmd_check_shard(args: argparse.Namespace) -> int:
    import json

    from .validate.roundtrip import check_shard
    from .validate.sources import dumps

    manifest, cmap = _load_inputs(args)
    session = json.loads(Path(args.session_check).read_text(encoding="utf-8"))
    result = check_shard(
        Path(args.shard),
        manifest,
        cmap,
        args.subject,
        args.session,
        session,
        decode=not args.no_decode,
    )
    _write_json(Path(args.output), dumps(result))
    log.info("%s: %s; %d failure(s)", result["shard"], result["checked"], len(result["failures"]))
    return 0


def _cmd_bids_validator(args: argparse.Namespace) -> int:
    from .validate.bidsvalidator import run_validator

    record = run_validator(Path(args.bids_dir), Path(args.output))
    log.info(
        "%s %s exited with %s on %s",
        record["tool"],
        record["version"],
        record["exit_code"],
        args.bids_dir,
    )
    return 0


def _cmd_list_intact(args: argparse.Namespace) -> int:
    from .index import read_manifest
    from .validate.report import list_intact, selected_keys
    from .validate.sources import dumps

    manifest = read_manifest(Path(args.manifest))
    keys = selected_keys(manifest, args.subjects)
    result = list_intact(Path(args.out_dir), keys)
    _write_json(Path(args.output), dumps(result))
    log.info("%d intact session(s), %d blocked", len(result["intact"]), len(result["blocked"]))
    return 0


def _cmd_validation_report(args: argparse.Namespace) -> int:
    from .validate.report import build_report, write_report

    manifest, cmap = _load_inputs(args)
    report = build_report(
        manifest,
        cmap,
        Path(args.out_dir),
        subjects=args.subjects,
        count_tolerance=args.count_tolerance,
        tolerate_validator_errors=args.tolerate_validator_errors,
        segmentation=Path(args.segmentation) if args.segmentation else None,
    )
    write_report(report, Path(args.json), Path(args.html))
    log.info(
        "validation %s: %d hard failure(s), %d warning(s); %s",
        report["status"],
        report["summary"]["hard_failures"],
        report["summary"]["warnings"],
        args.html,
    )
    return 0


def _cmd_check_validation(args: argparse.Namespace) -> int:
    from .validate.report import check_report

    line = check_report(Path(args.report))
    print(line)
    if args.output:
        _write_json(Path(args.output), line + "\n")
    return 0


def _add_validation_parsers(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, session: bool = True) -> None:
        p.add_argument("--manifest", required=True, help="index written by the workflow")
        p.add_argument("--columns", required=True, help="resolved column map (index/columns.json)")
        if session:
            p.add_argument("--subject", required=True, help="subject label without 'sub-'")
            p.add_argument("--session", default="", help="session label without 'ses-'")

    p = sub.add_parser("check-session", help="check the source files of one session")
    common(p)
    p.add_argument("--output", required=True, help="result JSON")
    p.set_defaults(func=_cmd_check_session)

    p = sub.add_parser("check-shard", help="read one shard back and compare it with its sources")
    common(p)
    p.add_argument("--shard", required=True, help="the parquet shard")
    p.add_argument("--session-check", required=True, help="the session's check-session JSON")
    p.add_argument("--no-decode", action="store_true", help="do not decode cells with datasets")
    p.add_argument("--output", required=True, help="result JSON")
    p.set_defaults(func=_cmd_check_shard)

    p = sub.add_parser("bids-validator", help="run the official BIDS validator on a dataset")
    p.add_argument("--bids-dir", required=True)
    p.add_argument("--output", required=True, help="result JSON (version, exit code, issues)")
    p.set_defaults(func=_cmd_bids_validator)

    p = sub.add_parser("list-intact-sessions", help="sessions whose shards can be read back")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out-dir", required=True, help="the workflow's out_dir")
    p.add_argument("--subjects", nargs="*", default=None, help="limit to these subjects")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_list_intact)

    p = sub.add_parser("validation-report", help="write validation/report.json and report.html")
    common(p, session=False)
    p.add_argument("--out-dir", required=True, help="the workflow's out_dir")
    p.add_argument("--subjects", nargs="*", default=None, help="limit to these subjects")
    p.add_argument("--count-tolerance", type=int, default=0)
    p.add_argument("--tolerate-validator-errors", action="store_true")
    p.add_argument("--segmentation", default=None, help="index/segmentation.json, if any")
    p.add_argument("--json", required=True)
    p.add_argument("--html", required=True)
    p.set_defaults(func=_cmd_validation_report)

    p = sub.add_parser("check-validation", help="fail when report.json says the validation failed")
    p.add_argument("--report", required=True, help="validation/report.json")
    p.add_argument("--output", default=None, help="written with a one-line summary on success")
    p.set_defaults(func=_cmd_check_validation)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="bids2hub", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index a BIDS tree into OUT_DIR/index/manifest.parquet")
    p.add_argument("--bids-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("write-shard", help="write the parquet shard of one session")
    p.add_argument("--manifest", required=True, help="index written by the workflow")
    p.add_argument("--columns", required=True, help="resolved column map (index/columns.json)")
    p.add_argument("--subject", required=True, help="subject label without 'sub-'")
    p.add_argument("--session", default="", help="session label without 'ses-' (empty: none)")
    p.add_argument("--output", required=True)
    p.add_argument("--content-defined-chunking", action="store_true")
    p.set_defaults(func=_cmd_write_shard)

    p = sub.add_parser("demo-data", help="write the small synthetic demo BIDS dataset")
    p.add_argument("out", help="output folder (must not exist or be empty)")
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo_data)

    _add_validation_parsers(sub)
    return parser


def _terminate(signum: int, _frame: object) -> None:
    # SLURM sends SIGTERM before SIGKILL at a time limit or scancel: unwind so
    # that temporary files are removed and no partial output remains.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bids2hub`` console script."""
    signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Bids2HubError as exc:
        print(f"bids2hub: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

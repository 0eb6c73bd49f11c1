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

from .errors import Bids2HubError

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


def _cmd_pull_image(args: argparse.Namespace) -> int:
    from .deepisles import ensure_image, write_receipt

    info = ensure_image(
        Path(args.image),
        uri=args.uri,
        min_bytes=args.min_bytes,
        given=args.given,
        log=sys.stdout,
    )
    state = "written" if write_receipt(info, args.uri, Path(args.receipt)) else "unchanged"
    print(f"{info.kind} {info.path} verified; receipt {args.receipt} {state}")
    return 0


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

    p = sub.add_parser(
        "pull-image", help="pull (or reuse) and verify the DeepISLES image, write its receipt"
    )
    p.add_argument("--image", required=True, help="SIF path in the cache, or the given image")
    p.add_argument("--uri", required=True, help="digest-pinned reference (docker://...@sha256:...)")
    p.add_argument("--min-bytes", type=int, required=True, help="size floor of a SIF file")
    p.add_argument("--given", action="store_true", help="user-given image: verify, never pull")
    p.add_argument("--receipt", required=True, help="JSON record of the verified image")
    p.set_defaults(func=_cmd_pull_image)

    p = sub.add_parser("demo-data", help="write the small synthetic demo BIDS dataset")
    p.add_argument("out", help="output folder (must not exist or be empty)")
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo_data)
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

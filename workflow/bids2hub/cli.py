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

from bids2hub.errors import Bids2HubError

if TYPE_CHECKING:
    from bids2hub.index.manifest import Manifest
    from bids2hub.shards.colmap import ColumnMap

log = logging.getLogger("bids2hub")


def _cmd_index(args: argparse.Namespace) -> int:
    from bids2hub.index.manifest import load_index
    from bids2hub.layout import Layout

    manifest, rebuilt = load_index(
        Path(args.bids_dir),
        Path(Layout.of(args.out_dir).manifest),
        exclude=[Path(args.out_dir)],
    )
    state = "written" if rebuilt else "up to date"
    print(f"{len(manifest.records)} files, {len(manifest.shard_keys())} shards; index {state}")
    return 0


def _cmd_write_shard(args: argparse.Namespace) -> int:
    from bids2hub.index.manifest import read_manifest, shard_id
    from bids2hub.index.phenotype import read_participants
    from bids2hub.shards.colmap import ColumnMap
    from bids2hub.shards.writer import ShardOptions, write_shard

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
    from bids2hub.demo.data import write_demo_dataset

    out = write_demo_dataset(
        Path(args.out), n_subjects=args.subjects, seed=args.seed, dwi_fov_mm=args.dwi_fov_mm
    )
    print(f"demo BIDS dataset written to {out}")
    return 0


def _cmd_pull_image(args: argparse.Namespace) -> int:
    from bids2hub.segment.deepisles import ensure_image, write_receipt

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


def _cmd_segment_prepare(args: argparse.Namespace) -> int:
    import json

    from bids2hub.fsutil import write_if_changed
    from bids2hub.segment.prepare import prepare_dwi

    target = json.loads(args.target)
    info = prepare_dwi(Path(args.bids_dir), target, Path(args.dwi), Path(args.adc))
    write_if_changed(Path(args.info), json.dumps(info, indent=1, sort_keys=True) + "\n")
    if info["mode"] == "raw":
        log.info(
            "session '%s': %s, b=%g shell (%d volumes, mean b %.1f), b0 volumes %s; FLAIR %s",
            info["session"],
            info["dwi"],
            info["shell"],
            len(info["shell_volumes"]),
            info["shell_mean_b"],
            info["b0_volumes"],
            info["flair"] or "none",
        )
    else:
        log.info(
            "session '%s': trace %s, ADC %s (in %s, brain median %g; x%g to mm^2/s); FLAIR %s",
            info["session"],
            info["dwi"],
            info["adc"],
            info["adc_unit"],
            info["adc_brain_median"],
            info["adc_scale"],
            info["flair"] or "none",
        )
    for name, reason in target.get("skipped", {}).items():
        log.info("not used: %s (%s)", name, reason)
    return 0


def _cmd_segment_run(args: argparse.Namespace) -> int:
    from bids2hub.segment.run import segment_subject

    mask = segment_subject(
        args.backend,
        Path(args.dwi),
        Path(args.adc),
        Path(args.flair) if args.flair else None,
        Path(args.output),
        image=Path(args.image) if args.image else None,
        fast=args.fast,
        skull_strip=args.skull_strip,
        brain_extract=args.brain_extract,
        log=sys.stderr,
        threshold_options=_threshold_values(args),
        scratch_dir=Path(args.scratch_dir) if args.scratch_dir else None,
    )
    log.info("%s: %d lesion voxels (backend %s)", args.output, int(mask.sum()), args.backend)
    return 0


def _cmd_segment_describe(args: argparse.Namespace) -> int:
    import json

    from bids2hub.segment.run import description_json, write_description

    try:
        source = json.loads(Path(args.source_description).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Bids2HubError(f"{args.source_description}: not readable JSON ({exc})") from None
    text = description_json(
        args.backend,
        source,
        container_uri=args.container_uri or None,
        version=args.version,
        brain_extract=args.brain_extract,
        **_threshold_values(args),
    )
    write_description(Path(args.output), text)
    return 0


def _cmd_segment_qc(args: argparse.Namespace) -> int:
    import json

    from bids2hub.segment.qc import write_qc

    plan = json.loads(Path(args.plan).read_text(encoding="utf-8"))
    prepared = {Path(p).parent.name.removeprefix("sub-"): Path(p) for p in args.prepared or ()}
    rows = write_qc(
        plan, Path(args.bids_dir), Path(args.masks_dir), args.backend, Path(args.output), prepared
    )
    for row in rows:
        log.info("%s", "\t".join(row.cells()))
    return 0


def _threshold_options(p: argparse.ArgumentParser) -> None:
    # Defaults filled in by _threshold_values: building the parser (every job does)
    # must not import the segmentation code and numpy.
    p.add_argument(
        "--adc-threshold",
        type=float,
        default=None,
        help="mm^2/s (default: the schema's segment.adc_threshold)",
    )
    p.add_argument(
        "--min-lesion-ml", type=float, default=None, help="(default: segment.min_lesion_ml)"
    )


def _threshold_values(args: argparse.Namespace) -> dict[str, float]:
    """The threshold backend's options, the segmentation code's defaults where not given."""
    from bids2hub.segment.run import ADC_THRESHOLD, MIN_LESION_ML

    return {
        "adc_threshold": ADC_THRESHOLD if args.adc_threshold is None else args.adc_threshold,
        "min_lesion_ml": MIN_LESION_ML if args.min_lesion_ml is None else args.min_lesion_ml,
    }


def _add_segment_parsers(sub: argparse._SubParsersAction) -> None:
    seg = sub.add_parser("segment", help="lesion segmentation: prepare, run, describe, qc")
    cmds = seg.add_subparsers(dest="segment_command", required=True)

    p = cmds.add_parser("prepare", help="write the b~1000 trace and ADC of one subject")
    p.add_argument("--bids-dir", required=True)
    p.add_argument("--target", required=True, help="the subject's entry of the plan (JSON)")
    p.add_argument("--dwi", required=True, help="the b~1000 trace to write")
    p.add_argument("--adc", required=True, help="the ADC (mm^2/s) to write")
    p.add_argument("--info", required=True, help="the record of what was used (JSON)")
    p.set_defaults(func=_cmd_segment_prepare)

    p = cmds.add_parser("run", help="segment one subject and write the checked mask")
    p.add_argument("--backend", required=True, choices=("deepisles", "threshold"))
    p.add_argument("--dwi", required=True, help="prepared b~1000 trace (3D)")
    p.add_argument("--adc", required=True, help="prepared ADC in mm^2/s (3D)")
    p.add_argument("--flair", default="", help="FLAIR image (optional)")
    p.add_argument("--output", required=True)
    p.add_argument("--image", default="", help="DeepISLES container image (backend deepisles)")
    p.add_argument("--fast", action="store_true", help="DeepISLES --fast")
    p.add_argument("--skull-strip", action="store_true", help="DeepISLES --skull_strip")
    p.add_argument(
        "--brain-extract", action="store_true", help="zero the staged trace/ADC outside the brain"
    )
    p.add_argument(
        "--scratch-dir", default="", help="where the backend works (default: next to --output)"
    )
    _threshold_options(p)
    p.set_defaults(func=_cmd_segment_run)

    p = cmds.add_parser("describe", help="write the derivative's dataset_description.json")
    p.add_argument("--backend", required=True, choices=("deepisles", "threshold"))
    p.add_argument("--source-description", required=True, help="the raw dataset's description")
    p.add_argument("--container-uri", default="", help="docker://...@sha256:... (deepisles)")
    p.add_argument("--version", default=None, help="DeepISLES version (deepisles)")
    p.add_argument(
        "--brain-extract", action="store_true", help="the staged inputs were brain-extracted"
    )
    _threshold_options(p)
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_segment_describe)

    p = cmds.add_parser("qc", help="volumes and Dice of every mask -> TSV")
    p.add_argument("--plan", required=True, help="index/segmentation.json")
    p.add_argument("--bids-dir", required=True)
    p.add_argument("--masks-dir", required=True, help="the derivatives dataset")
    p.add_argument("--backend", required=True)
    p.add_argument(
        "--prepared", nargs="*", default=[], help="prepared.json of each subject (ADC unit)"
    )
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_segment_qc)


def _cmd_dataset_card(args: argparse.Namespace) -> int:
    from bids2hub.fsutil import write_if_changed
    from bids2hub.hub.card import load_card_inputs, render_card

    inputs = load_card_inputs(
        bids_description=Path(args.bids_description),
        columns=Path(args.columns),
        repo_id=args.repo_id or None,
        n_subjects=args.n_subjects,
        n_sessions=args.n_sessions,
        report=Path(args.report) if args.report else None,
        masks_description=Path(args.masks_description) if args.masks_description else None,
        n_masks=args.n_masks,
        preview=args.preview,
        qc=Path(args.qc) if args.qc else None,
    )
    changed = write_if_changed(Path(args.output), render_card(inputs))
    log.info("dataset card %s (%s)", args.output, "written" if changed else "unchanged")
    return 0


def _cmd_masks_table(args: argparse.Namespace) -> int:
    from bids2hub.segment.masks import build_masks_table, planned_masks

    sessions = planned_masks(Path(args.plan))
    rows = build_masks_table(
        Path(args.masks_dir), sessions, Path(args.description), Path(args.output)
    )
    for r in rows:
        log.info("%s %s: %.3f ml (%s)", r["subject_id"], r["session_id"] or "", r["volume_ml"],
                 r["backend"])  # fmt: skip
    log.info("%d masks -> %s", len(rows), args.output)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from bids2hub.config import with_defaults
    from bids2hub.layout import Layout
    from bids2hub.plan import prepare
    from bids2hub.status import collect_status, format_table, format_tsv, load_config

    config_dir = Path(__file__).resolve().parents[2] / "config"
    config = load_config([Path(p) for p in args.configfile], config_dir / "config.yaml")
    workdir = Path(args.directory)
    out = with_defaults(config, "out_dir")
    config["out_dir"] = out if Path(out).is_absolute() else str(workdir / out)
    if "bids_dir" in config and not Path(config["bids_dir"]).is_absolute():
        config["bids_dir"] = str(workdir / config["bids_dir"])
    out_dir = Path(config["out_dir"])
    if not Path(Layout.of(out_dir).manifest).is_file():
        raise Bids2HubError(f"{out_dir}: no index yet; run the workflow first")
    setup = prepare(config, config_dir=config_dir, refresh_index=False)
    report = collect_status(setup, workdir)
    sys.stdout.write(format_tsv(report) if args.tsv else format_table(report))
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    import json

    from bids2hub.hub.push import PushOptions, RedactFilter, push_folder
    from bids2hub.locks import push_lock

    # One line per HTTP request is noise; the signed upload URLs are not for logs.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactFilter())
    options = PushOptions.from_config(json.loads(args.options))
    with push_lock(options.repo_id):  # one push per repository at a time on this machine
        result = push_folder(
            Path(args.hub_dir),
            options,
            receipt=Path(args.receipt) if args.receipt else None,
            hash_cache=Path(args.hash_cache) if args.hash_cache else None,
        )
    print(
        f"{options.repo_id}@{options.revision}: {len(result.receipt['files'])} files verified, "
        f"{len(result.uploaded)} uploaded, {len(result.deleted)} deleted, "
        f"{len(result.commits)} commit(s)"
    )
    return 0


def _cmd_dataset_files(args: argparse.Namespace) -> int:
    from bids2hub.hub.restore import copy_dataset_files

    written = copy_dataset_files([Path(p) for p in args.inputs], [Path(p) for p in args.outputs])
    print(f"{len(written)} dataset-level file(s) copied")
    return 0


def _cmd_preview_table(args: argparse.Namespace) -> int:
    from bids2hub.hub.preview import build_preview_table
    from bids2hub.shards.colmap import ColumnMap

    cmap = ColumnMap.from_json(Path(args.columns).read_text(encoding="utf-8"))
    parts = [Path(p) for p in args.parts]
    n = build_preview_table(parts, cmap, Path(args.output), Path(args.thumbnail))
    print(f"{n} session(s) -> {args.output}; card thumbnail {args.thumbnail}")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from bids2hub.hub.push import RedactFilter
    from bids2hub.hub.restore import restore

    logging.getLogger("httpx2").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactFilter())
    result = restore(
        args.repo_id, Path(args.out), subjects=args.subjects or None, revision=args.revision
    )
    print(
        f"{args.repo_id}@{result.head}: {len(result.files)} file(s) from {result.shards} "
        f"shard(s) -> {args.out}"
    )
    return 0


def _load_inputs(args: argparse.Namespace) -> tuple[Manifest, ColumnMap]:
    from bids2hub.index.manifest import read_manifest
    from bids2hub.shards.colmap import ColumnMap

    manifest = read_manifest(Path(args.manifest))
    cmap = ColumnMap.from_json(Path(args.columns).read_text(encoding="utf-8"))
    return manifest, cmap


def _write_json(path: Path, text: str) -> None:
    from bids2hub.fsutil import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _cmd_check_sources(args: argparse.Namespace) -> int:
    from bids2hub.validate.subject import check_subject_sources

    manifest, cmap = _load_inputs(args)
    sessions = args.session or [""]
    results = check_subject_sources(
        manifest, cmap, args.subject, sessions, [Path(p) for p in args.output]
    )
    for result in results:
        log.info(
            "%s: %s checked; %d failure(s), %d warning(s)",
            result["shard"],
            result["checked"],
            len(result["failures"]),
            len(result["warnings"]),
        )
    return 0


def _cmd_check_shards(args: argparse.Namespace) -> int:
    from bids2hub.validate.subject import ReadBack, check_subject_shards

    manifest, cmap = _load_inputs(args)
    n = len(args.shard)
    sessions = args.session or [""] * n
    previews = args.preview or [None] * n
    lists = {"--session": sessions, "--session-check": args.session_check,
             "--output": args.output, "--preview": previews}  # fmt: skip
    for flag, values in lists.items():
        if len(values) != n:
            raise SystemExit(f"check-shards: {n} --shard but {len(values)} {flag}")
    items = [
        ReadBack(ses, Path(shard), Path(check), Path(out), Path(pre) if pre else None)
        for ses, shard, check, out, pre in zip(
            sessions, args.shard, args.session_check, args.output, previews, strict=True
        )
    ]
    results = check_subject_shards(
        manifest, cmap, args.subject, items, decode=not args.no_decode, height=args.height
    )
    for result in results:
        log.info(
            "%s: %s; %d failure(s)", result["shard"], result["checked"], len(result["failures"])
        )
    return 0


def _cmd_bids_validator(args: argparse.Namespace) -> int:
    from bids2hub.validate.bidsvalidator import run_validator

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
    from bids2hub.index.manifest import read_manifest
    from bids2hub.layout import CheckFiles
    from bids2hub.validate.report import list_intact, selected_keys
    from bids2hub.validate.sources import dumps

    manifest = read_manifest(Path(args.manifest))
    keys = selected_keys(manifest, args.subjects)
    result = list_intact(CheckFiles(args.session_checks), keys)
    _write_json(Path(args.output), dumps(result))
    log.info("%d intact session(s), %d blocked", len(result["intact"]), len(result["blocked"]))
    return 0


def _cmd_validation_report(args: argparse.Namespace) -> int:
    from bids2hub.layout import CheckFiles
    from bids2hub.validate.report import build_report, write_report

    manifest, cmap = _load_inputs(args)
    report = build_report(
        manifest,
        cmap,
        CheckFiles(args.session_checks, args.shard_checks, args.validator),
        subjects=args.subjects,
        count_tolerance=args.count_tolerance,
        tolerate_validator_errors=args.tolerate_validator_errors,
        segmentation=Path(args.segmentation) if args.segmentation else None,
        qc=Path(args.qc) if args.qc else None,
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
    from bids2hub.validate.report import check_report

    line = check_report(Path(args.report))
    print(line)
    if args.output:
        _write_json(Path(args.output), line + "\n")
    return 0


_CHECKS_HELP = "the session checks' path pattern, with {sub} and {shard} (the rule's output)"


def _add_validation_parsers(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, session: bool = True) -> None:
        p.add_argument("--manifest", required=True, help="index written by the workflow")
        p.add_argument("--columns", required=True, help="resolved column map (index/columns.json)")
        if session:
            p.add_argument("--subject", required=True, help="subject label without 'sub-'")
            p.add_argument("--session", default="", help="session label without 'ses-'")

    p = sub.add_parser("check-sources", help="check the source files of a subject's sessions")
    common(p, session=False)
    p.add_argument("--subject", required=True, help="subject label without 'sub-'")
    p.add_argument(
        "--session",
        action="append",
        default=[],
        help="a session label without 'ses-' (repeat, in the order of --output)",
    )
    p.add_argument("--output", action="append", required=True,
                   help="a session's result JSON (repeat: one per session)")  # fmt: skip
    p.set_defaults(func=_cmd_check_sources)

    p = sub.add_parser("check-shards", help="read a subject's shards back (and their previews)")
    common(p, session=False)
    p.add_argument("--subject", required=True, help="subject label without 'sub-'")
    each = "(repeat: one per --shard, in the same order)"
    p.add_argument("--session", action="append", default=[], help=f"session label {each}")
    p.add_argument("--shard", action="append", required=True, help="a parquet shard (repeat)")
    p.add_argument(
        "--session-check",
        action="append",
        required=True,
        help=f"the session's check-sources JSON {each}",
    )
    p.add_argument("--output", action="append", required=True, help=f"result JSON {each}")
    p.add_argument(
        "--preview",
        action="append",
        default=[],
        help=f"the session's preview row (parquet) {each}; none: no preview",
    )
    p.add_argument("--height", type=int, default=None, help="preview pixels per slice")
    p.add_argument("--no-decode", action="store_true", help="do not decode cells with datasets")
    p.set_defaults(func=_cmd_check_shards)  # fmt: skip

    p = sub.add_parser("bids-validator", help="run the official BIDS validator on a dataset")
    p.add_argument("--bids-dir", required=True)
    p.add_argument("--output", required=True, help="result JSON (version, exit code, issues)")
    p.set_defaults(func=_cmd_bids_validator)

    p = sub.add_parser("list-intact-sessions", help="sessions whose shards can be read back")
    p.add_argument("--manifest", required=True)
    p.add_argument("--session-checks", required=True, help=_CHECKS_HELP)
    p.add_argument("--subjects", nargs="*", default=None, help="limit to these subjects")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_list_intact)

    p = sub.add_parser("validation-report", help="write validation/report.json and report.html")
    common(p, session=False)
    p.add_argument("--session-checks", required=True, help=_CHECKS_HELP)
    p.add_argument("--shard-checks", required=True, help="the round-trips' pattern, likewise")
    p.add_argument("--validator", required=True, help="the BIDS validator's result (JSON)")
    p.add_argument("--subjects", nargs="*", default=None, help="limit to these subjects")
    p.add_argument("--count-tolerance", type=int, required=True)
    p.add_argument("--tolerate-validator-errors", action="store_true")
    p.add_argument("--segmentation", default=None, help="index/segmentation.json, if any")
    p.add_argument("--qc", default=None, help="qc/segmentation.tsv, if any (flagged masks)")
    p.add_argument("--json", required=True)
    p.add_argument("--html", required=True)
    p.set_defaults(func=_cmd_validation_report)

    p = sub.add_parser("check-validation", help="fail when report.json says the validation failed")
    p.add_argument("--report", required=True, help="validation/report.json")
    p.add_argument("--output", default=None, help="written with a one-line summary on success")
    p.set_defaults(func=_cmd_check_validation)


def _cmd_viewer(args: argparse.Namespace) -> int:
    import json

    from bids2hub.paper.viewer import ViewerCandidate, pick_largest_lesion, write_viewer

    if args.candidates:
        try:
            cands = [ViewerCandidate(**c) for c in json.loads(args.candidates)]
        except (ValueError, TypeError) as exc:
            raise Bids2HubError(f"--candidates: not a list of viewer candidates ({exc})") from None
        chosen, volume = pick_largest_lesion(cands)
        log.info(
            "sub-%s has the largest predicted lesion (%.3f mL) of %d segmented subject(s)",
            chosen.subject,
            volume,
            len(cands),
        )
        dwi, mask, subject, session = chosen.dwi, chosen.mask, chosen.subject, chosen.session
    elif args.dwi and args.mask and args.subject:
        dwi, mask, subject, session = args.dwi, args.mask, args.subject, args.session
    else:
        raise Bids2HubError("viewer: give --candidates, or --dwi, --mask and --subject")
    size = write_viewer(
        Path(dwi), Path(mask), Path(args.output),
        subject=subject.removeprefix("sub-"), session=session.removeprefix("ses-"),
    )  # fmt: skip
    log.info("viewer of sub-%s: %d bytes -> %s", subject.removeprefix("sub-"), size, args.output)
    return 0


def _add_viewer_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "viewer", help="write the self-contained NiiVue page of a b~1000 trace and its mask"
    )
    p.add_argument(
        "--candidates",
        default="",
        help="JSON list of {subject, session, dwi, mask}: show the largest predicted lesion",
    )
    p.add_argument("--dwi", default="", help="the b~1000 trace (NIfTI)")
    p.add_argument("--mask", default="", help="the lesion mask on the same grid (NIfTI)")
    p.add_argument("--subject", default="", help="subject label (for the title)")
    p.add_argument("--session", default="", help="session label (for the title)")
    p.add_argument("--output", required=True, help="the HTML page")
    p.set_defaults(func=_cmd_viewer)


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
    p = sub.add_parser("dataset-card", help="write the dataset card (hub/README.md)")
    p.add_argument("--bids-description", required=True, help="the source dataset_description.json")
    p.add_argument("--columns", required=True, help="resolved column map (index/columns.json)")
    p.add_argument("--repo-id", default="", help="Hub repository for the loading examples")
    p.add_argument("--n-subjects", type=int, required=True)
    p.add_argument("--n-sessions", type=int, required=True)
    p.add_argument("--report", default="", help="validation/report.json (its counts)")
    p.add_argument("--masks-description", default="", help="masks' dataset_description.json")
    p.add_argument("--n-masks", type=int, default=0)
    p.add_argument("--preview", action="store_true", help="list the preview configuration")
    p.add_argument("--qc", default="", help="qc/segmentation.tsv (empty masks, agreement)")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_dataset_card)

    p = sub.add_parser("masks-table", help="write the lesion masks table (hub/masks/masks.parquet)")
    p.add_argument("--masks-dir", required=True, help="the masks' derivatives dataset")
    p.add_argument("--plan", required=True, help="segmentation plan (index/segmentation.json)")
    p.add_argument("--description", required=True, help="masks' dataset_description.json")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_masks_table)

    p = sub.add_parser(
        "push", help="push hub/ to the Hugging Face Hub (token: HF_TOKEN or cached login)"
    )
    p.add_argument("--hub-dir", required=True)
    p.add_argument("--options", required=True, help="the hub config section as JSON")
    p.add_argument("--receipt", default="", help="default HUB_DIR/.push-receipt.json")
    p.add_argument("--hash-cache", default="", help="JSON cache of local sha256 between runs")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("dataset-files", help="copy the dataset-level files pushed under hub/bids/")
    p.add_argument("--inputs", nargs="+", required=True, help="files of the BIDS root")
    p.add_argument("--outputs", nargs="+", required=True, help="their copies, in the same order")
    p.set_defaults(func=_cmd_dataset_files)

    p = sub.add_parser("preview-table", help="the preview table (hub/preview/preview.parquet)")
    p.add_argument("--columns", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--thumbnail", required=True, help="the card's thumbnail PNG")
    p.add_argument("parts", nargs="+", help="the sessions' preview rows, in order")
    p.set_defaults(func=_cmd_preview_table)

    p = sub.add_parser(
        "restore",
        help="write a BIDS dataset back from a pushed repository (token: HF_TOKEN or login)",
    )
    p.add_argument("repo_id", help="the dataset repository, owner/name")
    p.add_argument("out", help="the BIDS root to write")
    p.add_argument("--subjects", nargs="+", default=[], help="labels (default: every subject)")
    p.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("demo-data", help="write the small synthetic demo BIDS dataset")
    p.add_argument("out", help="output folder (must not exist or be empty)")
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dwi-fov-mm",
        type=float,
        default=None,
        help="in-plane DWI field of view (256: the variant that wraps DeepISLES' SEALS grid)",
    )
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser(
        "status",
        help="done / failed / missing per stage for every subject and session of a run",
    )
    p.add_argument(
        "--configfile", action="append", default=[],
        help="the run's config file(s), as given to snakemake (default: the demo config)",
    )  # fmt: skip
    p.add_argument(
        "-d", "--directory", default=".",
        help="the run's working folder (snakemake -d; holds .snakemake/)",
    )  # fmt: skip
    p.add_argument("--tsv", action="store_true", help="one line per subject/session/stage")
    p.set_defaults(func=_cmd_status)

    _add_segment_parsers(sub)
    _add_validation_parsers(sub)
    _add_viewer_parser(sub)
    from bids2hub.paper.cli import add_parsers as _add_paper_parsers

    _add_paper_parsers(sub)
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

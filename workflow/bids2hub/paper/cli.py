"""``bids2hub paper-*`` subcommands (one per rule of workflow/rules/paper.smk)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("bids2hub")


def _keys(args: argparse.Namespace) -> tuple[Any, list[tuple[str, str]]]:
    from bids2hub.index.manifest import read_manifest
    from bids2hub.validate.report import selected_keys

    manifest = read_manifest(Path(args.manifest))
    return manifest, selected_keys(manifest, args.subjects)


def _cmd_volumes(args: argparse.Namespace) -> int:
    from bids2hub.paper.cohort import VOLUME_COLUMNS, measure_volumes, write_tsv

    manifest, keys = _keys(args)
    rows = measure_volumes(manifest, keys, Path(args.qc) if args.qc else None)
    write_tsv(Path(args.output), VOLUME_COLUMNS, (r.cells() for r in rows))
    for r in rows:
        log.info("%s sub-%s %s: %.3f mL", r.source, r.subject, r.session, r.volume_ml)
    return 0


def _cmd_cohort(args: argparse.Namespace) -> int:
    from bids2hub.index.phenotype import read_participants
    from bids2hub.paper.cohort import cohort_rows, dataset_title, read_volumes, write_cohort

    manifest, keys = _keys(args)
    rec = manifest.top_level("participants.tsv")
    tsv = manifest.absolute(rec) if rec else None
    people = read_participants(tsv)
    phenotype = json.loads(args.phenotype)
    volumes = read_volumes(Path(args.volumes))
    rows = cohort_rows(
        manifest, keys, people, phenotype, volumes, where=str(tsv or "participants.tsv")
    )
    desc_rec = manifest.top_level("dataset_description.json")
    description = (
        json.loads(manifest.absolute(desc_rec).read_text(encoding="utf-8")) if desc_rec else None
    )
    title = dataset_title(description, len({sub for sub, _ in keys}))
    write_cohort(rows, phenotype, title, Path(args.tsv), Path(args.md))
    log.info("%d rows -> %s, %s", len(rows), args.tsv, args.md)
    return 0


def _cmd_sessions(args: argparse.Namespace) -> int:
    from bids2hub.paper.figures import plot_sessions

    manifest, keys = _keys(args)
    for path in plot_sessions(manifest, keys, Path(args.stem)):
        log.info("wrote %s", path)
    return 0


def _cmd_volume_figures(args: argparse.Namespace) -> int:
    from bids2hub.paper.cohort import read_volumes
    from bids2hub.paper.figures import plot_lesion_volumes, plot_volume_agreement

    volumes = read_volumes(Path(args.volumes))
    written = plot_lesion_volumes(volumes, Path(args.distribution))
    written += plot_volume_agreement(volumes, Path(args.agreement))
    for path in written:
        log.info("wrote %s", path)
    return 0


def _cmd_overlap(args: argparse.Namespace) -> int:
    from bids2hub.paper.cohort import read_volumes
    from bids2hub.paper.figures import overlap_map, plot_overlap, template, write_overlap_nifti

    volumes = read_volumes(Path(args.volumes))
    ref = template()
    maps = []
    for source, root in (("predicted", Path(args.out_dir)), ("expert", Path(args.bids_dir))):
        paths = [root / v.path for v in volumes if v.source == source]
        if paths:
            total = overlap_map(paths, ref)
            maps.append((source, total, len(paths)))
            if source == "predicted":
                write_overlap_nifti(total, ref, Path(args.nifti))
    if not any(s == "predicted" for s, _, _ in maps):
        import numpy as np

        write_overlap_nifti(np.zeros(ref.shape[:3], np.uint16), ref, Path(args.nifti))
    for path in plot_overlap(maps, ref, Path(args.stem)):
        log.info("wrote %s", path)
    return 0


def _cmd_qc_overlay(args: argparse.Namespace) -> int:
    from bids2hub.paper.figures import plot_qc_overlay

    for path in plot_qc_overlay(Path(args.trace), Path(args.mask), args.title, Path(args.output)):
        log.info("wrote %s", path)
    return 0


def _cmd_runtimes(args: argparse.Namespace) -> int:
    from bids2hub.paper.runtimes import collect, plot_runtimes, write_runtimes

    rows = collect(Path(args.benchmarks))
    write_runtimes(rows, Path(args.tsv))
    plot_runtimes(rows, Path(args.stem))
    log.info("%d rules, %d jobs -> %s", len(rows), sum(r.jobs for r in rows), args.tsv)
    return 0


def _cmd_provenance(args: argparse.Namespace) -> int:
    from bids2hub.index.manifest import read_manifest
    from bids2hub.paper.provenance import build_provenance, write_provenance

    manifest = read_manifest(Path(args.manifest))
    inputs = json.loads(Path(args.inputs).read_text(encoding="utf-8"))
    record = build_provenance(
        config=inputs["config"],
        manifest=manifest,
        out_dir=Path(args.out_dir),
        outputs=[Path(p) for p in inputs["outputs"]],
        located=[Path(p) for p in inputs["located"]],
        git=args.git_commit or None,
        masks_description=Path(args.masks_description) if args.masks_description else None,
        receipt=Path(args.receipt) if args.receipt else None,
        hash_cache=Path(args.hash_cache) if args.hash_cache else None,
    )
    write_provenance(record, Path(args.output))
    log.info("%d outputs hashed -> %s", len(record["outputs"]), args.output)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the ``paper-*`` subcommands."""

    def selection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--manifest", required=True, help="index/manifest.parquet")
        p.add_argument("--subjects", nargs="*", default=None, help="limit to these subjects")

    p = sub.add_parser("paper-volumes", help="lesion volumes of expert and predicted masks")
    selection(p)
    p.add_argument("--qc", default="", help="qc/segmentation.tsv (predicted masks), if any")
    p.add_argument("--output", required=True, help="paper/lesion_volumes.tsv")
    p.set_defaults(func=_cmd_volumes)

    p = sub.add_parser("paper-cohort", help="Table 1: paper/cohort.tsv and cohort.md")
    selection(p)
    p.add_argument("--volumes", required=True, help="paper/lesion_volumes.tsv")
    p.add_argument("--phenotype", required=True, help="JSON: role -> participants.tsv column")
    p.add_argument("--tsv", required=True)
    p.add_argument("--md", required=True)
    p.set_defaults(func=_cmd_cohort)

    p = sub.add_parser("paper-sessions", help="figure: sessions per subject, modality coverage")
    selection(p)
    p.add_argument("--stem", required=True, help="writes STEM.png and STEM.svg")
    p.set_defaults(func=_cmd_sessions)

    p = sub.add_parser("paper-volume-figures", help="figures: volume distribution, agreement")
    p.add_argument("--volumes", required=True, help="paper/lesion_volumes.tsv")
    p.add_argument("--distribution", required=True, help="stem of the distribution figure")
    p.add_argument("--agreement", required=True, help="stem of the predicted-vs-expert figure")
    p.set_defaults(func=_cmd_volume_figures)

    p = sub.add_parser("paper-overlap", help="lesion-overlap map (NIfTI and figure)")
    p.add_argument("--volumes", required=True, help="paper/lesion_volumes.tsv (mask paths)")
    p.add_argument("--out-dir", required=True, help="root of the predicted masks' paths")
    p.add_argument("--bids-dir", required=True, help="root of the expert masks' paths")
    p.add_argument("--nifti", required=True, help="frequency map of the predicted masks")
    p.add_argument("--stem", required=True)
    p.set_defaults(func=_cmd_overlap)

    p = sub.add_parser("paper-qc-overlay", help="mask contour on the b~1000 trace (PNG)")
    p.add_argument("--trace", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_qc_overlay)

    p = sub.add_parser("paper-runtimes", help="runtimes per rule from the benchmark files")
    p.add_argument("--benchmarks", required=True, help="OUT_DIR/benchmarks")
    p.add_argument("--tsv", required=True)
    p.add_argument("--stem", required=True)
    p.set_defaults(func=_cmd_runtimes)

    p = sub.add_parser("paper-provenance", help="paper/provenance.json")
    p.add_argument("--manifest", required=True)
    p.add_argument("--inputs", required=True, help="work/paper/provenance-inputs.json")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--git-commit", default="")
    p.add_argument("--masks-description", default="")
    p.add_argument("--receipt", default="", help="the DeepISLES image receipt, if any")
    p.add_argument("--hash-cache", default="")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_provenance)

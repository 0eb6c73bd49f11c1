"""The aggregate ``validation/report.json`` and ``report.html``.

Reads the per-session and per-shard results, the validator's result and the
index, and writes both files atomically. It never fails because of what it
finds: ``status`` says ``fail`` and :func:`check_report` (the workflow's last
validation step) turns that into a failed run, so the report is always there
to read. The keys of ``report.json`` are documented in ``config/README.md``
("Validation report").
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids2hub.config import schema_defaults
from bids2hub.errors import ValidationError
from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import natural_key
from bids2hub.index.manifest import Manifest, shard_id
from bids2hub.layout import CheckFiles, Layout
from bids2hub.shards.colmap import ColumnMap
from bids2hub.validate import RESULT_VERSION
from bids2hub.validate.bidsvalidator import summarise
from bids2hub.validate.counts import check_expected, compare_counts, found_counts
from bids2hub.validate.model import (
    CheckTally,
    CountLine,
    Excluded,
    Finding,
    IdentifyingFile,
    Masks,
    Report,
    Segmentation,
    Summary,
    ValidatorSummary,
    load_report,
    read_json,
)
from bids2hub.validate.sources import finding, is_intact, scan_text

#: The ``validation`` section's defaults (the schema's).
_DEFAULTS = schema_defaults("validation")
#: Checks whose failures fail the workflow; anything else is a warning.
HARD_CHECKS = (
    "bids_validator",
    "counts",
    "integrity",
    "shard_plan",
    "companion",
    "sidecar",
    "dwi_gradients",
    "mask_grid",
    "round_trip",
    "decode",
)


def as_checks(where: CheckFiles | Path) -> CheckFiles:
    """The check files: as given (a job: its rule's paths), or those of an out_dir."""
    return where if isinstance(where, CheckFiles) else Layout.of(where).checks()


def session_result(checks: CheckFiles | Path, sub: str, ses: str) -> Path:
    """Where the source check of a session is."""
    return as_checks(checks).session(sub, shard_id(sub, ses))


def shard_result(checks: CheckFiles | Path, sub: str, ses: str) -> Path:
    """Where the round-trip of a shard is."""
    return as_checks(checks).shard(sub, shard_id(sub, ses))


def selected_keys(manifest: Manifest, subjects: list[str] | None) -> list[tuple[str, str]]:
    """The (subject, session) pairs of the run (all, or those of ``subjects``)."""
    keys = manifest.shard_keys()
    if subjects:
        wanted = {s.removeprefix("sub-") for s in subjects}
        keys = [k for k in keys if k[0] in wanted]
    return keys


def list_intact(checks: CheckFiles | Path, keys: list[tuple[str, str]]) -> dict[str, Any]:
    """Which sessions' shards can be read back (``validation/intact-sessions.json``).

    A session whose sources failed a blocking check (unreadable image, no
    column plan; a missing or unreadable companion or sidecar is not blocking:
    its shard holds null in that cell) has no shard to compare; it is listed under
    ``blocked`` and the report names its failures instead.
    """
    intact, blocked = [], []
    for sub, ses in keys:
        result = read_json(session_result(checks, sub, ses))
        (intact if is_intact(result) else blocked).append(shard_id(sub, ses))
    return {"version": RESULT_VERSION, "intact": intact, "blocked": blocked}


def _segmentation(path: Path | None, qc: Path | None = None) -> Segmentation:
    if path is None or not path.is_file():
        return {"available": False, "excluded": []}
    plan = read_json(path)
    excluded = plan.get("excluded") or {}
    rows: list[Excluded] = [
        {"subject": f"sub-{sub.removeprefix('sub-')}", "reason": str(reason)}
        for sub, reason in sorted(excluded.items(), key=lambda kv: natural_key(kv[0]))
    ]
    return {
        "available": True,
        "targets": len(plan.get("targets") or {}),
        "excluded": rows,
        "masks": _masks_summary(qc),
    }


def _masks_summary(qc: Path | None) -> Masks | None:
    """Counts of the QC table: masks, empty ones, and every flagged mask (never silent)."""
    if qc is None or not qc.is_file():
        return None
    from bids2hub.paper.cohort import read_tsv

    rows = read_tsv(qc)
    return {
        "n": len(rows),
        "empty": sum(r.get("status") == "empty" for r in rows),
        "flagged": [
            {"subject": r["subject_id"], "session": r["session_id"], "flag": r["flag"]}
            for r in rows
            if r.get("flag")
        ],
    }


class Findings:
    """The report's ``failures`` and ``warnings``, in the order they were found."""

    def __init__(self) -> None:
        self.failures: list[Finding] = []
        self.warnings: list[Finding] = []

    def add(self, items: list[Finding], shard: str | None = None) -> None:
        """File ``items`` by their check (:data:`HARD_CHECKS` fail), tagged with ``shard``."""
        for item in items:
            entry: Finding = {**item, "shard": shard} if shard else dict(item)  # type: ignore[assignment]
            (self.failures if item["check"] in HARD_CHECKS else self.warnings).append(entry)

    def fail(self, item: Finding) -> None:
        """A hard failure, whatever its check."""
        self.failures.append(item)

    def warn(self, item: Finding) -> None:
        """A warning, whatever its check."""
        self.warnings.append(item)


@dataclass
class SessionTotals:
    """What the per-session and per-shard results of the run add up to."""

    checked: Counter[str] = field(default_factory=Counter)  # files by kind (nifti, dwi, ...)
    shards_checked: int = 0
    cells: int = 0
    columns_decoded: int = 0
    null_cells: int = 0  # companion/sidecar cells null because their file is unusable
    not_checked: list[str] = field(default_factory=list)  # blocked sessions' shards


def gather_sessions(
    checks: CheckFiles, keys: list[tuple[str, str]], findings: Findings
) -> SessionTotals:
    """Add up the source check of every session and the round-trip of every intact shard.

    A session that failed a blocking check has no round-trip: its shard is listed
    under ``not_checked``.
    """
    totals = SessionTotals()
    for sub, ses in keys:
        sid = shard_id(sub, ses)
        result = read_json(session_result(checks, sub, ses))
        totals.checked.update(result.get("checked", {}))
        findings.add(result.get("failures", []) + result.get("warnings", []), sid)
        if not is_intact(result):
            totals.not_checked.append(sid)
            continue
        rt = read_json(shard_result(checks, sub, ses))
        totals.shards_checked += 1
        totals.cells += rt["checked"]["cells"]
        totals.columns_decoded += rt["checked"]["columns_decoded"]
        totals.null_cells += rt["checked"].get("null_cells", 0)
        findings.add(rt.get("failures", []), sid)
    return totals


def scan_top_level(manifest: Manifest, findings: Findings) -> int:
    """Scan the dataset's top-level JSON and TSV files for identifying keys; how many."""
    scanned = 0
    for rec in manifest.records:
        if rec.sub or "/" in rec.path or not rec.path.endswith((".json", ".tsv")):
            continue
        scanned += 1
        try:
            _entry, items = scan_text(manifest.absolute(rec), rec.path)
        except OSError as exc:
            items = [finding("integrity", rec.path, f"{rec.path}: cannot read ({exc.strerror})")]
        findings.add(items)
    return scanned


def validator_section(
    checks: CheckFiles, findings: Findings, *, tolerate_errors: bool
) -> ValidatorSummary:
    """The BIDS validator's summary; its errors (and a validator that did not finish) filed.

    Errors are hard failures, or warnings with ``tolerate_errors``; a validator that
    did not run to the end is always a hard failure.
    """
    vpath = Path(checks.validator)
    validator = summarise(
        read_json(vpath) if vpath.is_file() else None, tolerate_errors=tolerate_errors
    )
    for issue in validator["issues"]:
        if issue["severity"] != "error":
            continue
        where = issue["examples"][0] if issue["examples"] else ""
        code = issue["code"] + (f" ({issue['sub_code']})" if issue["sub_code"] else "")
        item = finding(
            "bids_validator",
            where,
            f"{code}: {issue['count']} error(s), e.g. {', '.join(issue['examples']) or '-'}",
        )
        (findings.warn if tolerate_errors else findings.fail)(item)
    if validator["status"] == "not-run":
        detail = validator.get("detail", "") or "no result"
        findings.fail(
            finding("bids_validator", "", f"the BIDS validator did not run to the end: {detail}")
        )
    return validator


def count_section(
    manifest: Manifest,
    keys: list[tuple[str, str]],
    expected: dict[str, int],
    findings: Findings,
    *,
    tolerance: int,
    subset: bool,
) -> list[CountLine]:
    """Expected against found counts; each mismatch filed as a hard failure."""
    counts = compare_counts(
        found_counts(manifest, keys), expected, tolerance=tolerance, subset=subset
    )
    for line in counts:
        if line["status"] == "mismatch":
            findings.fail(
                finding(
                    "counts",
                    "",
                    f"{line['name']}: expected {line['expected']}, found {line['found']}"
                    f" (tolerance {tolerance})",
                )
            )
    return counts


def summary_section(findings: Findings) -> Summary:
    """How many failures and warnings, in all and per check."""
    by_check: dict[str, CheckTally] = {}
    for kind, items in (("failures", findings.failures), ("warnings", findings.warnings)):
        for item in items:
            by_check.setdefault(item["check"], {"failures": 0, "warnings": 0})[kind] += 1  # type: ignore[literal-required]
    return {
        "hard_failures": len(findings.failures),
        "warnings": len(findings.warnings),
        "by_check": dict(sorted(by_check.items())),
    }


def _failures_of(findings: Findings, *checks: str) -> int:
    return sum(1 for f in findings.failures if f["check"] in checks)


def build_report(
    manifest: Manifest,
    cmap: ColumnMap,
    checks: CheckFiles | Path,
    *,
    subjects: list[str] | None = None,
    count_tolerance: int = _DEFAULTS["count_tolerance"],
    tolerate_validator_errors: bool = _DEFAULTS["tolerate_validator_errors"],
    segmentation: Path | None = None,
    qc: Path | None = None,
) -> Report:
    """Gather every check of the run into the report (see ``config/README.md``).

    The steps: :func:`gather_sessions`, :func:`scan_top_level`,
    :func:`validator_section`, :func:`count_section`, :func:`summary_section`; the
    order of ``failures`` and ``warnings`` is the order of these steps. ``checks``: the
    per-session results and the validator's result, as the rules wrote them (or an
    out_dir holding them).
    """
    checks = as_checks(checks)
    expected = check_expected(cmap.expected, f"dataset map '{cmap.name}'")
    keys = selected_keys(manifest, subjects)
    subset = len(keys) < len(manifest.shard_keys())
    findings = Findings()
    totals = gather_sessions(checks, keys, findings)
    top_scanned = scan_top_level(manifest, findings)
    validator = validator_section(checks, findings, tolerate_errors=tolerate_validator_errors)
    counts = count_section(
        manifest, keys, expected, findings, tolerance=count_tolerance, subset=subset
    )
    identifying: list[IdentifyingFile] = [
        {"file": w["file"], "keys": w.get("keys", [])}
        for w in findings.warnings
        if w["check"] == "identifying"
    ]
    checked = totals.checked
    return {
        "version": RESULT_VERSION,
        "status": "fail" if findings.failures else "pass",
        "summary": summary_section(findings),
        "dataset": {
            "name": cmap.name,
            "pretty_name": cmap.pretty_name,
            "bids_dir": str(manifest.root),
            "subjects": len({k[0] for k in keys}),
            "sessions": len(keys),
            "subset": subset,
        },
        "validator": validator,
        "count_tolerance": count_tolerance,
        "counts": counts,
        "integrity": {
            "nifti_checked": checked["nifti"],
            "dwi_checked": checked["dwi"],
            "masks_checked": checked["masks"],
            "failures": _failures_of(
                findings, "integrity", "companion", "sidecar", "dwi_gradients", "mask_grid"
            ),
        },
        "round_trip": {
            "shards_checked": totals.shards_checked,
            "cells_checked": totals.cells,
            "columns_decoded": totals.columns_decoded,
            "null_cells": totals.null_cells,
            "not_checked": totals.not_checked,
            "failures": _failures_of(findings, "round_trip", "decode"),
        },
        "identifying": {
            "files_scanned": checked["json"] + checked["tsv"] + top_scanned,
            "files_flagged": len(identifying),
            "findings": identifying,
        },
        "segmentation": _segmentation(segmentation, qc),
        "failures": findings.failures,
        "warnings": findings.warnings,
    }


def write_report(report: Report, json_path: Path, html_path: Path) -> None:
    """Write ``report.json`` and ``report.html`` atomically."""
    from bids2hub.validate.html import render

    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    with atomic_path(html_path) as tmp:
        tmp.write_text(render(report), encoding="utf-8")


def check_report(json_path: Path) -> str:
    """Raise :class:`ValidationError` when the report says ``fail``; else a one-line summary.

    Raises
    ------
    ValidationError
        The report says ``fail``, or ``json_path`` is not a report of this version
        and layout (one line naming it, see :func:`bids2hub.validate.model.load_report`).
    """
    report = load_report(Path(json_path))
    html_path = Path(json_path).with_suffix(".html")
    n = report["summary"]["hard_failures"]
    if report["status"] != "pass":
        raise ValidationError(f"validation failed: {n} hard failure(s), see {html_path}")
    w = report["summary"]["warnings"]
    return f"validation passed ({w} warning(s)), see {html_path}"

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
from pathlib import Path
from typing import Any

from bids2hub.errors import ValidationError
from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import natural_key
from bids2hub.index.manifest import Manifest, shard_id
from bids2hub.shards.colmap import ColumnMap
from bids2hub.validate import RESULT_VERSION
from bids2hub.validate.bidsvalidator import summarise
from bids2hub.validate.counts import check_expected, compare_counts, found_counts
from bids2hub.validate.sources import finding, is_intact, scan_text

#: Checks whose failures fail the workflow; anything else is a warning.
HARD_CHECKS = (
    "bids_validator",
    "counts",
    "integrity",
    "shard_plan",
    "dwi_gradients",
    "mask_grid",
    "round_trip",
    "decode",
)


def validation_dir(out_dir: Path) -> Path:
    """``{out_dir}/validation``."""
    return Path(out_dir) / "validation"


def session_result(out_dir: Path, sub: str, ses: str) -> Path:
    """Where the source check of a session is written."""
    return validation_dir(out_dir) / "sessions" / f"sub-{sub}" / f"{shard_id(sub, ses)}.json"


def shard_result(out_dir: Path, sub: str, ses: str) -> Path:
    """Where the round-trip of a shard is written."""
    return validation_dir(out_dir) / "shards" / f"sub-{sub}" / f"{shard_id(sub, ses)}.json"


def selected_keys(manifest: Manifest, subjects: list[str] | None) -> list[tuple[str, str]]:
    """The (subject, session) pairs of the run (all, or those of ``subjects``)."""
    keys = manifest.shard_keys()
    if subjects:
        wanted = {s.removeprefix("sub-") for s in subjects}
        keys = [k for k in keys if k[0] in wanted]
    return keys


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"{path}: missing (run the validation rules first)") from None
    except ValueError as exc:
        raise ValidationError(f"{path}: not valid JSON ({exc})") from None


def list_intact(out_dir: Path, keys: list[tuple[str, str]]) -> dict[str, Any]:
    """Which sessions' shards can be read back (``validation/intact-sessions.json``).

    A session whose sources failed a blocking check (unreadable image, missing
    companion file, no column plan) has no shard to compare; it is listed under
    ``blocked`` and the report names its failures instead.
    """
    intact, blocked = [], []
    for sub, ses in keys:
        result = _load(session_result(out_dir, sub, ses))
        (intact if is_intact(result) else blocked).append(shard_id(sub, ses))
    return {"version": RESULT_VERSION, "intact": intact, "blocked": blocked}


def _top_level_findings(manifest: Manifest) -> tuple[int, list[dict[str, Any]]]:
    scanned, found = 0, []
    for rec in manifest.records:
        if rec.sub or "/" in rec.path or not rec.path.endswith((".json", ".tsv")):
            continue
        scanned += 1
        try:
            _entry, items = scan_text(manifest.absolute(rec), rec.path)
        except OSError as exc:
            items = [finding("integrity", rec.path, f"{rec.path}: cannot read ({exc.strerror})")]
        found += items
    return scanned, found


def _segmentation(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {"available": False, "excluded": []}
    plan = _load(path)
    excluded = plan.get("excluded") or {}
    rows = [
        {"subject": f"sub-{sub.removeprefix('sub-')}", "reason": str(reason)}
        for sub, reason in sorted(excluded.items(), key=lambda kv: natural_key(kv[0]))
    ]
    return {"available": True, "targets": len(plan.get("targets") or {}), "excluded": rows}


def build_report(
    manifest: Manifest,
    cmap: ColumnMap,
    out_dir: Path,
    *,
    subjects: list[str] | None = None,
    count_tolerance: int = 0,
    tolerate_validator_errors: bool = False,
    segmentation: Path | None = None,
) -> dict[str, Any]:
    """Gather every check of the run into the report (a dict, see ``config/README.md``)."""
    out_dir = Path(out_dir)
    expected = check_expected(cmap.expected, f"dataset map '{cmap.name}'")
    keys = selected_keys(manifest, subjects)
    subset = len(keys) < len(manifest.shard_keys())
    failures: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []

    def add(items: list[dict[str, Any]], shard: str | None = None) -> None:
        for item in items:
            entry = {**item, "shard": shard} if shard else dict(item)
            (failures if item["check"] in HARD_CHECKS else warnings).append(entry)

    checked = Counter()
    blocked: list[str] = []
    shards = {"checked": 0, "cells": 0, "columns_decoded": 0}
    for sub, ses in keys:
        sid = shard_id(sub, ses)
        result = _load(session_result(out_dir, sub, ses))
        checked.update(result.get("checked", {}))
        add(result.get("failures", []) + result.get("warnings", []), sid)
        if not is_intact(result):
            blocked.append(sid)
            continue
        rt = _load(shard_result(out_dir, sub, ses))
        shards["checked"] += 1
        shards["cells"] += rt["checked"]["cells"]
        shards["columns_decoded"] += rt["checked"]["columns_decoded"]
        add(rt.get("failures", []), sid)

    top_scanned, top_found = _top_level_findings(manifest)
    add(top_found)

    vpath = validation_dir(out_dir) / "bids-validator.json"
    validator = summarise(
        _load(vpath) if vpath.is_file() else None, tolerate_errors=tolerate_validator_errors
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
        (warnings if tolerate_validator_errors else failures).append(item)
    if validator["status"] == "not-run":
        detail = validator.get("detail", "") or "no result"
        failures.append(
            finding("bids_validator", "", f"the BIDS validator did not run to the end: {detail}")
        )

    found = found_counts(manifest, keys)
    counts = compare_counts(found, expected, tolerance=count_tolerance, subset=subset)
    for line in counts:
        if line["status"] == "mismatch":
            failures.append(
                finding(
                    "counts",
                    "",
                    f"{line['name']}: expected {line['expected']}, found {line['found']}"
                    f" (tolerance {count_tolerance})",
                )
            )

    identifying = [
        {"file": w["file"], "keys": w.get("keys", [])}
        for w in warnings
        if w["check"] == "identifying"
    ]
    by_check: dict[str, dict[str, int]] = {}
    for kind, items in (("failures", failures), ("warnings", warnings)):
        for item in items:
            by_check.setdefault(item["check"], {"failures": 0, "warnings": 0})[kind] += 1
    report: dict[str, Any] = {
        "version": RESULT_VERSION,
        "status": "fail" if failures else "pass",
        "summary": {
            "hard_failures": len(failures),
            "warnings": len(warnings),
            "by_check": dict(sorted(by_check.items())),
        },
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
            "failures": sum(
                1 for f in failures if f["check"] in ("integrity", "dwi_gradients", "mask_grid")
            ),
        },
        "round_trip": {
            "shards_checked": shards["checked"],
            "cells_checked": shards["cells"],
            "columns_decoded": shards["columns_decoded"],
            "not_checked": blocked,
            "failures": sum(1 for f in failures if f["check"] in ("round_trip", "decode")),
        },
        "identifying": {
            "files_scanned": checked["json"] + checked["tsv"] + top_scanned,
            "files_flagged": len(identifying),
            "findings": identifying,
        },
        "segmentation": _segmentation(segmentation),
        "failures": failures,
        "warnings": warnings,
    }
    return report


def write_report(report: dict[str, Any], json_path: Path, html_path: Path) -> None:
    """Write ``report.json`` and ``report.html`` atomically."""
    from bids2hub.validate.html import render

    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    with atomic_path(html_path) as tmp:
        tmp.write_text(render(report), encoding="utf-8")


def check_report(json_path: Path) -> str:
    """Raise :class:`ValidationError` when the report says ``fail``; else a one-line summary."""
    report = _load(Path(json_path))
    html_path = Path(json_path).with_suffix(".html")
    n = report.get("summary", {}).get("hard_failures", 0)
    if report.get("status") != "pass":
        raise ValidationError(f"validation failed: {n} hard failure(s), see {html_path}")
    w = report.get("summary", {}).get("warnings", 0)
    return f"validation passed ({w} warning(s)), see {html_path}"

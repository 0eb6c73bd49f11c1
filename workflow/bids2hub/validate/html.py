"""``report.html``: the validation report for a person, summary first, then tables.

One self-contained page (inline CSS, no script, nothing fetched) from the template
``templates/report.html.j2``, every value escaped (Jinja2 autoescape). This module
only decides what the page says: the summary lines, the tables' rows and each cell's
class. Long tables are cut at :data:`MAX_ROWS` rows with a note pointing at
``report.json``, which always holds everything.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from bids2hub.layout import RELATIVE
from bids2hub.templating import render_template
from bids2hub.validate.model import Report

MAX_ROWS = 500

_STATUS_CLASS = {
    "ok": "ok",
    "pass": "ok",
    "mismatch": "bad",
    "fail": "bad",
    "errors": "bad",
    "not-run": "bad",
    "n/a": "na",
    "found-only": "na",
    "errors-tolerated": "na",
}


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and its CSS class (status colour, number, file name)."""

    text: str
    cls: str = ""


@dataclass(frozen=True)
class Table:
    """A table of the page: at most :data:`MAX_ROWS` rows, ``more`` left out."""

    headers: list[str]
    rows: list[list[Cell]]
    more: int = 0


def _cell(value: Any, cls: str = "") -> Cell:
    text = "" if value is None else str(value)
    klass = cls or _STATUS_CLASS.get(text, "")
    if isinstance(value, int | float) and not isinstance(value, bool) and not cls:
        klass = "num"
    return Cell(text, klass)


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> Table:
    classes = classes or [""] * len(headers)
    cells = [[_cell(v, c) for v, c in zip(row, classes, strict=True)] for row in rows[:MAX_ROWS]]
    return Table(headers, cells, max(0, len(rows) - MAX_ROWS))


def _summary(report: Report) -> list[tuple[str, str]]:
    """The summary's lines: what each check did and found."""
    v = report["validator"]
    counts = report["counts"]
    judged = [c for c in counts if c["status"] in ("ok", "mismatch")]
    ok = sum(1 for c in judged if c["status"] == "ok")
    subset = report["dataset"]["subset"]
    if subset:
        count_line = "not applicable: the run covers a subset of the subjects"
    elif judged:
        count_line = f"{ok} of {len(judged)} match (tolerance {report['count_tolerance']})"
    else:
        count_line = "no expected counts for this dataset (found counts only)"
    integ, rt, ident, seg = (
        report["integrity"],
        report["round_trip"],
        report["identifying"],
        report["segmentation"],
    )
    seg_line = (
        f"{len(seg['excluded'])} subject(s) excluded"
        if seg["available"]
        else "no segmentation plan in this run"
    )
    masks = seg.get("masks") if seg["available"] else None
    if masks:
        seg_line += (
            f"; {masks['n']} mask(s), {masks['empty']} empty, {len(masks['flagged'])} flagged"
        )
    items: list[tuple[str, Any]] = [
        ("Hard failures", report["summary"]["hard_failures"]),
        ("Warnings", report["summary"]["warnings"]),
        (
            "BIDS validator",
            f"{v['tool']} {v.get('version') or '?'} (schema {v.get('schema_version') or '?'}): "
            f"{v['status']}, {v['errors']} error(s), {v['warnings']} warning(s)",
        ),
        ("Expected counts", count_line),
        (
            "Integrity",
            f"{integ['nifti_checked']} NIfTI file(s) fully decompressed, "
            f"{integ['dwi_checked']} DWI against b-values/vectors, "
            f"{integ['masks_checked']} mask(s) against their reference; "
            f"{integ['failures']} failure(s)",
        ),
        (
            "Shard round-trip",
            f"{rt['shards_checked']} shard(s), {rt['cells_checked']} cell(s) compared, "
            f"{rt['columns_decoded']} column(s) decoded with datasets; "
            + (
                f"{rt['null_cells']} null cell(s) for unusable companions; "
                * bool(rt.get("null_cells"))
            )
            + f"{rt['failures']} failure(s)"
            + (f"; {len(rt['not_checked'])} not checked" if rt["not_checked"] else ""),
        ),
        (
            "Identifying data",
            f"{ident['files_flagged']} of {ident['files_scanned']} file(s) flagged",
        ),
        ("Segmentation", seg_line),
    ]
    return [(k, str(val)) for k, val in items]


def render(report: Report) -> str:
    """The HTML page of a report built by :func:`bids2hub.validate.report.build_report`."""
    ds = report["dataset"]
    n_fail = report["summary"]["hard_failures"]
    passed = report["status"] == "pass"
    v = report["validator"]
    seg = report["segmentation"]
    masks = seg.get("masks") if seg["available"] else None
    return render_template(
        "bids2hub.validate",
        "report.html.j2",
        report_json=posixpath.basename(RELATIVE.report_json),
        segmentation_plan=RELATIVE.segmentation,
        qc_table=RELATIVE.qc_table,
        title=f"Validation report: {ds.get('pretty_name') or ds['name']}",
        dataset=ds,
        passed=passed,
        banner="PASS: every hard check passed" if passed else f"FAIL: {n_fail} hard failure(s)",
        summary=_summary(report),
        failures=_table(
            ["Check", "File", "Message"],
            [[f["check"], f["file"], f["message"]] for f in report["failures"]],
            ["", "file", ""],
        ),
        counts=_table(
            ["Count", "Expected", "Found", "Status"],
            [[c["name"], c["expected"], c["found"], c["status"]] for c in report["counts"]],
        ),
        validator={
            "tool": v["tool"],
            "version": str(v.get("version")),
            "exit_code": str(v.get("exit_code")),
        },
        issues=_table(
            ["Severity", "Code", "Count", "Message", "Examples"],
            [
                [
                    i["severity"],
                    i["code"] + (f" ({i['sub_code']})" if i["sub_code"] else ""),
                    i["count"],
                    i["message"],
                    ", ".join(i["examples"]),
                ]
                for i in v["issues"]
            ],
            ["", "", "num", "", "file"],
        ),
        warnings=_table(
            ["Check", "File", "Message"],
            [
                [w["check"], w["file"], w["message"]]
                for w in report["warnings"]
                if w["check"] != "identifying"
            ],
            ["", "file", ""],
        ),
        identifying=_table(
            ["File", "Keys"],
            [[f["file"], ", ".join(f["keys"])] for f in report["identifying"]["findings"]],
            ["file", ""],
        ),
        excluded=_table(
            ["Subject", "Reason"], [[e["subject"], e["reason"]] for e in seg["excluded"]]
        )
        if seg["available"]
        else None,
        flagged=_table(
            ["Subject", "Session", "Flag"],
            [[f["subject"], f["session"], f["flag"]] for f in masks["flagged"]],
        )
        if masks
        else None,
    )

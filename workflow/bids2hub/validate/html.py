"""``report.html``: the validation report for a person, summary first, then tables.

One self-contained page (inline CSS, no script, nothing fetched), every value
escaped. Long tables are cut at :data:`MAX_ROWS` rows with a note pointing at
``report.json``, which always holds everything.
"""

from __future__ import annotations

from html import escape
from typing import Any

MAX_ROWS = 500

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1d232a;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
.sub{color:#57606a;margin-top:0}
.banner{padding:1rem 1.2rem;border-radius:.4rem;font-size:1.3rem;font-weight:600;margin:1rem 0}
.pass{background:#dafbe1;border:1px solid #4ac26b;color:#116329}
.fail{background:#ffebe9;border:1px solid #ff8182;color:#82071e}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.file{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.8rem;
word-break:break-all}
.ok{color:#116329;font-weight:600}.bad{color:#82071e;font-weight:600}
.na{color:#57606a}.note{color:#57606a;font-size:.85rem}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.3rem 1.2rem}
dl.summary dt{font-weight:600}dl.summary dd{margin:0}
"""

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


def _cell(value: Any, cls: str = "") -> str:
    text = "" if value is None else str(value)
    klass = cls or _STATUS_CLASS.get(text, "")
    if isinstance(value, int | float) and not isinstance(value, bool) and not cls:
        klass = "num"
    attr = f' class="{klass}"' if klass else ""
    return f"<td{attr}>{escape(text)}</td>"


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    if not rows:
        return '<p class="note">None.</p>'
    classes = classes or [""] * len(headers)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(_cell(v, c) for v, c in zip(row, classes, strict=True)) + "</tr>"
        for row in rows[:MAX_ROWS]
    )
    more = (
        f'<p class="note">{len(rows) - MAX_ROWS} more row(s) in report.json.</p>'
        if len(rows) > MAX_ROWS
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _summary(report: dict[str, Any]) -> str:
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
    items = [
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
            f"{rt['failures']} failure(s)"
            + (f"; {len(rt['not_checked'])} not checked" if rt["not_checked"] else ""),
        ),
        (
            "Identifying data",
            f"{ident['files_flagged']} of {ident['files_scanned']} file(s) flagged",
        ),
        ("Segmentation", seg_line),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(val))}</dd>" for k, val in items)
    return f'<dl class="summary">{rows}</dl>'


def render(report: dict[str, Any]) -> str:
    """The HTML page of a report built by :func:`bids2hub.validate.report.build_report`."""
    ds = report["dataset"]
    status = report["status"]
    n_fail = report["summary"]["hard_failures"]
    banner = (
        "PASS: every hard check passed" if status == "pass" else f"FAIL: {n_fail} hard failure(s)"
    )
    title = f"Validation report: {ds.get('pretty_name') or ds['name']}"
    v = report["validator"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(ds["bids_dir"])}: {ds["subjects"]} subject(s), '
        f"{ds['sessions']} session(s){' (subset of the dataset)' if ds['subset'] else ''}</p>",
        f'<div class="banner {"pass" if status == "pass" else "fail"}" id="status">'
        f"{escape(banner)}</div>",
        "<h2>Summary</h2>",
        _summary(report),
        "<h2>Hard failures</h2>",
        _table(
            ["Check", "File", "Message"],
            [[f["check"], f["file"], f["message"]] for f in report["failures"]],
            ["", "file", ""],
        ),
        "<h2>Expected counts</h2>",
        _table(
            ["Count", "Expected", "Found", "Status"],
            [[c["name"], c["expected"], c["found"], c["status"]] for c in report["counts"]],
        ),
        "<h2>BIDS validator</h2>",
        f'<p class="note">{escape(v["tool"])} {escape(str(v.get("version")))}, exit code '
        f"{escape(str(v.get('exit_code')))}; issues by code, with up to five example files.</p>",
        _table(
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
        "<h2>Warnings</h2>",
        '<p class="note">Soft findings; identifying data are listed in the next section.</p>',
        _table(
            ["Check", "File", "Message"],
            [
                [w["check"], w["file"], w["message"]]
                for w in report["warnings"]
                if w["check"] != "identifying"
            ],
            ["", "file", ""],
        ),
        "<h2>Identifying data</h2>",
        '<p class="note">Files whose keys or columns are DICOM identifying attributes '
        "(values are never copied into the report).</p>",
        _table(
            ["File", "Keys"],
            [[f["file"], ", ".join(f["keys"])] for f in report["identifying"]["findings"]],
            ["file", ""],
        ),
        "<h2>Excluded from segmentation</h2>",
        _table(
            ["Subject", "Reason"],
            [[e["subject"], e["reason"]] for e in report["segmentation"]["excluded"]],
        )
        if report["segmentation"]["available"]
        else '<p class="note">No segmentation plan (index/segmentation.json) in this run.</p>',
        '<p class="note">Machine-readable: report.json (same folder).</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"

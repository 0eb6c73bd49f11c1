"""The aggregate report: statuses, validator summary, subsets, exclusions, HTML, the gate."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from bids2hub.errors import ValidationError
from bids2hub.index.manifest import load_index
from bids2hub.index.phenotype import read_participants
from bids2hub.shards.colmap import load_map
from bids2hub.shards.writer import write_shard
from bids2hub.validate.bidsvalidator import run_validator, summarise
from bids2hub.validate.counts import count_names
from bids2hub.validate.html import render
from bids2hub.validate.report import (
    build_report,
    check_report,
    list_intact,
    session_result,
    shard_result,
    write_report,
)
from bids2hub.validate.roundtrip import check_shard
from bids2hub.validate.sources import check_session, dumps

from tests.conftest import REPO
from tests.synthetic import arc_expected_counts

ARC_MAP = REPO / "config" / "datasets" / "ds004884.yaml"


@pytest.fixture(scope="module")
def checked_run(
    tmp_path_factory: pytest.TempPathFactory, arc_tree_ro: Path, arc_subjects: list[str]
):
    """Every per-session and per-shard result and the validator result of the ARC test tree."""
    out = tmp_path_factory.mktemp("out")
    manifest, _ = load_index(arc_tree_ro, out / "index" / "manifest.parquet")
    reference = arc_expected_counts(arc_subjects)
    cmap = dataclasses.replace(
        load_map(ARC_MAP), expected={k: reference[k] for k in count_names([])}
    )
    people = read_participants(arc_tree_ro / "participants.tsv")
    for sub, ses in manifest.shard_keys():
        session = check_session(manifest, cmap, sub, ses)
        session_result(out, sub, ses).parent.mkdir(parents=True, exist_ok=True)
        session_result(out, sub, ses).write_text(dumps(session))
        shard = out / "hub" / f"{sub}_{ses}.parquet"
        write_shard(manifest, cmap, sub, ses, people, shard)
        shard_result(out, sub, ses).parent.mkdir(parents=True, exist_ok=True)
        rt = check_shard(shard, manifest, cmap, sub, ses, session, decode=False)
        shard_result(out, sub, ses).write_text(dumps(rt))
    run_validator(arc_tree_ro, out / "validation" / "bids-validator.json")
    return manifest, cmap, out


def test_clean_run_passes_and_records_the_validator(checked_run) -> None:
    manifest, cmap, out = checked_run
    report = build_report(manifest, cmap, out)
    assert report["status"] == "pass", report["failures"]
    assert report["validator"]["version"] and report["validator"]["status"] == "ok"
    assert report["validator"]["exit_code"] == 0 and report["validator"]["schema_version"]
    assert {c["status"] for c in report["counts"]} == {"ok"}
    assert report["integrity"]["failures"] == 0 and report["integrity"]["nifti_checked"] > 20
    assert report["round_trip"]["shards_checked"] == len(manifest.shard_keys())
    assert report["segmentation"] == {"available": False, "excluded": []}
    assert json.loads(json.dumps(report)) == report


def test_count_off_by_one_fails(checked_run) -> None:
    manifest, cmap, out = checked_run
    expected = dict(cmap.expected, n_sessions=cmap.expected["n_sessions"] + 1)
    report = build_report(manifest, dataclasses.replace(cmap, expected=expected), out)
    assert report["status"] == "fail"
    [line] = [c for c in report["counts"] if c["status"] != "ok"]
    assert line["name"] == "n_sessions" and line["found"] + 1 == line["expected"]
    [fail] = report["failures"]
    assert fail["check"] == "counts" and fail["message"].startswith("n_sessions: expected")
    tolerant = build_report(
        manifest, dataclasses.replace(cmap, expected=expected), out, count_tolerance=1
    )
    assert tolerant["status"] == "pass"


def test_subset_of_subjects_reports_counts_as_not_applicable(
    checked_run, arc_subjects: list[str]
) -> None:
    manifest, cmap, out = checked_run
    report = build_report(manifest, cmap, out, subjects=arc_subjects[:2])
    assert report["status"] == "pass" and report["dataset"]["subset"] is True
    assert {c["status"] for c in report["counts"]} == {"n/a"}
    assert report["dataset"]["subjects"] == 2


def test_dataset_without_expectations_reports_found_counts_only(checked_run) -> None:
    manifest, cmap, out = checked_run
    report = build_report(manifest, dataclasses.replace(cmap, expected={}), out)
    assert {c["status"] for c in report["counts"]} == {"found-only"}
    assert all(c["expected"] is None for c in report["counts"])


def test_excluded_subjects_are_listed_with_their_reason(checked_run, tmp_path: Path) -> None:
    manifest, cmap, out = checked_run
    plan = tmp_path / "segmentation.json"
    plan.write_text(
        json.dumps(
            {
                "targets": {"M2105": {"session": "964"}},
                "excluded": {"M2039": "no DWI run with a b~1000 shell"},
            }
        )
    )
    report = build_report(manifest, cmap, out, segmentation=plan)
    assert report["segmentation"]["excluded"] == [
        {"subject": "sub-M2039", "reason": "no DWI run with a b~1000 shell"}
    ]
    assert report["status"] == "pass"
    assert "no DWI run with a b~1000 shell" in render(report)
    assert report["segmentation"]["masks"] is None  # no QC table given


def test_empty_masks_are_flagged_in_the_report(checked_run, tmp_path: Path) -> None:
    """An all-zero DeepISLES mask (what a failed SEALS leaves, with exit 0) is never silent."""
    from bids2hub.segment.qc import FLAG_EMPTY_DEEPISLES, QcRow, qc_table

    manifest, cmap, out = checked_run
    plan = tmp_path / "segmentation.json"
    plan.write_text(json.dumps({"targets": {"M2105": {"session": "964"}}, "excluded": {}}))
    qc = tmp_path / "segmentation.tsv"
    qc.write_text(qc_table([QcRow("M2105", "964", "deepisles", 0.0)]))
    report = build_report(manifest, cmap, out, segmentation=plan, qc=qc)
    assert report["segmentation"]["masks"] == {
        "n": 1,
        "empty": 1,
        "flagged": [{"subject": "sub-M2105", "session": "ses-964", "flag": FLAG_EMPTY_DEEPISLES}],
    }
    page = render(report)
    assert "1 mask(s), 1 empty, 1 flagged" in page and "SEALS failures also give one" in page


def _record(code: int, issues: list[dict]) -> dict:
    return {
        "tool": "bids-validator-deno",
        "version": "3.0.2",
        "exit_code": code,
        "schema_version": "1.2.7",
        "output": {
            "issues": {"issues": issues, "codeMessages": {"NIFTI_HEADER_UNREADABLE": "x\ny"}}
        },
    }


def test_validator_errors_are_summarised_by_code() -> None:
    issues = [
        {"code": "NIFTI_HEADER_UNREADABLE", "severity": "error", "location": f"/sub-{i}/a.nii.gz"}
        for i in range(7)
    ] + [{"code": "README_FILE_MISSING", "severity": "warning", "location": "/README"}]
    out = summarise(_record(16, issues), tolerate_errors=False)
    assert out["status"] == "errors" and out["errors"] == 7 and out["warnings"] == 1
    first = out["issues"][0]
    assert first["code"] == "NIFTI_HEADER_UNREADABLE" and first["count"] == 7
    assert first["message"] == "x y" and len(first["examples"]) == 5
    assert first["examples"][0] == "sub-0/a.nii.gz"
    assert summarise(_record(16, issues), tolerate_errors=True)["status"] == "errors-tolerated"
    crashed = dict(_record(1, []), output=None, stderr_tail="boom")
    assert summarise(crashed, tolerate_errors=True)["status"] == "not-run"
    assert summarise(None, tolerate_errors=False)["status"] == "not-run"


def test_validator_errors_fail_unless_tolerated(checked_run, tmp_path: Path) -> None:
    manifest, cmap, out = checked_run
    copy = tmp_path / "out"
    for sub, ses in manifest.shard_keys():
        for src in (session_result(out, sub, ses), shard_result(out, sub, ses)):
            dst = copy / src.relative_to(out)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    issue = {"code": "NIFTI_HEADER_UNREADABLE", "severity": "error", "location": "/sub-1/x.nii.gz"}
    (copy / "validation" / "bids-validator.json").write_text(json.dumps(_record(16, [issue])))
    failing = build_report(manifest, cmap, copy)
    assert failing["status"] == "fail"
    assert [f["check"] for f in failing["failures"]] == ["bids_validator"]
    assert failing["failures"][0]["file"] == "sub-1/x.nii.gz"
    tolerated = build_report(manifest, cmap, copy, tolerate_validator_errors=True)
    assert tolerated["status"] == "pass" and tolerated["validator"]["status"] == "errors-tolerated"
    assert any(w["check"] == "bids_validator" for w in tolerated["warnings"])


def test_blocked_session_skips_its_round_trip(checked_run, tmp_path: Path) -> None:
    manifest, cmap, out = checked_run
    sub, ses = manifest.shard_keys()[0]
    copy = tmp_path / "out"
    for s, e in manifest.shard_keys():
        src = session_result(out, s, e)
        dst = copy / src.relative_to(out)
        dst.parent.mkdir(parents=True, exist_ok=True)
        result = json.loads(src.read_text())
        if (s, e) == (sub, ses):
            result["failures"] = [
                {"check": "integrity", "file": "x.nii.gz", "message": "x.nii.gz: truncated"}
            ]
        else:  # the others have their round-trip
            rt = shard_result(out, s, e)
            (copy / rt.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            (copy / rt.relative_to(out)).write_bytes(rt.read_bytes())
        dst.write_text(dumps(result))
    (copy / "validation" / "bids-validator.json").write_bytes(
        (out / "validation" / "bids-validator.json").read_bytes()
    )
    listing = list_intact(copy, manifest.shard_keys())
    assert listing["blocked"] == [f"sub-{sub}_ses-{ses}"]
    report = build_report(manifest, cmap, copy)
    assert report["round_trip"]["not_checked"] == [f"sub-{sub}_ses-{ses}"]
    assert report["status"] == "fail" and report["failures"][0]["file"] == "x.nii.gz"


def test_html_escapes_and_check_report_gates(checked_run, tmp_path: Path) -> None:
    manifest, cmap, out = checked_run
    report = build_report(manifest, cmap, out)
    report["warnings"].append(
        {"check": "mask_reference", "file": "<b>", "message": "<script>x</script>"}
    )
    html_path, json_path = tmp_path / "report.html", tmp_path / "report.json"
    write_report(report, json_path, html_path)
    page = html_path.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    headings = [
        page.index(f"<h2>{h}</h2>")
        for h in ("Summary", "Hard failures", "Expected counts", "BIDS validator", "Warnings")
    ]
    assert headings == sorted(headings)
    assert check_report(json_path).startswith("validation passed")
    report["status"], report["summary"]["hard_failures"] = "fail", 3
    write_report(report, json_path, html_path)
    with pytest.raises(
        ValidationError, match=rf"^validation failed: 3 hard failure\(s\), see {html_path}$"
    ):
        check_report(json_path)


def test_report_json_of_another_version_or_shape_is_one_line_naming_it(
    checked_run, tmp_path: Path
) -> None:
    from bids2hub.validate.model import load_report

    manifest, cmap, out = checked_run
    report = build_report(manifest, cmap, out, segmentation=None)
    json_path = tmp_path / "report.json"
    write_report(report, json_path, tmp_path / "report.html")
    assert load_report(json_path) == report  # what is written has the shape it is read with

    def broken(change) -> str:
        data = json.loads(json_path.read_text())
        change(data)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data))
        with pytest.raises(ValidationError) as err:
            check_report(bad)
        msg = str(err.value)
        assert msg.startswith(f"{bad}: ") and "\n" not in msg
        return msg.removeprefix(f"{bad}: ")

    assert broken(lambda d: d.update(version=2)) == (
        "validation report version 2, this bids2hub reads version 1 "
        "(rerun the validation rules to rebuild it)"
    )
    assert broken(lambda d: d.pop("version")).startswith("validation report version null,")
    assert broken(lambda d: d["summary"].pop("hard_failures")) == (
        "not a validation report of this layout (summary.hard_failures is missing)"
    )
    assert broken(lambda d: d.update(status="passed")) == (
        "not a validation report of this layout "
        "(status must be one of 'pass', 'fail', got \"passed\")"
    )
    assert broken(lambda d: d["counts"][1].update(found="3")) == (
        'not a validation report of this layout (counts[1].found must be an integer, got "3")'
    )
    assert broken(lambda d: d["failures"].append({"check": "counts", "file": ""})) == (
        "not a validation report of this layout (failures[0].message is missing)"
    )
    assert broken(lambda d: d["validator"].update(exit_code=True)).endswith(
        "(validator.exit_code must be an integer or null, got true)"
    )
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValidationError, match=r"list\.json: not a validation report \(a JSON"):
        check_report(tmp_path / "list.json")
    with pytest.raises(ValidationError, match=r"absent\.json: missing \(run the validation"):
        check_report(tmp_path / "absent.json")


def test_html_escapes_the_dataset_name_and_every_table(checked_run) -> None:
    manifest, cmap, out = checked_run
    report = build_report(manifest, dataclasses.replace(cmap, pretty_name="</title><b>ARC"), out)
    report["failures"].append({"check": "integrity", "file": "a'b\".nii.gz", "message": "</td>"})
    page = render(report)
    assert page.count("Validation report: &lt;/title&gt;&lt;b&gt;ARC") == 2  # title and h1
    assert "<b>" not in page and "</title><b>" not in page
    assert '<td class="file">a&#39;b&#34;.nii.gz</td><td>&lt;/td&gt;</td>' in page


def test_the_typed_shape_is_the_documented_one() -> None:
    """config/README.md's table of report.json keys and validate/model.py's types agree."""
    from typing import get_type_hints, is_typeddict

    from bids2hub.validate.model import Report

    text = (REPO / "config" / "README.md").read_text()
    section = text.split("## Validation report (`validation/report.json`)")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {k for row in rows for k in re.findall(r"`([a-z_.]+)`", row.split("|")[1])}

    def paths(tp, prefix: str = "") -> set[str]:
        out = set()
        for key, sub in get_type_hints(tp).items():
            out.add(prefix + key)
            if is_typeddict(sub):
                out |= paths(sub, f"{prefix}{key}.")
        return out

    typed = paths(Report)
    assert documented - typed == set()  # every documented key is in the types
    # every key of the types is documented (a section by its keys, or named in the text)
    undocumented = {
        p for p in typed if p not in documented and f"`{p}`" not in section
        and not any(d.startswith(p + ".") for d in documented)
    }  # fmt: skip
    assert undocumented == set()

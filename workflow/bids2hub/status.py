"""Per-subject/session status of a run: done, failed, incomplete or missing per stage.

Read from what Snakemake itself keeps: the outputs, its incomplete markers
(``.snakemake/incomplete/``) and the error reports of its run logs
(``.snakemake/log/*.snakemake.log``, all of them: a job that failed two runs
ago and was not attempted since is still failed), so that after a cluster run with
``--keep-going`` one command shows what failed and where the log of each
failure is, and after the rerun that it is done.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids2hub.config import read_yaml_mapping

DONE, FAILED, INCOMPLETE, MISSING, NOT_APPLICABLE = (
    "done",
    "failed",
    "incomplete",
    "missing",
    "-",
)

# "Error in rule X:" (local jobs, and inside a job's log) or, for a SLURM group
# job, "    message: Error in group G" followed by a "jobs:" list of rule blocks.
_ERROR_START = re.compile(
    r"^\s*(?:message: )?Error in (?:rule (?P<rule>\w+)|group (?P<group>\S+)):?\s*$"
)
_RULE_LINE = re.compile(r"^\s*(?:local)?rule (?P<rule>\w+):\s*$")
_KEY_LINE = re.compile(r"^\s*(?P<key>output|log): (?P<value>.*)$")


@dataclass(frozen=True)
class Failure:
    """One failed job output as the Snakemake run log reports it."""

    rule: str
    output: str
    log: str | None


@dataclass
class Row:
    """One subject/session: the state of each stage's output."""

    subject: str
    session: str
    states: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)


@dataclass
class StatusReport:
    """Rows, the stage names in order, failures and segmentation exclusions."""

    stages: list[str]
    rows: list[Row]
    excluded: dict[str, str]
    log_file: Path | None

    def count(self, stage: str, state: str) -> int:
        """How many rows have ``state`` for ``stage``."""
        return sum(1 for r in self.rows if r.states.get(stage) == state)

    def failures(self) -> list[tuple[Row, str]]:
        """(row, stage) of every failed output, in row order."""
        return [(r, s) for r in self.rows for s in self.stages if r.states.get(s) == FAILED]


def parse_run_log(text: str) -> dict[str, Failure]:
    """Failed outputs in a Snakemake run log, by output path.

    Reads the ``Error in rule X:`` blocks and the per-job blocks of
    ``Error in group G:`` (SLURM group jobs): their ``output:`` and ``log:`` lines.
    """
    failures: dict[str, Failure] = {}
    in_error = False
    rule: str | None = None
    outputs: list[str] = []
    for line in text.splitlines():
        start = _ERROR_START.match(line)
        if start:
            in_error, rule, outputs = True, start.group("rule"), []
            continue
        if not in_error:
            continue
        if line and not line[0].isspace():
            in_error, rule, outputs = False, None, []
            continue
        rule_line = _RULE_LINE.match(line)
        if rule_line:
            rule, outputs = rule_line.group("rule"), []
            continue
        kv = _KEY_LINE.match(line)
        if not kv or rule is None:
            continue
        value = kv.group("value").strip()
        if kv.group("key") == "output":
            outputs = [v.strip() for v in value.split(",") if v.strip()]
            for out in outputs:
                failures[out] = Failure(rule, out, None)
        else:
            log = value.split(" (check log file", 1)[0].split(",")[0].strip() or None
            for out in outputs:
                failures[out] = Failure(rule, out, log)
    return failures


def latest_run_log(workdir: Path) -> Path | None:
    """The newest ``.snakemake/log/*.snakemake.log`` of ``workdir`` (None before any run)."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    return logs[-1] if logs else None


def run_failures(workdir: Path) -> dict[str, Failure]:
    """Failed outputs over every run log of ``workdir``, a newer report replacing an older one.

    An output that exists is done whatever an old log says (see :func:`output_state`),
    so merging all runs only adds the failures that later runs did not retry.
    """
    failures: dict[str, Failure] = {}
    for path in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log")):
        failures.update(parse_run_log(path.read_text(errors="replace")))
    return failures


def _incomplete_marker(workdir: Path, path: str) -> Path:
    # Snakemake's file persistence: the url-safe base64 of the output path,
    # split into 254-character folder parts prefixed with '@'.
    b64 = base64.urlsafe_b64encode(path.encode()).decode()
    parts = [b64[i : i + 254] for i in range(0, len(b64), 254)]
    parts = ["@" + p for p in parts[:-1]] + [parts[-1]]
    return workdir.joinpath(".snakemake", "incomplete", *parts)


def output_state(path: str, workdir: Path, failures: Mapping[str, Failure]) -> str:
    """State of one output: done, incomplete (a job died writing it), failed or missing."""
    if any(_incomplete_marker(workdir, p).exists() for p in (path, str(Path(path).parent))):
        return INCOMPLETE
    if Path(path).exists():
        return DONE
    return FAILED if _failure(path, failures) else MISSING


def _failure(path: str, failures: Mapping[str, Failure]) -> Failure | None:
    """The failure of the job that writes ``path``: its own, or its folder's (a per-subject
    job writes each session's file into one output folder)."""
    return failures.get(path) or failures.get(str(Path(path).parent))


def stage_outputs(setup: Any) -> tuple[list[str], list[tuple[str, str, dict[str, str]]]]:
    """Stages (rule names, in DAG order) and, per subject/session, each stage's output.

    Parameters
    ----------
    setup
        A :class:`bids2hub.plan.WorkflowSetup`.
    """
    stages = ["write_shard", "check_sources", "check_shards"]
    targets = setup.segmentation["targets"]
    if targets:
        stages += ["prepare_dwi", "segment_lesion"]
    rows = []
    for shard, (sub, ses) in setup.shards.items():
        outputs = {
            "write_shard": setup.shard_path(shard),
            # per-subject jobs, each session's own result file in the subject's folder
            "check_sources": str(setup.check_path(shard)),
            "check_shards": str(setup.round_trip_path(shard)),
        }
        target = targets.get(sub)
        if target is not None and (target.get("session") or "") == ses:
            outputs["prepare_dwi"] = str(setup.prepared_info_path(sub))
            outputs["segment_lesion"] = setup.mask_path(sub)
        rows.append((sub, ses, outputs))
    return stages, rows


def collect_status(setup: Any, workdir: Path) -> StatusReport:
    """The state of every stage of every subject/session of ``setup`` in ``workdir``."""
    log_file = latest_run_log(workdir)
    failures = run_failures(workdir)
    stages, planned = stage_outputs(setup)
    rows = []
    for sub, ses, outputs in planned:
        row = Row(sub, ses)
        for stage in stages:
            path = outputs.get(stage)
            if path is None:
                row.states[stage] = NOT_APPLICABLE
                continue
            state = output_state(path, workdir, failures)
            row.states[stage] = state
            failure = _failure(path, failures)
            if state == FAILED and failure is not None and failure.log:
                row.logs[stage] = failure.log
        rows.append(row)
    return StatusReport(stages, rows, dict(setup.segmentation["excluded"]), log_file)


def format_table(report: StatusReport) -> str:
    """Human-readable status: a table, the failures with their logs, exclusions, totals."""
    header = ["subject", "session", *report.stages]
    body = [
        [f"sub-{r.subject}", f"ses-{r.session}" if r.session else ""]
        + [r.states[s] for s in report.stages]
        for r in report.rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    out = io.StringIO()
    for line in [header, *body]:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")
    failures = report.failures()
    if failures:
        out.write(f"\nfailed ({len(failures)}):\n")
        for row, stage in failures:
            where = f"sub-{row.subject}" + (f" ses-{row.session}" if row.session else "")
            out.write(f"  {where} {stage}: log {row.logs.get(stage, '(no log recorded)')}\n")
    if report.excluded:
        out.write(f"\nexcluded from segmentation ({len(report.excluded)}):\n")
        for sub, reason in sorted(report.excluded.items()):
            out.write(f"  sub-{sub}: {reason}\n")
    out.write("\n")
    for stage in report.stages:
        counts = [
            f"{report.count(stage, s)} {s}"
            for s in (DONE, FAILED, INCOMPLETE, MISSING)
            if report.count(stage, s)
        ]
        out.write(f"{stage}: {', '.join(counts) or 'nothing to do'}\n")
    source = report.log_file or "no Snakemake run log yet"
    out.write(f"(failures from {source})\n")
    return out.getvalue()


def format_tsv(report: StatusReport) -> str:
    """One line per subject/session/stage: subject, session, stage, state, log."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["subject_id", "session_id", "stage", "state", "log"])
    for r in report.rows:
        for stage in report.stages:
            writer.writerow([
                f"sub-{r.subject}",
                f"ses-{r.session}" if r.session else "",
                stage,
                r.states[stage],
                r.logs.get(stage, ""),
            ])  # fmt: skip
    return out.getvalue()


def load_config(configfiles: Iterable[Path], default: Path) -> dict[str, Any]:
    """The workflow config as the Snakefile builds it: the given files merged in order
    (nested keys updated), or ``default`` (the demo's ``config/config.yaml``) without any."""
    files = list(configfiles) or [default]
    config: dict[str, Any] = {}
    for path in files:
        _update(config, read_yaml_mapping(Path(path), "the config file"))
    return config


def _update(base: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _update(base[key], value)
        else:
            base[key] = value

"""The status view's reading of Snakemake's run logs and incomplete markers."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from bids2hub.errors import ConfigError
from bids2hub.status import (
    DONE,
    FAILED,
    INCOMPLETE,
    MISSING,
    _incomplete_marker,
    load_config,
    output_state,
    parse_run_log,
    run_failures,
)

# Shapes of a real Snakemake 9 run log: a local job's error, then a SLURM
# group job's error with the job's own log appended (which repeats the error).
LOCAL_ERROR = """\
[Wed Nov 25 19:34:34 2026]
Error in rule prepare_dwi:
    message: None
    jobid: 7
    input: /b/sub-A/ses-1/dwi/sub-A_ses-1_dwi.nii.gz, /b/sub-A/ses-1/dwi/sub-A_ses-1_dwi.bval
    output: /o/work/deepisles/sub-A/dwi.nii.gz, /o/work/deepisles/sub-A/adc.nii.gz, /o/work/deepisles/sub-A/prepared.json
    log: /o/logs/prepare_dwi/sub-A.log (check log file(s) for error details)
    shell:
        python -m bids2hub segment prepare ...
        (command exited with non-zero exit code)
Removing output files of failed job prepare_dwi since they might be corrupted:
"""
GROUP_ERROR = """\
Job aee5a5a2 has been submitted with SLURM jobid 2 (log: /w/.snakemake/slurm_logs/group_sessions_write_shard/2.log).
[Wed Nov 25 19:34:42 2026]
    message: Error in group sessions
    log: /w/.snakemake/slurm_logs/group_sessions_write_shard/2.log (check log file(s) for error details)
    jobs:
        rule write_shard:
            jobid: 3
            output: /o/hub/data/sub-B/sub-B_ses-2.parquet
            log: /o/logs/write_shard/sub-B/sub-B_ses-2.log (check log file(s) for error details)
Logfile /w/.snakemake/slurm_logs/group_sessions_write_shard/2.log:
================================================================================
    Error in rule write_shard:
        message: None
        jobid: 3
        output: /o/hub/data/sub-B/sub-B_ses-2.parquet
        log: /o/logs/write_shard/sub-B/sub-B_ses-2.log (check log file(s) for error details)
Finished jobid: 4 (Rule: write_shard)
    output: /o/hub/data/sub-C/sub-C_ses-1.parquet
"""


def test_parse_run_log_reads_local_and_group_errors() -> None:
    failures = parse_run_log(LOCAL_ERROR + GROUP_ERROR)
    assert sorted(failures) == [
        "/o/hub/data/sub-B/sub-B_ses-2.parquet",
        "/o/work/deepisles/sub-A/adc.nii.gz",
        "/o/work/deepisles/sub-A/dwi.nii.gz",
        "/o/work/deepisles/sub-A/prepared.json",
    ]  # sub-C's output line is outside any error block
    prep = failures["/o/work/deepisles/sub-A/prepared.json"]
    assert (prep.rule, prep.log) == ("prepare_dwi", "/o/logs/prepare_dwi/sub-A.log")
    shard = failures["/o/hub/data/sub-B/sub-B_ses-2.parquet"]
    assert (shard.rule, shard.log) == ("write_shard", "/o/logs/write_shard/sub-B/sub-B_ses-2.log")


def test_parse_run_log_without_errors_is_empty() -> None:
    assert parse_run_log("Building DAG of jobs...\nFinished jobid: 0 (Rule: all)\n") == {}


def test_output_state(tmp_path: Path) -> None:
    work = tmp_path / "work"
    done, broken, absent, dying = (str(tmp_path / n) for n in ("a", "b", "c", "d"))
    Path(done).write_text("x")
    Path(dying).write_text("half")
    marker = _incomplete_marker(work, dying)
    # Snakemake's own encoding: url-safe base64 of the path under .snakemake/incomplete.
    assert (
        marker == work / ".snakemake/incomplete" / base64.urlsafe_b64encode(dying.encode()).decode()
    )
    marker.parent.mkdir(parents=True)
    marker.write_text("")
    failures = parse_run_log(f"Error in rule r:\n    output: {broken}\n    log: /l.log\n")
    assert output_state(done, work, failures) == DONE
    assert output_state(broken, work, failures) == FAILED
    assert output_state(absent, work, failures) == MISSING
    assert output_state(dying, work, failures) == INCOMPLETE


def test_failures_of_older_runs_count_until_a_later_run_reports_again(tmp_path: Path) -> None:
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    # Run 1: prepare_dwi of sub-A and a shard of sub-B fail. Run 2 (--keep-going, killed
    # early) retried only the shard, which failed again with another log.
    (logs / "2026-11-25T100000.000000.snakemake.log").write_text(LOCAL_ERROR + GROUP_ERROR)
    retry = GROUP_ERROR.replace("/o/logs/write_shard/sub-B/sub-B_ses-2.log", "/o/logs/retry.log")
    (logs / "2026-11-25T110000.000000.snakemake.log").write_text(retry)
    failures = run_failures(tmp_path)
    assert set(failures) == {
        "/o/work/deepisles/sub-A/dwi.nii.gz",
        "/o/work/deepisles/sub-A/adc.nii.gz",
        "/o/work/deepisles/sub-A/prepared.json",
        "/o/hub/data/sub-B/sub-B_ses-2.parquet",
    }
    assert failures["/o/work/deepisles/sub-A/prepared.json"].log == "/o/logs/prepare_dwi/sub-A.log"
    assert failures["/o/hub/data/sub-B/sub-B_ses-2.parquet"].log == "/o/logs/retry.log"
    assert run_failures(tmp_path / "no-runs-yet") == {}


def test_long_paths_split_like_snakemake(tmp_path: Path) -> None:
    from snakemake.persistence.file import FilePersistence

    path = "/" + "x" * 400 + "/out.parquet"
    marker = _incomplete_marker(tmp_path, path)
    incomplete = tmp_path / ".snakemake/incomplete"
    assert len(marker.relative_to(incomplete).parts) == 3  # 560 characters of base64
    # Snakemake's own record path for the same output (255-character names here).
    persistence = FilePersistence.__new__(FilePersistence)
    persistence._max_len = None
    incomplete.mkdir(parents=True)
    assert Path(persistence._record_path(str(incomplete), path)) == marker


def test_load_config_merges_files_like_snakemake(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("bids_dir: x\nsegment: {backend: threshold, session: latest}\n")
    b.write_text("segment: {backend: deepisles}\n")
    cfg = load_config([a, b], tmp_path / "unused.yaml")
    assert cfg == {"bids_dir": "x", "segment": {"backend": "deepisles", "session": "latest"}}
    a.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: the config file must be a mapping"):
        load_config([a], tmp_path / "unused.yaml")

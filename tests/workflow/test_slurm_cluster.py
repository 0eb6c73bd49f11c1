"""The local SLURM cluster: it comes up on a machine that never ran it, and
scancel leaves no process of a job behind.

The test stops the running cluster, starts it from an empty configuration
folder (as on a fresh machine: no slurm.conf, gres.conf, cgroup.conf or
slurmdbd.conf), checks that it answers with that configuration, and always
restarts it with the default configuration, leaving it running. A failing
bring-up step names itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, job_processes

pytestmark = pytest.mark.workflow

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


def _cluster(cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER), cmd], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_a_failing_bring_up_step_names_itself(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = {
        **os.environ,
        "BIDS2HUB_SLURM_CONF_DIR": str(tmp_path / "conf"),
        "BIDS2HUB_SLURM_LOG_DIR": str(tmp_path / "a-file" / "log"),  # cannot be created
    }
    proc = _cluster("start", env)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f'slurm-cluster: failed in step "write the configuration to {tmp_path / "conf"}" (exit 1'
    ), proc.stderr
    assert "mkdir" in last


def test_cluster_starts_without_any_slurm_config(tmp_path: Path) -> None:
    conf = tmp_path / "etc-slurm"
    conf.mkdir()
    env = {
        **os.environ,
        "BIDS2HUB_SLURM_CONF_DIR": str(conf),
        "BIDS2HUB_SLURM_LOG_DIR": str(tmp_path / "log"),
        "BIDS2HUB_SLURM_SPOOL": str(tmp_path / "spool"),
    }
    stop = _cluster("stop")
    assert stop.returncode == 0, stop.stderr
    try:
        proc = _cluster("start", env)
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in conf.iterdir()) == [
            "cgroup.conf", "gres.conf", "slurm.conf", "slurmdbd.conf",
        ]  # fmt: skip
        client = {**os.environ, "SLURM_CONF": str(conf / "slurm.conf")}
        info = subprocess.run(
            ["sinfo", "-h", "-o", "%P %a %G"], capture_output=True, text=True, env=client,
            timeout=60, check=True,
        ).stdout  # fmt: skip
        assert "cpu* up" in info and "gpu up gpu:fake:2" in info, info
        shown = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, env=client,
            timeout=60, check=True,
        ).stdout  # fmt: skip
        assert f"SLURM_CONF              = {conf / 'slurm.conf'}" in shown, shown[:2000]
        assert f"StateSaveLocation       = {tmp_path / 'spool' / 'slurmctld'}" in shown
        job = subprocess.run(
            ["srun", "-N1", "-t", "1", "hostname"], capture_output=True, text=True, env=client,
            timeout=120, check=False,
        )  # fmt: skip
        assert job.returncode == 0 and job.stdout.strip(), job.stderr
    finally:
        _cluster("stop")
        back = _cluster("start")  # the default configuration, left running
    assert back.returncode == 0, back.stderr
    assert _cluster("status").returncode == 0


# A job whose processes outlive their parents and ignore SIGTERM, as the job-side
# Snakemake did that survived a scancel by 14-25 minutes under proctrack/linuxproc
# (which finds a job's processes by their parents and so loses re-parented ones).
ORPHANS = """#!/bin/bash
( trap '' TERM; exec sleep 600 ) &
disown
( ( trap '' TERM; exec sleep 600 ) & )
echo started
sleep 600
"""


def test_scancel_leaves_no_process_of_the_job(tmp_path: Path) -> None:
    up = _cluster("start")
    assert up.returncode == 0, up.stderr
    script = tmp_path / "orphans.sh"
    script.write_text(ORPHANS)
    out = tmp_path / "job.out"
    job = subprocess.run(
        ["sbatch", "--parsable", "-o", str(out), "-t", "5", str(script)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    alive: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        while len(job_processes([job])) < 4 and time.monotonic() < deadline:
            time.sleep(0.5)  # the script, its sleep and the two re-parented sleeps
        before = job_processes([job])
        assert sum("sleep 600" in cmd for cmd in before.values()) >= 3, before
        subprocess.run(["scancel", job], check=True, timeout=60)
        deadline = time.monotonic() + 60  # KillWait=5 s, then SIGKILL
        while (alive := job_processes([job])) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive, f"processes of cancelled job {job} survived 60 s: {alive}"
    finally:
        for pid in job_processes([job]):  # never leave them to the next tests
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

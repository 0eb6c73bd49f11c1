"""Two workflow runs on one out_dir, from different working directories.

Snakemake's own lock lives in each working directory's ``.snakemake`` and
does not see the other run; the out_dir lock (bids2hub.locks) does.
Old behaviour: the second run went ahead and both wrote the same files.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_snakemake, tool_env

pytestmark = pytest.mark.workflow

HOLD = (
    "import sys\n"
    "from bids2hub.locks import lock_out_dir\n"
    "lock_out_dir(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_second_run_on_the_same_out_dir_stops_before_writing(tmp_path: Path) -> None:
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(tmp_path / "bids", n_subjects=2)
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"bids_dir": str(bids), "out_dir": str(out), "dataset": "demo"}))
    first, second = tmp_path / "wd-a", tmp_path / "wd-b"
    first.mkdir()
    second.mkdir()
    # The first run's main process holds the lock (the same call its Snakefile makes).
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        cwd=first,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=tool_env(PYTHONPATH=str(REPO / "workflow")),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = run_snakemake(second, "--configfile", str(cfg), check=False)
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"bids2hub: error: out_dir {out} is in use by pid {holder.pid} ")
        assert "point this one at another out_dir" in last
        assert _files(out) == [".lock"]  # nothing written: no index, no shard
        # a dry run parses (and would write the index) too: it stops the same way
        proc = run_snakemake(second, "-n", "--configfile", str(cfg), check=False)
        assert proc.returncode != 0 and f"pid {holder.pid}" in proc.stderr
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder's lock is released by the kernel
        holder.wait(timeout=30)
    run_snakemake(second, "--configfile", str(cfg), "--until", "write_shard")
    assert any(p.endswith(".parquet") for p in _files(out / "hub"))

"""The advisory locks: held across processes, named holder, released on any exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from bids2hub.locks import LockBusy, lock_out_dir, push_lock

from tests.conftest import REPO, tool_env

HOLD = (
    "import sys\n"
    "from bids2hub.locks import push_lock\n"
    "with push_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


def test_push_lock_names_the_holder_and_is_freed_when_it_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIDS2HUB_LOCK_DIR", str(tmp_path))
    env = tool_env(PYTHONPATH=str(REPO / "workflow"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, "org/arc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy) as err, push_lock("org/arc"):
            pass
        msg = str(err.value)
        assert f"pid {holder.pid} on host {socket.gethostname()} since " in msg
        assert "\n" not in msg
        with push_lock("org/other"):  # another repository is free
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with push_lock("org/arc") as path:
        assert f"pid {os.getpid()} " in path.read_text()
    assert path.read_text() == ""  # released: no stale holder named


def test_out_dir_lock_is_held_for_the_process_and_reused_by_a_second_parse(
    tmp_path: Path,
) -> None:
    path = lock_out_dir(tmp_path / "out")
    assert lock_out_dir(tmp_path / "out") == path == (tmp_path / "out/.lock").resolve()
    code = "import sys; from bids2hub.locks import lock_out_dir; lock_out_dir(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
        env=tool_env(PYTHONPATH=str(REPO / "workflow")),
    )  # fmt: skip
    assert proc.returncode != 0 and "LockBusy" in proc.stderr
    assert "point this one at another out_dir" in proc.stderr

"""The push's progress lines and the local Hub server's commits-per-hour limit."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from bids2hub.hub.progress import PushProgress
from bids2hub.hub.push import PushOptions, push_folder

REPO = "user/limited"


class Clock:
    """A clock the test moves: ``sleep`` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        p = root / "data" / f"sub-{i}" / f"sub-{i}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(hashlib.sha256(str(i).encode()).digest() * (1000 + i))
    return root


def test_progress_line_has_bytes_files_rate_and_eta() -> None:
    clock, lines = Clock(), []
    p = PushProgress(4_000_000_000, 4, interval_s=10, clock=clock, emit=lines.append)
    clock.now += 10
    p.advance(1_000_000_000)
    assert lines == ["push: 1.0 GB of 4.0 GB (25%), 0 of 4 files, 100.0 MB/s, ETA 30 s"]
    p.advance(1)  # within the interval: no line
    assert len(lines) == 1
    clock.now += 10
    p.commit_done(2, 2_000_000_000)  # a commit always reports
    assert lines[-1] == "push: 2.0 GB of 4.0 GB (50%), 2 of 4 files, 100.0 MB/s, ETA 20 s"
    clock.now += 3600
    p.commit_done(2, 2_000_000_000)
    assert lines[-1].endswith("4 of 4 files, 1.1 MB/s, done")


def test_push_waits_out_the_hourly_commit_limit_and_logs_progress(
    hub_server, tmp_path: Path, caplog
) -> None:
    clock = Clock()
    hub_server.clock, hub_server.commits_per_hour = clock, 2
    hub = _folder(tmp_path / "hub", 5)
    options = PushOptions(
        repo_id=REPO, max_files_per_commit=1, max_attempts=3, max_retry_after_s=7200
    )
    with caplog.at_level(logging.INFO, logger="bids2hub.hub.push"):
        result = push_folder(hub, options, sleep=clock.sleep)
    assert len(result.commits) == 5
    limited = [r for r in hub_server.requests if r.status == 429]
    assert len(limited) == 2 and all("/commit/" in r.path for r in limited)
    # commits 3 and 5 wait until the window's oldest commit is an hour old
    assert len(clock.slept) == 2 and all(3590 <= s <= 3600 for s in clock.slept)
    assert clock.now - 1000.0 >= 7180
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("push: ")]
    assert len(progress) >= 5 and "5 of 5 files" in progress[-1]
    assert progress[-1].endswith(", done")
    assert "of 5 files" in progress[0] and "ETA" in progress[0]

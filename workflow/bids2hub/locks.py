"""Advisory locks against two runs writing the same outputs at once.

* :func:`lock_out_dir`: the main Snakemake process of a run holds
  ``{out_dir}/.lock`` from parse time until it exits, so a second run pointed
  at the same ``out_dir`` (from another working directory, which Snakemake's
  own ``.snakemake`` lock does not cover) stops before it writes anything.
  Cluster jobs never take it: they belong to the run that holds it.
* :func:`push_lock`: one push per Hub repository at a time on this machine
  (the Hub itself has no lock; pushes from other machines are caught by the
  push's parent-commit check instead).

Both use ``flock`` (released by the kernel when the process ends, however it
ends) on a file that names the holder: pid, host and start time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from bids2hub.errors import Bids2HubError

#: Locks this process holds for its lifetime, by path (a second parse reuses them).
_HELD: dict[Path, int] = {}


class LockBusy(Bids2HubError):
    """Another process holds the lock; the message names it."""


def _holder_text() -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"pid {os.getpid()} on host {socket.gethostname()} since {stamp}\n"


def acquire(path: Path, what: str, advice: str) -> int:
    """Take the exclusive lock ``path`` without waiting; return its file descriptor.

    Raises
    ------
    LockBusy
        ``<what> is in use by pid N on host H since T; <advice>`` (one line).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise LockBusy(f"{what} is in use by {holder} (lock {path}); {advice}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, _holder_text().encode(), 0)
    return fd


def release(fd: int) -> None:
    """Give the lock back (the holder text is cleared first)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)


def lock_out_dir(out_dir: Path) -> Path:
    """Hold ``{out_dir}/.lock`` until this process exits; return the lock's path.

    Raises
    ------
    LockBusy
        Another workflow run (its pid and host named) uses ``out_dir``.
    """
    path = Path(out_dir).resolve() / ".lock"
    if path not in _HELD:
        _HELD[path] = acquire(
            path,
            f"out_dir {path.parent}",
            "wait for that workflow run to finish or point this one at another out_dir",
        )
    return path


def lock_dir() -> Path:
    """Folder of the push locks: ``BIDS2HUB_LOCK_DIR``, else ``~/.cache/bids2hub/locks``."""
    env = os.environ.get("BIDS2HUB_LOCK_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "bids2hub" / "locks"


@contextlib.contextmanager
def push_lock(repo_id: str, repo_type: str = "dataset") -> Iterator[Path]:
    """Hold the local lock of one Hub repository while the body pushes to it.

    Raises
    ------
    LockBusy
        Another push to ``repo_id`` runs on this machine (its pid named).
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "--", f"{repo_type}--{repo_id}")
    path = lock_dir() / f"push-{slug}.lock"
    fd = acquire(
        path,
        f"Hub {repo_type} repository {repo_id}",
        "another push to it is running: wait for it to finish, then rerun this push "
        "(it resumes and verifies)",
    )
    try:
        yield path
    finally:
        release(fd)

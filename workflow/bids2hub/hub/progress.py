"""Progress of a push: bytes and files uploaded, rate and ETA, logged as the bytes go out.

:class:`PushProgress` is given to :func:`bids2hub.hub.push.push_folder`; every file it
uploads through LFS is read through :func:`counting_add` (a ``CommitOperationAdd``
whose file object counts the bytes the upload reads), and each finished commit settles
the counts with :meth:`PushProgress.commit_done` (files the server already had, or
small files sent inside the commit, are never read by an upload). A line goes to the
log at most every ``interval_s`` seconds and after every commit, e.g.::

    push: 5.2 GB of 20.0 GB (26%), 230 of 903 files, 410 MB/s, ETA 36 s
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

log = logging.getLogger("bids2hub.hub.push")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")


def _duration(s: float) -> str:
    s = max(0, round(s))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass
class PushProgress:
    """Counts of a push and the line that reports them.

    Parameters
    ----------
    total_bytes, total_files
        What is to be uploaded.
    interval_s
        Least time between two lines while bytes flow.
    clock
        Seconds, monotonic (a test's clock).
    emit
        Where a line goes (default: the push's logger, INFO).
    """

    total_bytes: int
    total_files: int
    interval_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    emit: Callable[[str], None] | None = None
    done_bytes: int = 0
    done_files: int = 0
    _streamed: int = 0  # bytes read by uploads of the current commit
    _start: float = field(default=0.0, init=False)
    _last: float = field(default=0.0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._start = self._last = self.clock()  # the first line after one interval

    def line(self) -> str:
        """The progress line: bytes, files, rate and ETA."""
        done = min(self.done_bytes + self._streamed, self.total_bytes)
        elapsed = self.clock() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * done / self.total_bytes if self.total_bytes else 100.0
        if done >= self.total_bytes:
            eta = "done"
        elif rate > 0:
            eta = f"ETA {_duration((self.total_bytes - done) / rate)}"
        else:
            eta = "ETA unknown"
        return (
            f"push: {_size(done)} of {_size(self.total_bytes)} ({pct:.0f}%), "
            f"{self.done_files} of {self.total_files} files, {_size(rate)}/s, {eta}"
        )

    def _report(self, force: bool) -> None:
        now = self.clock()
        if force or now - self._last >= self.interval_s:
            self._last = now
            (self.emit or log.info)(self.line())

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more were read by an upload (thread-safe: uploads run in threads)."""
        with self._lock:
            self._streamed += nbytes
            self._report(False)

    def commit_done(self, files: int, nbytes: int) -> None:
        """A commit of ``files`` files, ``nbytes`` bytes in all, landed."""
        with self._lock:
            self.done_files += files
            self.done_bytes += nbytes
            self._streamed = 0
            self._report(True)


class _CountingReader:
    """A read-only file object that reports how far the reading got (seeks back allowed)."""

    def __init__(self, fh: BinaryIO, report: Callable[[int], None]) -> None:
        self._fh, self._report, self._high = fh, report, 0

    def _moved(self) -> None:
        pos = self._fh.tell()
        if pos > self._high:
            self._report(pos - self._high)
            self._high = pos

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._moved()
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk

    def __getattr__(self, name: str) -> Any:  # seek, tell, fileno, ...
        return getattr(self._fh, name)


def counting_add(path_in_repo: str, path: str, progress: PushProgress | None) -> Any:
    """A ``CommitOperationAdd`` of a local file whose upload reports to ``progress``."""
    from huggingface_hub import CommitOperationAdd

    if progress is None:
        return CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=path)

    class _Add(CommitOperationAdd):
        @contextlib.contextmanager
        def as_file(self, with_tqdm: bool = False) -> Iterator[BinaryIO]:
            with open(path, "rb") as fh:
                yield _CountingReader(fh, progress.advance)  # type: ignore[misc]

    return _Add(path_in_repo=path_in_repo, path_or_fileobj=path)

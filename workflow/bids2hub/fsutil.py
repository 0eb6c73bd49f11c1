"""Small file-system helpers shared by the writers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success.

    On any exception the temporary file is removed and ``dest`` is left as it
    was, so a reader never sees a half-written output.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_if_changed(dest: Path, text: str) -> bool:
    """Write ``text`` to ``dest`` atomically unless it already holds exactly that.

    Keeping the mtime of an unchanged file keeps Snakemake from rerunning the
    jobs that read it. Returns True when the file was (re)written.
    """
    dest = Path(dest)
    try:
        if dest.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


_CHUNK = 4 << 20


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def stat_key(path: Path) -> tuple[int, int, int, int]:
    """(size, mtime_ns, ctime_ns, inode): changes whenever the file's bytes may have.

    A file replaced by ``cp -p`` or ``rsync -a`` keeps its mtime but gets a new
    ctime and inode, so a hash cached under this key is never stale.
    """
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def cached_sha256(
    path: Path, entry: Mapping[str, Any] | None
) -> tuple[tuple[int, int, int, int], str]:
    """The file's :func:`stat_key` and sha256, reusing ``entry["sha256"]`` when
    ``entry["stat"]`` (from an earlier run) equals the key, else reading the file."""
    key = stat_key(path)
    if entry and tuple(entry.get("stat", ())) == key:
        return key, str(entry["sha256"])
    return key, sha256_file(path)

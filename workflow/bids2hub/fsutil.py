"""Small file-system helpers shared by the writers."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


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

"""File hashing with a stat-keyed cache: reused only while the file cannot have changed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from bids2hub.fsutil import cached_sha256, sha256_file


def test_cached_hash_is_reused_only_for_an_untouched_file(tmp_path: Path) -> None:
    f = tmp_path / "shard.parquet"
    f.write_bytes(b"a" * 10)
    key, digest = cached_sha256(f, None)
    assert digest == hashlib.sha256(b"a" * 10).hexdigest() == sha256_file(f)
    entry = {"stat": list(key), "sha256": "cached"}
    assert cached_sha256(f, entry) == (key, "cached")  # untouched: not read again
    # Same size, bytes rewritten in place, mtime put back (what `cp -p` onto it does):
    st = f.stat()
    time.sleep(0.01)
    f.write_bytes(b"b" * 10)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_mtime_ns == st.st_mtime_ns
    new_key, new_digest = cached_sha256(f, entry)
    assert new_key != key and new_digest == hashlib.sha256(b"b" * 10).hexdigest()

"""One subject's checks in one job each: its sessions' sources, then its shards read back.

A local run pays Snakemake's per-job cost for every job (about a second), so the
validation stage runs per subject, not per session: ARC's 902 sessions need 230
source-check jobs and 230 read-back jobs instead of 2 x 902 (and the preview rows,
which used to be 902 jobs more, come out of the read-back's own pass over each
shard). Each session still gets its own result file, so the report, ``bids2hub
status`` and the per-session rules upstream are unchanged; a changed file reruns
its session's shard and its subject's checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids2hub.fsutil import atomic_path
from bids2hub.index.manifest import Manifest
from bids2hub.shards.colmap import ColumnMap
from bids2hub.validate.roundtrip import check_shard
from bids2hub.validate.sources import check_session, dumps


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_subject_sources(
    manifest: Manifest,
    cmap: ColumnMap,
    sub: str,
    sessions: Sequence[str],
    outputs: Sequence[Path],
) -> list[dict[str, Any]]:
    """Check the source files of each of a subject's sessions; write one result per session.

    Parameters
    ----------
    manifest, cmap
        Index of the dataset and column map.
    sub
        Subject label without prefix.
    sessions
        Its session labels without prefix (``""`` without sessions).
    outputs
        One result JSON per session, in the same order.

    Returns
    -------
    list of dict
        The results (:func:`bids2hub.validate.sources.check_session`), in order.
    """
    if len(sessions) != len(outputs):
        raise ValueError(f"{len(sessions)} session(s) but {len(outputs)} output path(s)")
    results = []
    for ses, out in zip(sessions, outputs, strict=True):
        result = check_session(manifest, cmap, sub, ses)
        _write(Path(out), dumps(result))
        results.append(result)
    return results


@dataclass(frozen=True)
class ReadBack:
    """One shard to read back: its session, the files it is judged by, and what to write."""

    session: str  # label without prefix ("" without sessions)
    shard: Path
    session_check: Path  # the session's source check (its hashes are the reference)
    output: Path  # the round-trip result
    preview: Path | None = None  # the session's preview row, when the run has a preview


def check_subject_shards(
    manifest: Manifest,
    cmap: ColumnMap,
    sub: str,
    items: Sequence[ReadBack],
    *,
    decode: bool = True,
    height: int | None = None,
) -> list[dict[str, Any]]:
    """Read each of a subject's shards back once; write its round-trip and its preview row.

    The preview (:class:`bids2hub.hub.preview.SessionPreview`) is fed the columns the
    round-trip reads, so a shard is read once for both.

    Parameters
    ----------
    manifest, cmap
        Index and column map the shards were written with.
    sub
        Subject label without prefix.
    items
        The shards, with their paths.
    decode
        Decode one cell per column with ``datasets``.
    height
        Pixels per slice of the preview thumbnails (default: the preview's own).

    Returns
    -------
    list of dict
        The round-trip results, in order.
    """
    import json

    results = []
    for item in items:
        session = json.loads(Path(item.session_check).read_text(encoding="utf-8"))
        preview = None
        if item.preview is not None:
            from bids2hub.hub.preview import DEFAULT_HEIGHT, SessionPreview

            preview = SessionPreview(item.shard, cmap, height=height or DEFAULT_HEIGHT)
        result = check_shard(
            Path(item.shard),
            manifest,
            cmap,
            sub,
            item.session,
            session,
            decode=decode,
            visit=preview.visit if preview is not None else None,
        )
        _write(Path(item.output), dumps(result))
        if preview is not None:
            from bids2hub.hub.preview import write_preview_row

            write_preview_row(preview.row(), cmap, Path(item.preview))
        results.append(result)
    return results

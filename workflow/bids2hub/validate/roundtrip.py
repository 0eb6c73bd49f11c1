"""Per-shard round-trip (``validation/shards/sub-X/<shard>.json``).

A shard is read back one column at a time: a Nifti column's bytes where they lie in
its data pages, each cell released from memory as it is hashed, its paths and every
other column through pyarrow (:func:`bids2hub.shards.cells.read_cells`), and
compared with what the column map and the session's source check
(:func:`bids2hub.validate.sources.check_session`) say: columns, order and Arrow
types, the ``datasets`` features in the metadata, one row, the session's files
in each list (run order, base names), every Nifti cell's sha256 equal to its
source file's, companion and sidecar lists aligned with their images and equal
to their files, and one cell per column decoded with ``datasets`` (the smallest
image of each column, its shape checked against the source header).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bids2hub.errors import Bids2HubError, NiftiError
from bids2hub.index.manifest import FileRecord, Manifest, shard_id
from bids2hub.layout import RELATIVE
from bids2hub.nifti import image_head
from bids2hub.shards.cells import Cell, cell_sha256, read_cells
from bids2hub.shards.colmap import IMAGE_KINDS, Column, ColumnMap, sidecar_name
from bids2hub.shards.pages import PageError
from bids2hub.shards.writer import cell_companion, plan_session, shard_schema
from bids2hub.validate import RESULT_VERSION
from bids2hub.validate.sources import finding

#: Source-check failures of a companion or sidecar file, whose shard cell is null.
UNUSABLE_CHECKS = ("companion", "sidecar")


def _sha(buf: Any) -> str:
    return hashlib.sha256(buf).hexdigest()


class _Checker:
    """Collects failures while one shard is compared with its sources."""

    def __init__(self, rel: str, session: dict[str, Any]) -> None:
        self.rel = rel
        self.files: dict[str, dict[str, Any]] = session.get("files", {})
        #: Companions and sidecars the source check found unusable: their cells must be null.
        self.unusable = {
            f["file"] for f in session.get("failures", []) if f["check"] in UNUSABLE_CHECKS
        }
        self.failures: list[dict[str, Any]] = []
        self.nulls: list[dict[str, str]] = []
        self.cells = 0

    def fail(self, message: str, check: str = "round_trip") -> None:
        self.failures.append(finding(check, self.rel, f"{self.rel}: {message}"))

    def nifti_cell(self, column: str, cell: Cell, rec: FileRecord) -> None:
        self.cells += 1
        data, path = cell
        if path != rec.name:
            self.fail(f"column '{column}': cell path '{path}' is not {rec.name}")
        src = self.files.get(rec.path)
        if data is None:
            self.fail(f"column '{column}': cell of {rec.path} has no bytes")
        elif src is None:
            self.fail(f"column '{column}': {rec.path} was not readable at the source check")
        elif cell_sha256(data) != src["sha256"]:
            self.fail(f"column '{column}': cell sha256 differs from {rec.path}")

    def text_cell(self, column: str, text: str | None, rel: str, key: str) -> None:
        self.cells += 1
        src = self.files.get(rel)
        if src is None or rel in self.unusable:
            if text is not None:
                why = "does not exist" if src is None else "is unusable (see the source check)"
                self.fail(f"column '{column}': holds text but {rel} {why}")
            elif rel in self.unusable:  # (an image without a sidecar is normal, not listed)
                self.nulls.append({"column": column, "file": rel})
            return
        if text is None:
            self.fail(f"column '{column}': null but {rel} exists")
        elif src.get(key) is None or _sha(text.encode("utf-8")) != src[key]:
            self.fail(f"column '{column}': text differs from {rel}")


def _check_schema(ck: _Checker, pf: pq.ParquetFile, cmap: ColumnMap) -> dict[str, Any] | None:
    """Compare names, order, types and features; return the features that were found."""
    expected, features = shard_schema(cmap)
    actual = pf.schema_arrow
    if actual.names != expected.names:
        missing = [n for n in expected.names if n not in actual.names]
        extra = [n for n in actual.names if n not in expected.names]
        ck.fail(
            f"columns differ from the column map (missing {missing}, extra {extra}, "
            f"order {'differs' if not missing and not extra else 'n/a'})"
        )
    for field in expected:
        idx = actual.get_field_index(field.name)
        if idx >= 0 and actual.field(idx).type != field.type:
            ck.fail(
                f"column '{field.name}' has type {actual.field(idx).type}, expected {field.type}"
            )
    meta = actual.metadata or {}
    try:
        found = json.loads(meta[b"huggingface"])["info"]["features"]
    except (KeyError, ValueError, TypeError):
        ck.fail("no 'huggingface' features in the parquet metadata")
        return None
    if found != features:
        diff = sorted(k for k in set(found) | set(features) if found.get(k) != features.get(k))
        ck.fail(f"'huggingface' features differ from the column map for {diff}")
    return found


def _smallest(cells: list[tuple[Cell, FileRecord]]) -> tuple[Any, FileRecord] | None:
    """The smallest cell, as much of it as a decode reads (copied out), and its record."""
    usable = [(c, r) for c, r in cells if c[0] is not None]
    if not usable:
        return None
    (data, path), rec = min(usable, key=lambda cr: len(cr[0][0]))  # type: ignore[arg-type]
    return {"bytes": _decodable(data, rec.path), "path": path}, rec  # type: ignore[arg-type]


def _decodable(data: memoryview, name: str) -> bytes:
    """What ``datasets``' decode of a Nifti cell reads: its header and extensions, inflated.

    ``datasets`` gunzips a gzip cell whole (stdlib zlib) and hands it to nibabel, which
    parses the header and reads no voxels until asked. The cell's bytes equal its
    source file's (sha256) and the source check inflated that file whole (CRC, size),
    so inflating the voxels again proved nothing: it was 86 % of a read-back with
    decode (bench_validation --limits). A cell whose header does not parse is passed
    whole (inflated by ISA-L when it is a valid stream), for ``datasets`` to report.
    """
    try:
        return image_head(data, name)
    except NiftiError:
        pass
    raw = bytes(data)
    if raw[:2] != b"\x1f\x8b":
        return raw
    from isal import igzip

    try:
        return igzip.decompress(raw)
    except Exception:  # not a valid stream: datasets' own decode reports it
        return raw


def _decode(
    ck: _Checker, features: Any, col: str, value: Any, rec: FileRecord | None, is_list: bool
) -> bool:
    """Decode one cell with ``datasets``; check an image's shape against its source header."""
    import nibabel as nib
    from datasets.features.features import decode_nested_example

    # A list column's element feature decodes the one cell: decoding the list would
    # decode its first element twice (datasets compares it with its decoded form).
    feature = features[col].feature if is_list else features[col]
    try:
        decoded = decode_nested_example(feature, value)
    except Exception as exc:  # datasets and nibabel raise many kinds
        ck.fail(f"column '{col}': cell cannot be decoded by datasets ({exc})", check="decode")
        return False
    if rec is None:
        if decoded != value:
            ck.fail(f"column '{col}': datasets decodes {value!r} as {decoded!r}", check="decode")
        return True
    shape = tuple(ck.files.get(rec.path, {}).get("shape", ()))
    if not isinstance(decoded, nib.Nifti1Image):
        ck.fail(f"column '{col}': datasets decoded {type(decoded).__name__}", check="decode")
    # The header's shape, not the array: the cell's bytes already equal its source file's
    # (sha256 above) and the source check inflated that file whole (CRC, data size), so
    # materialising the voxels (a 4D run in float64 after scaling) would prove nothing more.
    elif tuple(decoded.shape) != shape:
        ck.fail(
            f"column '{col}': decoded image of {rec.name} has shape {decoded.shape}, "
            f"source header says {shape}",
            check="decode",
        )
    return True


def check_shard(
    shard: Path,
    manifest: Manifest,
    cmap: ColumnMap,
    sub: str,
    ses: str,
    session: dict[str, Any],
    *,
    rel: str | None = None,
    decode: bool = True,
    visit: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """Read one shard back and compare it with its session's sources.

    Parameters
    ----------
    shard
        The parquet file.
    manifest, cmap
        Index and column map the shard was written with.
    sub, ses
        Labels without prefix.
    session
        The session's source check (its ``files`` hashes are the reference).
    rel
        Name of the shard in messages (default: ``hub/data/sub-X/<shard>.parquet``).
    decode
        Decode one cell per column with ``datasets`` (imported only then).
    visit
        Called with each column's name and values while they are in memory (a Nifti
        column's cells, any other column's one-row ``pyarrow`` column), so that another
        reader of the shard (the preview) does not read it a second time.

    Returns
    -------
    dict
        ``version``, ``shard``, ``checked`` (``cells`` compared, ``columns_decoded``,
        ``null_cells``), ``failures`` (``round_trip`` and ``decode`` entries) and
        ``null_cells`` (``{column, file}`` of each companion or sidecar cell that is
        null because the source check found its file missing or unusable).
    """
    sid = shard_id(sub, ses)
    rel = rel or RELATIVE.shard(sub, sid)
    ck = _Checker(rel, session)
    decoded = 0
    result: dict[str, Any] = {"version": RESULT_VERSION, "shard": sid}
    try:
        # The footer and schema; the columns are read below, memory-mapped: from the
        # page cache, not from a fresh buffer pyarrow fills first (a 563 MB DWI column,
        # page cache warm: 0.14 s mapped, 0.28 s buffered).
        pf = pq.ParquetFile(shard, memory_map=True)
    except (OSError, pa.ArrowException) as exc:
        ck.fail(f"cannot be read as parquet ({exc})")
        pf = None
    features = _check_schema(ck, pf, cmap) if pf is not None else None
    plan = None
    if pf is not None:
        if pf.metadata.num_rows != 1:
            ck.fail(f"{pf.metadata.num_rows} rows, expected 1")
        try:
            plan = plan_session(manifest, cmap, sub, ses)
        except Bids2HubError as exc:
            ck.fail(f"the session's files cannot be planned ({exc})")
    if pf is not None and plan is not None and pf.metadata.num_rows == 1:
        dfeats = None
        if decode and features is not None:
            from datasets import Features

            dfeats = Features.from_dict(features)
        present = set(pf.schema_arrow.names)
        columns: list[tuple[str, Column, bool]] = [(c.name, c, False) for c in cmap.columns]
        if cmap.sidecars:
            columns += [(sidecar_name(c), c, True) for c in cmap.image_columns()]
        for name, col, is_sidecar in columns:
            if name not in present:
                continue
            if col.kind in IMAGE_KINDS and not is_sidecar:
                # The bytes where they lie in the shard's pages (no copy), the paths
                # read by pyarrow: see bids2hub.shards.cells.read_cells.
                try:
                    cells = read_cells(shard, pf.metadata, name, col.kind == "images")
                except PageError as exc:
                    ck.fail(f"column '{name}': {exc}")
                    continue
                if visit is not None:
                    visit(name, cells)
                sample = _image_column(ck, plan, col, name, cells)
                del cells  # the views hold the column's mapping
            else:
                with pa.memory_map(str(shard)) as source:
                    column = pq.ParquetFile(source, metadata=pf.metadata).read(columns=[name])
                    column = column.column(0)
                    if visit is not None:
                        visit(name, column)
                    sample = _column(ck, plan, col, name, column, is_sidecar, ses, sub)
                    del column
            # Decoded once the column is released: only the (copied) sample is in memory.
            if dfeats is not None and sample is not None:
                cell, rec, is_list = sample
                decoded += _decode(ck, dfeats, name, cell, rec, is_list)
            sample = None  # its copy is not kept while the next column is read
    result["checked"] = {
        "cells": ck.cells,
        "columns_decoded": decoded,
        "null_cells": len(ck.nulls),
    }
    result["null_cells"] = sorted(ck.nulls, key=lambda n: (n["file"], n["column"]))
    result["failures"] = sorted(ck.failures, key=lambda f: (f["check"], f["message"]))
    return result


def _image_column(
    ck: _Checker, plan: Any, col: Column, name: str, cells: list[Cell]
) -> tuple[Any, FileRecord | None, bool] | None:
    """Compare one Nifti column's cells; return its smallest cell to decode."""
    recs = plan.images[col.name]
    if len(cells) != len(recs):
        ck.fail(f"column '{name}': {len(cells)} cell(s), the session has {len(recs)} file(s)")
        return None
    for cell, rec in zip(cells, recs, strict=True):
        ck.nifti_cell(name, cell, rec)
    sample = _smallest(list(zip(cells, recs, strict=True)))
    return (sample[0], sample[1], col.kind == "images") if sample else None


def _column(
    ck: _Checker,
    plan: Any,
    col: Column,
    name: str,
    column: pa.ChunkedArray,
    is_sidecar: bool,
    ses: str,
    sub: str,
) -> tuple[Any, FileRecord | None, bool] | None:
    """Compare one text or value column; return a sample (cell, record, is_list) to decode."""
    value = column[0]
    if is_sidecar:
        recs = plan.images[col.name]
        texts = value.as_py() if col.kind == "images" else [value.as_py()]
        if col.kind == "image" and not recs:
            texts = [] if texts == [None] else texts
        if len(texts) != len(recs):
            ck.fail(f"column '{name}': {len(texts)} sidecar(s) for {len(recs)} image(s)")
            return None
        for text, rec in zip(texts, recs, strict=True):
            ck.text_cell(name, text, cell_companion(rec, ".json"), "sha256")
        first = next((t for t in texts if t is not None), None)
        return (first, None, col.kind == "images") if first is not None else None
    if col.kind == "companion":
        recs = plan.images[col.of]
        texts = value.as_py() or []
        if len(texts) != len(recs):
            ck.fail(f"column '{name}': {len(texts)} value(s) for {len(recs)} '{col.of}' image(s)")
            return None
        for text, rec in zip(texts, recs, strict=True):
            ck.text_cell(name, text, cell_companion(rec, col.extension), "strip_sha256")
        first = next((t for t in texts if t is not None), None)
        return (first, None, True) if first is not None else None
    got = value.as_py()
    if col.kind == "subject" and got != f"sub-{sub}":
        ck.fail(f"column '{name}' is {got!r}, expected 'sub-{sub}'")
    elif col.kind == "session" and got != (f"ses-{ses}" if ses else None):
        ck.fail(f"column '{name}' is {got!r}, expected {f'ses-{ses}' if ses else None!r}")
    elif col.kind == "entity":
        recs = plan.images[col.of]
        raw = recs[0].entity(col.entity) if recs else ""
        want = col.mapping.get(raw, raw) or None
        if got != want:
            ck.fail(f"column '{name}' is {got!r}, expected {want!r}")
    return (got, None, False) if got is not None else None

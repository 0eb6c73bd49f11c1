"""Zero-copy access to a shard's Nifti cells (shared by the read-back check and the preview).

A shard has one row; a Nifti column holds one ``{bytes, path}`` struct (``image``) or a
list of them (``images``). Readers memory-map the shard and take views of the binary
buffers, so a session's bytes are not copied to be hashed or sliced.
"""

from __future__ import annotations

import hashlib
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bids2hub.shards.pages import PageError, Unsupported, read_binary_leaf

#: One Nifti cell: a zero-copy view of its bytes (None when null) and its ``path``.
Cell = tuple[memoryview | None, str | None]


def binary_views(arr: pa.Array) -> list[memoryview | None]:
    """Views into a (large) binary array's data buffer, one per value: no copies.

    ``hashlib`` hashes a view at full speed; ``Scalar.as_py()`` or ``to_pylist()``
    would first copy every cell.
    """
    validity, offsets, data = arr.buffers()[:3]
    width = "<i8" if pa.types.is_large_binary(arr.type) else "<i4"
    offs = np.frombuffer(offsets, dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    # Unsigned bytes: pyarrow's buffers export signed chars ('b'), which compare unequal
    # to the same bytes (b"\x1f\x8b" != a view of 0x1f 0x8b).
    view = memoryview(data).cast("B") if data is not None else memoryview(b"")
    valid = arr.is_valid().to_pylist() if validity is not None else [True] * len(arr)
    return [view[int(offs[i]) : int(offs[i + 1])] if valid[i] else None for i in range(len(arr))]


def _row_structs(column: pa.ChunkedArray, is_list: bool) -> pa.StructArray | None:
    """A one-row column's structs (a list column's whole list), or None when the row is null."""
    row = next((c for c in column.chunks if len(c)), None)
    if row is None:
        raise PageError("pyarrow reads no row")
    if not row.is_valid()[0].as_py():
        return None
    return row.flatten() if is_list else row  # a list's values, offsets applied


def nifti_cells(column: pa.ChunkedArray, is_list: bool) -> list[Cell]:
    """The Nifti cells of a one-row column read by pyarrow (its binary buffers, not copied)."""
    structs = _row_structs(column, is_list)
    if structs is None:
        return []
    data, paths = structs.flatten()  # children with the struct's offset and nulls applied
    return list(zip(binary_views(data), paths.to_pylist(), strict=True))


#: (max definition, max repetition) level of the bytes leaf of a list and of a lone struct.
_LEVELS = {True: (4, 1), False: (2, 0)}


def read_cells(shard: Path, metadata: Any, name: str, is_list: bool) -> list[Cell]:
    """The Nifti cells of one column: the bytes in place in their pages, the paths via pyarrow.

    The bytes leaf is read by :func:`bids2hub.shards.pages.read_binary_leaf` (no copy:
    a column costs its mapped pages, not twice its size); pyarrow reads the ``path``
    leaf, and its list must have as many elements as the bytes leaf's levels, so the
    structure is read by both. A column the page reader does not decode is read whole
    with pyarrow.

    Raises
    ------
    bids2hub.shards.pages.PageError
        The bytes leaf's pages are malformed or disagree with pyarrow's list (the
        message names neither the shard nor the column: the caller does).
    """
    import pyarrow.parquet as pq

    prefix = f"{name}.list.element" if is_list else name

    def read(leaf: str) -> pa.ChunkedArray:
        try:
            with pa.memory_map(str(shard)) as source:
                return pq.ParquetFile(source, metadata=metadata).read(columns=[leaf]).column(0)
        except (OSError, pa.ArrowException) as exc:
            raise PageError(f"pyarrow cannot read '{leaf}' ({exc})") from None

    max_def, max_rep = _LEVELS[is_list]
    try:
        leaf = read_binary_leaf(shard, metadata, f"{prefix}.bytes", (max_def, max_rep))
    except Unsupported:
        return nifti_cells(read(name), is_list)
    structs = _row_structs(read(f"{prefix}.path"), is_list)
    paths = [] if structs is None else structs.flatten()[0].to_pylist()
    valid = [] if structs is None else structs.is_valid().to_pylist()
    if leaf.reps[:1] != [0] or any(r != max_rep for r in leaf.reps[1:]):
        raise PageError("its pages hold more than one row")
    # An element exists from the level of the list's repeated group (a lone struct: the
    # struct's own); the bytes are present at the leaf's level.
    first = max_def - 2 if is_list else max_def - 1
    defs = [] if len(leaf.defs) == 1 and leaf.defs[0] < first else leaf.defs
    if len(defs) != len(paths) or any(d < first for d in defs):
        raise PageError(f"its pages hold {len(defs)} element(s), pyarrow reads {len(paths)}")
    if is_list and [d > first for d in defs] != valid:
        raise PageError("its bytes and path leaves disagree on which elements are null")
    values = iter(leaf.values)
    return [(next(values) if d == max_def else None, p) for d, p in zip(defs, paths, strict=True)]


def first_cell(cells: list[Cell]) -> Cell | None:
    """The first non-null cell of a column (a list's first run), or None."""
    return next((c for c in cells if c[0] is not None), None)


#: Bytes hashed between two releases of a mapped cell's pages.
_WINDOW = 1 << 26


def _address(buf: Any) -> int:
    return int(np.frombuffer(buf, dtype=np.uint8).__array_interface__["data"][0])


def cell_sha256(view: memoryview) -> str:
    """The sha256 of a cell; a cell mapped from its shard leaves memory as it is hashed.

    Each window's pages are released once hashed (``MADV_DONTNEED``: they stay in the
    page cache, a later read maps them again), so hashing a 563 MB DWI run does not
    keep 563 MB resident.
    """
    h = hashlib.sha256()
    mapped = view.obj if isinstance(view.obj, mmap.mmap) else None
    base = _address(view) - _address(mapped) if mapped is not None and len(view) else 0
    for at in range(0, len(view), _WINDOW):
        h.update(view[at : at + _WINDOW])
        if mapped is not None:
            lo = (base + at) // mmap.PAGESIZE * mmap.PAGESIZE
            hi = (base + min(at + _WINDOW, len(view))) // mmap.PAGESIZE * mmap.PAGESIZE
            if hi > lo:
                mapped.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return h.hexdigest()


def open_cell(view: memoryview) -> pa.BufferReader:
    """A seekable binary file reading a cell's bytes in place.

    ``io.BytesIO`` copies its initial value, so opening a 160 MB DWI run to read its
    first volume cost 160 MB more at the read-back's peak; pyarrow's reader does not.
    """
    return pa.BufferReader(pa.py_buffer(view))

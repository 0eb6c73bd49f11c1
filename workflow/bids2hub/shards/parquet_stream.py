"""A streaming writer for one-row parquet files whose cells are whole files.

pyarrow's writer holds the table in memory and copies each column chunk
twice more while encoding it (a row's list is never split across pages), so
a session costs ~3x its size in RAM and most of the time goes to touching
fresh pages (see tests/benchmarks/bench_shards.py). A shard is one row with
uncompressed, PLAIN-encoded values and no statistics, which is simple enough
to write directly: per leaf column one data page (levels, then each value as
``[u32 length][bytes]``), the file contents copied from disk in chunks and
hashed on the way, then the thrift footer. Memory stays at one chunk.

Only the Arrow types the shards use are supported: string, binary, float32,
float64, int64, struct and list, all nullable. Files read back with pyarrow
and ``datasets`` exactly like pyarrow-written ones (the tests compare both).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from bids2hub.errors import BidsError

MAGIC = b"PAR1"
MISSING_CONTENT = (
    "file content is missing (a broken symlink? for datalad/git-annex datasets run "
    "'datalad get' first)"
)
CHUNK = 1 << 22

# parquet.thrift enums
_BYTE_ARRAY, _FLOAT, _DOUBLE, _INT64 = 6, 4, 5, 2
_OPTIONAL, _REPEATED = 1, 2
_UTF8, _LIST = 0, 3
_PLAIN, _RLE = 0, 3
_DATA_PAGE = 0
_UNCOMPRESSED = 0
_PHYSICAL = {
    pa.string(): (_BYTE_ARRAY, _UTF8),
    pa.binary(): (_BYTE_ARRAY, None),
    pa.float32(): (_FLOAT, None),
    pa.float64(): (_DOUBLE, None),
    pa.int64(): (_INT64, None),
}


@dataclass(frozen=True)
class FileValue:
    """A binary cell whose bytes are the content of a file, streamed at write time.

    ``check`` is called with the first chunk, then with the last 4 bytes and
    the total size once the file is copied; it raises to reject the file.
    """

    path: Path
    rel: str
    size: int
    column: str
    check: Callable[[Path, str, bytes, bytes, int], object] | None = None


# ---------------------------------------------------------------- thrift compact


class _Thrift:
    """Minimal thrift compact-protocol encoder (structs, i32/i64, binary, lists)."""

    I32, I64, BINARY, LIST, STRUCT = 5, 6, 8, 9, 12

    def __init__(self) -> None:
        self.buf = bytearray()
        self._last: list[int] = [0]

    def _varint(self, n: int) -> None:
        while True:
            byte = n & 0x7F
            n >>= 7
            if n:
                self.buf.append(byte | 0x80)
            else:
                self.buf.append(byte)
                return

    @staticmethod
    def _zigzag(n: int) -> int:
        return (n << 1) ^ (n >> 63)

    def _field(self, fid: int, ftype: int) -> None:
        delta = fid - self._last[-1]
        if 0 < delta <= 15:
            self.buf.append((delta << 4) | ftype)
        else:
            self.buf.append(ftype)
            self._varint(self._zigzag(fid))
        self._last[-1] = fid

    def i32(self, fid: int, value: int) -> None:
        self._field(fid, self.I32)
        self._varint(self._zigzag(value))

    def i64(self, fid: int, value: int) -> None:
        self._field(fid, self.I64)
        self._varint(self._zigzag(value))

    def binary(self, fid: int, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        self._field(fid, self.BINARY)
        self._varint(len(data))
        self.buf += data

    def begin(self, fid: int | None = None) -> None:
        """Open a struct (as field ``fid``, or as a list element when None)."""
        if fid is not None:
            self._field(fid, self.STRUCT)
        self._last.append(0)

    def end(self) -> None:
        """Close the current struct."""
        self.buf.append(0)
        self._last.pop()

    def list_header(self, fid: int, etype: int, size: int) -> None:
        self._field(fid, self.LIST)
        if size < 15:
            self.buf.append((size << 4) | etype)
        else:
            self.buf.append(0xF0 | etype)
            self._varint(size)

    def list_i32(self, fid: int, values: list[int]) -> None:
        self.list_header(fid, self.I32, len(values))
        for v in values:
            self._varint(self._zigzag(v))

    def list_binary(self, fid: int, values: list[str]) -> None:
        self.list_header(fid, self.BINARY, len(values))
        for v in values:
            data = v.encode()
            self._varint(len(data))
            self.buf += data


# ---------------------------------------------------------------- schema + shredding


@dataclass
class _Leaf:
    path: list[str]
    physical: int
    max_def: int
    max_rep: int
    reps: list[int] = field(default_factory=list)
    defs: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)


def _group(t: _Thrift, name: str, repetition: int, children: int, converted: int | None) -> None:
    t.begin()
    t.i32(3, repetition)
    t.binary(4, name)
    t.i32(5, children)
    if converted is not None:
        t.i32(6, converted)
    t.end()


def _schema_elements(
    t: _Thrift,
    name: str,
    typ: pa.DataType,
    leaves: list[_Leaf],
    path: list[str],
    max_def: int,
    max_rep: int,
) -> int:
    """Write the SchemaElement(s) of one optional field; return how many were written."""
    max_def += 1
    path = [*path, name]
    if pa.types.is_struct(typ):
        _group(t, name, _OPTIONAL, typ.num_fields, None)
        return 1 + sum(
            _schema_elements(t, f.name, f.type, leaves, path, max_def, max_rep) for f in typ
        )
    if pa.types.is_list(typ):  # 3-level LIST: optional group / repeated "list" / "element"
        _group(t, name, _OPTIONAL, 1, _LIST)
        _group(t, "list", _REPEATED, 1, None)
        elem = _schema_elements(
            t, "element", typ.value_type, leaves, [*path, "list"], max_def + 1, max_rep + 1
        )
        return 2 + elem
    physical, converted = _PHYSICAL.get(typ, (None, None))
    if physical is None:
        raise TypeError(f"unsupported type {typ} for column {'.'.join(path)}")
    t.begin()
    t.i32(1, physical)
    t.i32(3, _OPTIONAL)
    t.binary(4, name)
    if converted is not None:
        t.i32(6, converted)
    t.end()
    leaves.append(_Leaf(path, physical, max_def, max_rep))
    return 1


def _leaf_count(typ: pa.DataType) -> int:
    if pa.types.is_struct(typ):
        return sum(_leaf_count(typ.field(i).type) for i in range(typ.num_fields))
    if pa.types.is_list(typ):
        return _leaf_count(typ.value_type)
    return 1


def _shred(
    typ: pa.DataType, value: Any, parent_def: int, rep: int, rep_depth: int, leaves: Iterator[_Leaf]
) -> None:
    """Dremel shredding of one optional field's value into its leaves' levels."""
    own_def = parent_def + 1
    if pa.types.is_struct(typ) or pa.types.is_list(typ):
        mine = [next(leaves) for _ in range(_leaf_count(typ))]
        if value is None or (pa.types.is_list(typ) and len(value) == 0):
            level = parent_def if value is None else own_def
            for leaf in mine:
                leaf.reps.append(rep)
                leaf.defs.append(level)
            return
        if pa.types.is_struct(typ):
            sub = iter(mine)
            for i in range(typ.num_fields):
                child = typ.field(i)
                _shred(child.type, value.get(child.name), own_def, rep, rep_depth, sub)
            return
        for i, item in enumerate(value):
            _shred(
                typ.value_type,
                item,
                own_def + 1,
                rep if i == 0 else rep_depth + 1,
                rep_depth + 1,
                iter(mine),
            )
        return
    leaf = next(leaves)
    leaf.reps.append(rep)
    if value is None:
        leaf.defs.append(parent_def)
    else:
        leaf.defs.append(own_def)
        leaf.values.append(value)


# ---------------------------------------------------------------- encoding


def _rle(levels: list[int], max_level: int) -> bytes:
    """RLE/bit-packed hybrid encoding using RLE runs only, with its u32 length prefix."""
    width = (max_level.bit_length() + 7) // 8
    out = bytearray()
    i = 0
    while i < len(levels):
        j = i
        while j < len(levels) and levels[j] == levels[i]:
            j += 1
        header = (j - i) << 1
        while header >= 0x80:
            out.append((header & 0x7F) | 0x80)
            header >>= 7
        out.append(header)
        out += levels[i].to_bytes(width, "little")
        i = j
    return struct.pack("<I", len(out)) + bytes(out)


def _plain_small(physical: int, value: Any) -> bytes:
    if physical == _BYTE_ARRAY:
        data = value.encode() if isinstance(value, str) else bytes(value)
        return struct.pack("<I", len(data)) + data
    fmt = {_FLOAT: "<f", _DOUBLE: "<d", _INT64: "<q"}[physical]
    return struct.pack(fmt, value)


def _value_size(physical: int, value: Any) -> int:
    if isinstance(value, FileValue):
        return 4 + value.size
    return len(_plain_small(physical, value))


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


class _Copier:
    """Copies byte ranges of a source file to the output while the caller hashes them.

    The kernel copies (``copy_file_range``: no trip through user space) in a
    worker thread, concurrently with sha256 over the same bytes in the
    caller's thread; where the kernel call is not supported it falls back to
    writing the chunk the caller read.
    """

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bids2hub-copy")
        self.kernel = hasattr(os, "copy_file_range")

    def _copy(self, src: int, dst: int, offset: int, chunk: memoryview) -> None:
        if self.kernel:
            done = 0
            try:
                while done < len(chunk):
                    n = os.copy_file_range(src, dst, len(chunk) - done, offset_src=offset + done)
                    if n == 0:
                        raise OSError("source ended early")
                    done += n
                return
            except OSError:
                if done:
                    raise
                self.kernel = False  # e.g. an old kernel or a file system without support
        _write_all(dst, chunk)

    def copy(self, out: IO[bytes], fv: FileValue) -> dict[str, Any]:
        """Copy ``fv`` into ``out``, hashing and checking it; its provenance entry."""
        h = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        out.flush()
        dst = out.fileno()
        copied = 0
        first = b""
        tail = b""
        try:
            with open(fv.path, "rb", buffering=0) as src:
                while n := src.readinto(buf):
                    if copied + n > fv.size:
                        break
                    chunk = view[:n]
                    job = self.pool.submit(self._copy, src.fileno(), dst, copied, chunk)
                    h.update(chunk)
                    job.result()
                    if not first:
                        first = bytes(chunk[: 1 << 16])
                    tail = (tail + bytes(chunk[-4:]))[-4:]
                    copied += n
                else:
                    n = 0
        except FileNotFoundError:
            raise BidsError(f"{fv.rel}: {MISSING_CONTENT}") from None
        except OSError as exc:
            raise BidsError(f"{fv.rel}: cannot read ({exc})") from None
        if copied != fv.size or n:
            raise BidsError(f"{fv.rel}: file changed size while it was being read")
        if fv.check is not None:
            fv.check(fv.path, fv.rel, first, tail, copied)
        return {"column": fv.column, "path": fv.rel, "size": copied, "sha256": h.hexdigest()}

    def close(self) -> None:
        """Stop the worker thread."""
        self.pool.shutdown()


def _page_header(num_values: int, size: int) -> bytes:
    t = _Thrift()
    t.begin()
    t.i32(1, _DATA_PAGE)
    t.i32(2, size)
    t.i32(3, size)
    t.begin(5)
    t.i32(1, num_values)
    t.i32(2, _PLAIN)
    t.i32(3, _RLE)
    t.i32(4, _RLE)
    t.end()
    t.end()
    return bytes(t.buf)


def write_row(
    out: IO[bytes],
    schema: pa.Schema,
    row: dict[str, Any],
    metadata: Callable[[list[dict[str, Any]]], dict[str, str]],
    created_by: str,
) -> list[dict[str, Any]]:
    """Write ``row`` (values as Python objects, files as :class:`FileValue`) as parquet.

    Parameters
    ----------
    out
        Binary file object positioned at 0.
    schema
        Arrow schema of the row (top-level fields nullable).
    row
        Column name -> value; Nifti cells are ``{"bytes": FileValue, "path": str}``.
    metadata
        Called with the provenance of the copied files once they are written;
        returns the key-value metadata for the footer.
    created_by
        Writer identification stored in the footer.

    Returns
    -------
    list of dict
        Provenance of every copied file (column, path, size, sha256).
    """
    schema_t = _Thrift()
    leaves: list[_Leaf] = []
    root_count = 1
    for f in schema:
        root_count += _schema_elements(schema_t, f.name, f.type, leaves, [], 0, 0)
    it = iter(leaves)
    for f in schema:
        _shred(f.type, row.get(f.name), 0, 0, 0, it)

    pages: list[tuple[_Leaf, bytes, int]] = []
    for leaf in leaves:  # sizes first: a page too large stops us before any byte is written
        levels = b""
        if leaf.max_rep:
            levels += _rle(leaf.reps, leaf.max_rep)
        levels += _rle(leaf.defs, leaf.max_def)
        body = len(levels) + sum(_value_size(leaf.physical, v) for v in leaf.values)
        if body >= 1 << 31:
            raise BidsError(
                f"column {'.'.join(leaf.path)} holds more than a parquet page can (2 GiB)"
            )
        pages.append((leaf, levels, body))

    out.write(MAGIC)
    offset = len(MAGIC)
    chunks: list[tuple[_Leaf, int, int]] = []
    sources: list[dict[str, Any]] = []
    copier = _Copier()
    try:
        for leaf, levels, body in pages:
            header = _page_header(len(leaf.defs), body)
            out.write(header)
            out.write(levels)
            for value in leaf.values:
                if isinstance(value, FileValue):
                    out.write(struct.pack("<I", value.size))
                    sources.append(copier.copy(out, value))
                else:
                    out.write(_plain_small(leaf.physical, value))
            chunks.append((leaf, offset, len(header) + body))
            offset += len(header) + body
    finally:
        copier.close()

    footer = _Thrift()
    footer.begin()
    footer.i32(1, 1)
    footer.list_header(2, _Thrift.STRUCT, root_count)
    footer.begin()
    footer.binary(4, "schema")
    footer.i32(5, len(schema))
    footer.end()
    footer.buf += schema_t.buf
    footer.i64(3, 1)
    footer.list_header(4, _Thrift.STRUCT, 1)
    footer.begin()
    footer.list_header(1, _Thrift.STRUCT, len(chunks))
    for leaf, start, size in chunks:
        footer.begin()
        footer.i64(2, start)
        footer.begin(3)
        footer.i32(1, leaf.physical)
        footer.list_i32(2, [_PLAIN, _RLE])
        footer.list_binary(3, leaf.path)
        footer.i32(4, _UNCOMPRESSED)
        footer.i64(5, len(leaf.defs))
        footer.i64(6, size)
        footer.i64(7, size)
        footer.i64(9, start)
        footer.end()
        footer.end()
    footer.i64(2, sum(size for _, _, size in chunks))
    footer.i64(3, 1)
    footer.end()
    kv = metadata(sources)
    footer.list_header(5, _Thrift.STRUCT, len(kv))
    for key, value in kv.items():
        footer.begin()
        footer.binary(1, key)
        footer.binary(2, value)
        footer.end()
    footer.binary(6, created_by)
    footer.end()
    out.write(footer.buf)
    out.write(struct.pack("<I", len(footer.buf)))
    out.write(MAGIC)
    return sources

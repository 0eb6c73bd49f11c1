"""A shard's binary values read in place from their data pages (the read-back's reader).

pyarrow copies every binary value out of its page, so reading a 563 MB DWI column
holds the mapped pages and their copy at once (twice the column). The values of an
uncompressed, PLAIN-encoded column chunk are already laid out as ``[u32 length][bytes]``
in its pages, so they can be hashed where they lie: this module maps one column chunk
and returns views of its values, following the Parquet format (thrift-compact page
headers, RLE/bit-packed levels, data pages v1 and v2). It reads what either writer of
the shards produces (``parquet_stream`` and pyarrow's, with or without content-defined
chunking); a chunk it does not support (compressed, dictionary-encoded, another page
type) is reported as such, and the caller reads it with pyarrow instead.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids2hub.errors import BidsError

# parquet.thrift: PageType, Encoding, CompressionCodec
_DATA_PAGE, _DATA_PAGE_V2 = 0, 3
_PLAIN, _RLE = 0, 3
_UNCOMPRESSED = "UNCOMPRESSED"
_I32, _STRUCT = 5, 12  # thrift compact types of the header fields read below
_MAX_DEPTH = 64  # nesting pyarrow's thrift accepts


class PageError(BidsError):
    """A column chunk's pages are malformed (the shard is broken)."""


class Unsupported(Exception):
    """A column chunk this reader does not decode (the caller falls back to pyarrow)."""


# ---------------------------------------------------------------- thrift compact


class _Struct(dict[int, Any]):
    """A decoded struct: ``{field id: value}``, with each field's thrift type in ``types``."""

    def __init__(self) -> None:
        super().__init__()
        self.types: dict[int, int] = {}


def _field(s: Any, fid: int, ftype: int) -> Any:
    """Required field ``fid`` of a decoded struct, of thrift type ``ftype`` (as pyarrow has it)."""
    if not isinstance(s, _Struct) or fid not in s:
        raise PageError(f"page header lacks field {fid}")
    if s.types[fid] != ftype:
        raise PageError(f"page header field {fid} has thrift type {s.types[fid]}, not {ftype}")
    return s[fid]


class _Reader:
    """Thrift compact-protocol decoder of one struct into ``{field id: value}``."""

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.depth = 0

    def _byte(self) -> int:
        if self.pos >= len(self.buf):
            raise PageError("page header runs past the column chunk")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self._byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 63:
                raise PageError("page header has an over-long varint")

    def _int(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def _value(self, ftype: int) -> Any:
        if ftype in (1, 2):  # booleans in a field header carry their value
            return ftype == 1
        if ftype == 3:
            return self._byte()
        if ftype in (4, 5, 6):
            return self._int()
        if ftype == 7:
            self.pos += 8
            if self.pos > len(self.buf):
                raise PageError("page header runs past the column chunk")
            return None
        if ftype == 8:
            n = self.varint()
            self.pos += n
            if self.pos > len(self.buf):
                raise PageError("page header runs past the column chunk")
            return bytes(self.buf[self.pos - n : self.pos])
        if ftype in (9, 10):
            head = self._byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            etype = head & 0x0F
            if size > len(self.buf) - self.pos:  # every element takes a byte at least
                raise PageError("page header runs past the column chunk")
            return [self._element(etype) for _ in range(size)]
        if ftype == 11:
            size = self.varint()
            if size:
                kinds = self._byte()
                if 2 * size > len(self.buf) - self.pos:
                    raise PageError("page header runs past the column chunk")
                for _ in range(size):
                    self._element(kinds >> 4)
                    self._element(kinds & 0x0F)
            return None
        if ftype == 12:
            return self.struct()
        raise PageError(f"page header has an unknown thrift type {ftype}")

    def _element(self, etype: int) -> Any:
        """A list's or map's element: a boolean there is a byte of its own."""
        if etype in (1, 2):
            return self._byte() == 1
        return self._value(etype)

    def struct(self) -> _Struct:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise PageError("page header nests too deep")
        fields = _Struct()
        last = 0
        while True:
            head = self._byte()
            if head == 0:
                self.depth -= 1
                return fields
            ftype = head & 0x0F
            last = last + (head >> 4) if head >> 4 else self._int()
            fields[last] = self._value(ftype)
            fields.types[last] = ftype


# ---------------------------------------------------------------- levels


def _levels(buf: memoryview, count: int, max_level: int) -> list[int]:
    """Decode ``count`` levels of the RLE/bit-packed hybrid encoding (no length prefix)."""
    width = max_level.bit_length()
    nbytes = (width + 7) // 8
    out: list[int] = []
    pos = 0
    while len(out) < count:
        r = _Reader(buf, pos)
        try:
            header = r.varint()
        except PageError:
            raise PageError("levels end before their count") from None
        pos = r.pos
        left = count - len(out)
        if header & 1:  # bit-packed: (header >> 1) groups of 8 values, LSB first
            if pos + (header >> 1) * width > len(buf):
                raise PageError("levels end before their count")
            n = min((header >> 1) * 8, left)  # the last group's padding is not decoded
            raw = int.from_bytes(buf[pos : pos + (n * width + 7) // 8], "little")
            pos += (header >> 1) * width
            out += [(raw >> (i * width)) & ((1 << width) - 1) for i in range(n)]
        else:
            if pos + nbytes > len(buf):
                raise PageError("levels end before their count")
            if not header >> 1 or header >> 1 > left:
                raise PageError("levels hold an empty run or one past their count")
            value = int.from_bytes(buf[pos : pos + nbytes], "little")
            pos += nbytes
            out += [value] * (header >> 1)
    # Every run was bounded by the buffer and by the count left: out holds count levels.
    if any(v > max_level for v in out):
        raise PageError("levels are out of range")
    return out


def _prefixed(buf: memoryview, pos: int) -> tuple[memoryview, int]:
    """A v1 page's ``[u32 length][levels]``: the levels and the position after them."""
    if pos + 4 > len(buf):
        raise PageError("page ends inside its levels")
    (n,) = struct.unpack_from("<I", buf, pos)
    if pos + 4 + n > len(buf):
        raise PageError("page ends inside its levels")
    return buf[pos + 4 : pos + 4 + n], pos + 4 + n


# ---------------------------------------------------------------- column chunk


@dataclass
class LeafValues:
    """One binary leaf of a column chunk: its levels and views of its present values."""

    defs: list[int]
    reps: list[int]
    values: list[memoryview]


def _page(chunk: memoryview, pos: int, max_def: int, max_rep: int, leaf: LeafValues) -> int:
    """Decode the page at ``pos`` into ``leaf``; return the position of the next one."""
    r = _Reader(chunk, pos)
    header = r.struct()
    ptype, size = _field(header, 1, _I32), _field(header, 3, _I32)
    if ptype not in (_DATA_PAGE, _DATA_PAGE_V2):
        raise Unsupported(f"page type {ptype}")
    if size < 0 or _field(header, 2, _I32) != size:
        raise PageError(f"page at byte {pos} has sizes {header.get(2)}/{size}")
    start, end = r.pos, r.pos + size
    if end > len(chunk):
        raise PageError(f"page at byte {pos} runs past the column chunk")
    page = chunk[start:end]
    if ptype == _DATA_PAGE:
        info = _field(header, 5, _STRUCT)
        count, encoding = _field(info, 1, _I32), _field(info, 2, _I32)
        rep_enc, def_enc = _field(info, 4, _I32), _field(info, 3, _I32)
        if (max_rep and rep_enc != _RLE) or (max_def and def_enc != _RLE):
            raise Unsupported("levels not RLE-encoded")
        at = 0
        reps = defs = memoryview(b"")
        if max_rep:
            reps, at = _prefixed(page, at)
        if max_def:
            defs, at = _prefixed(page, at)
    else:
        info = _field(header, 8, _STRUCT)
        count, encoding = _field(info, 1, _I32), _field(info, 4, _I32)
        if _field(info, 2, _I32) < 0 or _field(info, 3, _I32) < 0:
            raise PageError(f"page at byte {pos} has a negative null or row count")
        # (is_compressed is moot: the chunk's codec is UNCOMPRESSED, checked by the caller)
        nrep, ndef = _field(info, 6, _I32), _field(info, 5, _I32)
        if nrep < 0 or ndef < 0 or nrep + ndef > size:
            raise PageError(f"page at byte {pos}: levels longer than the page")
        reps, defs, at = page[:nrep], page[nrep : nrep + ndef], nrep + ndef
    if encoding != _PLAIN:
        raise Unsupported(f"encoding {encoding}")
    if count < 0:
        raise PageError(f"page at byte {pos} has no value count")
    page_defs = _levels(defs, count, max_def) if max_def else [0] * count
    leaf.reps += _levels(reps, count, max_rep) if max_rep else [0] * count
    leaf.defs += page_defs
    for _ in range(sum(d == max_def for d in page_defs)):
        if at + 4 > size:
            raise PageError(f"page at byte {pos} ends inside a value's length")
        (n,) = struct.unpack_from("<I", page, at)
        if at + 4 + n > size:
            raise PageError(f"page at byte {pos}: a value of {n} bytes runs past the page")
        leaf.values.append(page[at + 4 : at + 4 + n])
        at += 4 + n
    if at != size:
        raise PageError(f"page at byte {pos}: {size - at} bytes after its last value")
    return end


def read_binary_leaf(
    shard: Path, metadata: Any, leaf_path: str, levels: tuple[int, int]
) -> LeafValues:
    """Map one binary leaf's column chunk and return its levels and value views.

    Parameters
    ----------
    shard
        The parquet file.
    metadata
        Its ``pyarrow.parquet.FileMetaData`` (one row group).
    leaf_path
        The leaf's dotted path, e.g. ``dwi.list.element.bytes``.
    levels
        Its expected maximum definition and repetition levels (the schema's nesting).

    Returns
    -------
    LeafValues
        The views keep the mapping alive; it is unmapped when the last one is released.

    Raises
    ------
    Unsupported
        The chunk is compressed, dictionary-encoded, nested otherwise or has pages of
        another kind.
    PageError
        The chunk's pages are malformed.
    """
    if metadata.num_row_groups != 1:
        raise Unsupported(f"{metadata.num_row_groups} row groups")
    rg = metadata.row_group(0)
    index = next(
        (i for i in range(rg.num_columns) if rg.column(i).path_in_schema == leaf_path), None
    )
    if index is None:
        raise PageError(f"no leaf column '{leaf_path}'")
    col, desc = rg.column(index), metadata.schema.column(index)
    if desc.physical_type != "BYTE_ARRAY":
        raise Unsupported(f"physical type {desc.physical_type}")
    if (desc.max_definition_level, desc.max_repetition_level) != levels:
        raise Unsupported(f"levels {desc.max_definition_level}/{desc.max_repetition_level}")
    if col.compression != _UNCOMPRESSED or col.dictionary_page_offset is not None:
        raise Unsupported(f"compression {col.compression}, dictionary pages")
    start, length = col.data_page_offset, col.total_compressed_size
    leaf = LeafValues([], [], [])
    with open(shard, "rb") as fh:
        size = fh.seek(0, 2)
        if start < 4 or length <= 0 or start + length > size:
            raise PageError(f"column chunk [{start}, +{length}) is outside the file ({size} B)")
        base = start - start % mmap.ALLOCATIONGRANULARITY
        mapped = mmap.mmap(fh.fileno(), start + length - base, access=mmap.ACCESS_READ, offset=base)
    chunk = memoryview(mapped)[start - base :]
    pos = 0
    while pos < length:
        pos = _page(chunk, pos, *levels, leaf)
    if len(leaf.defs) != col.num_values:
        raise PageError(f"pages hold {len(leaf.defs)} levels, the footer says {col.num_values}")
    return leaf

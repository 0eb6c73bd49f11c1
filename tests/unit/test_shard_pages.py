"""Nifti cells read in place from their data pages agree with pyarrow, for every writer."""

from __future__ import annotations

import hashlib
import mmap
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bids2hub.shards.cells import nifti_cells, read_cells
from bids2hub.shards.pages import PageError, Unsupported, read_binary_leaf
from bids2hub.shards.parquet_stream import write_row

CELL = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema(
    [
        ("many", pa.list_(CELL)),
        ("one", CELL),
        ("no_struct", CELL),
        ("no_bytes", CELL),
        ("no_list", pa.list_(CELL)),
        ("empty", pa.list_(CELL)),
    ]
)
LISTS = {"many": True, "one": False, "no_struct": False, "no_bytes": False}
LISTS |= {"no_list": True, "empty": True}


def _row() -> dict[str, object]:
    # Mixed nulls in a long list: pyarrow bit-packs such definition levels.
    many: list[dict[str, object] | None] = []
    for i in range(40):
        if i % 7 == 3:
            many.append(None)
        else:
            data = None if i % 5 == 1 else bytes([i]) * (i * 97 + 1)
            many.append({"bytes": data, "path": f"run-{i}.nii.gz"})
    return {
        "many": many,
        "one": {"bytes": b"\x1f\x8b" + b"x" * 5000, "path": "one.nii.gz"},
        "no_struct": None,
        "no_bytes": {"bytes": None, "path": "no_bytes.nii.gz"},
        "no_list": None,
        "empty": [],
    }


def _write(path: Path, writer: str) -> Path:
    row = _row()
    if writer == "stream":
        with open(path, "wb") as fh:
            write_row(fh, SCHEMA, row, lambda _: {}, "test")
        return path
    table = pa.Table.from_pylist([row], schema=SCHEMA)
    options: dict[str, object] = {"compression": "none", "use_dictionary": False}
    if writer == "pyarrow-v2":
        options["data_page_version"] = "2.0"
    if writer == "pyarrow-cdc":
        options["use_content_defined_chunking"] = {"min_chunk_size": 1024, "max_chunk_size": 4096}
    if writer == "pyarrow-small-pages":
        options["data_page_size"] = 512
    if writer == "pyarrow-zstd":
        options["compression"] = "zstd"
    pq.write_table(table, path, **options)
    return path


def _digest(
    cells: list[tuple[memoryview | None, str | None]],
) -> list[tuple[str | None, str | None]]:
    return [(None if v is None else hashlib.sha256(v).hexdigest(), p) for v, p in cells]


@pytest.mark.parametrize(
    "writer", ["stream", "pyarrow-v1", "pyarrow-v2", "pyarrow-cdc", "pyarrow-small-pages"]
)
def test_cells_from_pages_equal_pyarrow_and_are_views_of_the_file(
    tmp_path: Path, writer: str
) -> None:
    shard = _write(tmp_path / "s.parquet", writer)
    pf = pq.ParquetFile(shard)
    for name, is_list in LISTS.items():
        got = read_cells(shard, pf.metadata, name, is_list)
        want = nifti_cells(pf.read(columns=[name]).column(0), is_list)
        assert _digest(got) == _digest(want), (writer, name)
        for view, _ in got:
            if view is not None:  # a view of the mapped file, not pyarrow's copy
                assert isinstance(view.obj, mmap.mmap), (writer, name)
    cells = read_cells(shard, pf.metadata, "many", True)
    assert len(cells) == 40 and cells[3] == (None, None) and cells[1] == (None, "run-1.nii.gz")
    assert bytes(cells[2][0]) == bytes([2]) * 195  # type: ignore[arg-type]


def test_compressed_chunk_is_read_by_pyarrow(tmp_path: Path) -> None:
    shard = _write(tmp_path / "z.parquet", "pyarrow-zstd")
    pf = pq.ParquetFile(shard)
    with pytest.raises(Unsupported, match="ZSTD"):
        read_binary_leaf(shard, pf.metadata, "many.list.element.bytes", (4, 1))
    got = read_cells(shard, pf.metadata, "many", True)
    assert _digest(got) == _digest(nifti_cells(pf.read(columns=["many"]).column(0), True))
    assert not any(isinstance(v.obj, mmap.mmap) for v, _ in got if v is not None)


def _value_at(data: bytes, value: bytes) -> int:
    at = data.find(value)
    assert at > 4 and struct.unpack_from("<I", data, at - 4) == (len(value),)
    return at


@pytest.mark.parametrize(
    ("length", "message"),
    [
        (10**6, "runs past the page"),
        (4999, "bytes after its last value"),
    ],
)
def test_broken_value_length_is_a_page_error(tmp_path: Path, length: int, message: str) -> None:
    shard = _write(tmp_path / "s.parquet", "stream")
    data = bytearray(shard.read_bytes())
    at = _value_at(bytes(data), _row()["one"]["bytes"])  # type: ignore[index]
    data[at - 4 : at] = struct.pack("<I", length)
    shard.write_bytes(bytes(data))
    pf = pq.ParquetFile(shard)
    with pytest.raises(PageError, match=message):
        read_cells(shard, pf.metadata, "one", False)


def test_pages_disagreeing_with_the_path_leaf_are_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list is read twice (bytes leaf here, path leaf by pyarrow); they must agree."""
    from bids2hub.shards import cells, pages

    shard = _write(tmp_path / "s.parquet", "stream")
    pf = pq.ParquetFile(shard)
    real = pages.read_binary_leaf

    def one_level_short(*args: object) -> pages.LeafValues:
        leaf = real(*args)  # type: ignore[arg-type]
        dropped = leaf.defs.pop()
        leaf.reps.pop()
        if dropped == 4:
            leaf.values.pop()
        return leaf

    monkeypatch.setattr(cells, "read_binary_leaf", one_level_short)  # the name cells calls
    with pytest.raises(PageError, match="its pages hold 39 element"):
        read_cells(shard, pf.metadata, "many", True)


def _stream_leaf(tmp_path: Path, leaf: str) -> tuple[Path, Any, Any, bytearray]:
    """A stream-written shard, its metadata, one leaf's column chunk and the file's bytes."""
    shard = _write(tmp_path / "s.parquet", "stream")
    pf = pq.ParquetFile(shard)
    rg = pf.metadata.row_group(0)
    [col] = [rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == leaf]
    return shard, pf.metadata, col, bytearray(shard.read_bytes())


def test_page_value_count_beyond_its_levels_is_an_error(tmp_path: Path) -> None:
    shard, metadata, col, data = _stream_leaf(tmp_path, "one.bytes")  # a page of one value
    # data_page_header (struct field 5), its num_values (field 1, i32 zigzag 1 -> 0x02)
    at = bytes(data).index(b"\x2c\x15\x02", col.data_page_offset) + 2
    data[at] = 0x04  # num_values 2, the page's levels hold 1
    shard.write_bytes(bytes(data))
    with pytest.raises(PageError, match="levels end before their count"):
        read_binary_leaf(shard, metadata, "one.bytes", (2, 0))


def _page_header_at(data: bytes, col: Any) -> int:
    """Where the page's data_page_header field begins (its compact field header)."""
    # Field 5, a struct (compact type 12), two ids after compressed_page_size: 0x2c;
    # the stream writer writes no field in between.
    at = data.index(b"\x2c", col.data_page_offset)
    assert at - col.data_page_offset < 16
    return at


def test_page_header_field_of_another_type_is_an_error(tmp_path: Path) -> None:
    """A flipped type nibble (field 5 read as an i32, not a struct) is a broken shard."""
    shard, metadata, col, data = _stream_leaf(tmp_path, "one.bytes")
    data[_page_header_at(bytes(data), col)] = 0x25  # field 5, type i32
    shard.write_bytes(bytes(data))
    with pytest.raises(PageError, match=r"field 5 has thrift type 5, not 12"):
        read_binary_leaf(shard, metadata, "one.bytes", (2, 0))


def test_run_longer_than_the_page_is_an_error_not_a_stall(tmp_path: Path) -> None:
    """An RLE run of 2**55 levels is refused before it is expanded."""
    shard, metadata, col, data = _stream_leaf(tmp_path, "one.bytes")
    # v1 page: [u32 length][levels], the one run of one.bytes' definition levels is
    # header varint 2 (run of 1), value 2; make the run 2**55 long.
    head = _page_header_at(bytes(data), col)
    at = bytes(data).index(b"\x02\x00\x00\x00\x02\x02", head) + 4
    run = bytes([0x80] * 8 + [0x01])  # varint 2**56: an RLE run of 2**55
    data[at : at + 1] = run
    data[at - 4 : at] = struct.pack("<I", 2 + len(run) - 1)
    shard.write_bytes(bytes(data))
    with pytest.raises(PageError, match="past their count"):
        read_binary_leaf(shard, metadata, "one.bytes", (2, 0))


def test_path_leaf_pyarrow_cannot_read_is_a_page_error(tmp_path: Path) -> None:
    """The path leaf goes through pyarrow: its errors come back as the column's PageError."""
    shard, metadata, col, data = _stream_leaf(tmp_path, "one.path")
    data[col.data_page_offset : col.data_page_offset + 4] = b"\xff" * 4
    shard.write_bytes(bytes(data))
    with pytest.raises(PageError, match=r"pyarrow cannot read 'one\.path'"):
        read_cells(shard, metadata, "one", False)

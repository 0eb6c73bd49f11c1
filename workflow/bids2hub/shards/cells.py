"""Zero-copy access to a shard's Nifti cells (shared by the read-back check and the preview).

A shard has one row; a Nifti column holds one ``{bytes, path}`` struct (``image``) or a
list of them (``images``). Readers memory-map the shard and take views of the binary
buffers, so a session's bytes are not copied to be hashed or sliced.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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


def nifti_cells(column: pa.ChunkedArray, is_list: bool) -> list[Cell]:
    """The Nifti cells of a one-row column (a list column's whole list), not copied."""
    row = next(c for c in column.chunks if len(c))
    if not row.is_valid()[0].as_py():
        return []
    structs = row.flatten() if is_list else row  # a list's values, offsets applied
    data, paths = structs.flatten()  # children with the struct's offset and nulls applied
    return list(zip(binary_views(data), paths.to_pylist(), strict=True))


def first_cell(column: pa.ChunkedArray, is_list: bool) -> Cell | None:
    """The first non-null cell of a column (a list's first run), or None."""
    return next((c for c in nifti_cells(column, is_list) if c[0] is not None), None)


def open_cell(view: memoryview) -> pa.BufferReader:
    """A seekable binary file reading a cell's bytes in place.

    ``io.BytesIO`` copies its initial value, so opening a 160 MB DWI run to read its
    first volume cost 160 MB more at the read-back's peak; pyarrow's reader does not.
    """
    return pa.BufferReader(pa.py_buffer(view))

"""One parquet shard per session, NIfTI bytes embedded verbatim.

The writer builds one row with pyarrow directly: each image column's files
are read straight into one pyarrow buffer (no intermediate copies), checked
(:func:`bids2hub.nifti.check_nifti`) and hashed, then written with options
chosen for already-compressed payloads: no parquet compression, no
dictionary encoding, no statistics. The schema metadata carries the
``huggingface`` features (so :func:`datasets.load_dataset` decodes ``Nifti``)
and ``bids2hub`` provenance (source paths, sha256, package versions). There
is no timestamp anywhere, so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bids2hub import __version__
from bids2hub.config import schema_defaults
from bids2hub.errors import BidsError
from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import natural_key
from bids2hub.index.manifest import FileRecord, Manifest, shard_id
from bids2hub.index.phenotype import convert
from bids2hub.nifti import check_nifti, check_nifti_file
from bids2hub.shards.colmap import IMAGE_KINDS, Column, ColumnMap, sidecar_name
from bids2hub.shards.parquet_stream import MISSING_CONTENT, FileValue, write_row

log = logging.getLogger(__name__)
NIFTI_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
_MAX_BINARY = (1 << 31) - 1
_ARROW_TYPES = {
    "string": pa.string(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
}


@dataclass(frozen=True)
class ShardOptions:
    """Writer options (see ``shards`` in the config schema; defaults: the schema's)."""

    content_defined_chunking: bool = field(
        default_factory=lambda: schema_defaults("shards", "content_defined_chunking")
    )


@dataclass
class SessionPlan:
    """Which files go into which column for one session."""

    sub: str
    ses: str
    images: dict[str, list[FileRecord]] = field(default_factory=dict)
    unmapped: list[FileRecord] = field(default_factory=list)


def _arrow_type(col: Column) -> pa.DataType:
    if col.kind == "images":
        return pa.list_(NIFTI_TYPE)
    if col.kind == "image":
        return NIFTI_TYPE
    if col.kind == "companion":
        return pa.list_(pa.string())
    if col.kind == "phenotype":
        return _ARROW_TYPES[col.dtype]
    return pa.string()


def _feature(col: Column) -> dict[str, Any]:
    if col.kind == "images":
        return {"feature": {"_type": "Nifti"}, "_type": "List"}
    if col.kind == "image":
        return {"_type": "Nifti"}
    if col.kind == "companion":
        return {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"}
    dtype = col.dtype if col.kind == "phenotype" else "string"
    return {"dtype": dtype, "_type": "Value"}


def _sidecar_type(col: Column) -> tuple[pa.DataType, dict[str, Any]]:
    if col.kind == "images":
        return pa.list_(pa.string()), {
            "feature": {"dtype": "string", "_type": "Value"},
            "_type": "List",
        }
    return pa.string(), {"dtype": "string", "_type": "Value"}


def shard_schema(cmap: ColumnMap) -> tuple[pa.Schema, dict[str, Any]]:
    """Arrow schema and ``datasets`` features dict of a shard (without metadata)."""
    fields: list[pa.Field] = []
    features: dict[str, Any] = {}
    for col in cmap.columns:
        fields.append(pa.field(col.name, _arrow_type(col)))
        features[col.name] = _feature(col)
    if cmap.sidecars:
        for col in cmap.image_columns():
            typ, feat = _sidecar_type(col)
            fields.append(pa.field(sidecar_name(col), typ))
            features[sidecar_name(col)] = feat
    return pa.schema(fields), features


def run_order(rec: FileRecord) -> tuple[object, ...]:
    """Order of the runs in a list cell: by ``run`` number, then by name, naturally.

    ARC numbers runs by acquisition across acq-/dir- variants, so this is
    scan order (``dir-AP_run-9`` before ``dir-PA_run-11`` before ``dir-AP_run-12``).
    """
    return (natural_key(rec.entity("run")), natural_key(rec.name))


def plan_session(manifest: Manifest, cmap: ColumnMap, sub: str, ses: str) -> SessionPlan:
    """Assign the session's NIfTI files to image columns.

    Raises
    ------
    BidsError
        A single-image column matches several files, or images match no
        column while the map says ``unmapped_images: error``.
    """
    plan = SessionPlan(sub, ses)
    records = [r for r in manifest.files_for(sub, ses) if r.is_image]
    claimed: set[str] = set()
    for col in cmap.image_columns():
        chosen = sorted((r for r in records if col.matches(r)), key=run_order)
        if col.kind == "image" and len(chosen) > 1:
            names = ", ".join(r.path for r in chosen)
            raise BidsError(f"column '{col.name}' takes one image per session but found: {names}")
        plan.images[col.name] = chosen
        claimed.update(r.path for r in chosen)
    plan.unmapped = [r for r in records if r.path not in claimed and r.scope == "raw"]
    names = ", ".join(r.path for r in plan.unmapped[:5])
    if plan.unmapped and cmap.unmapped_images == "warn":
        log.warning(
            "%s: %d image(s) match no column and are left out: %s",
            shard_id(sub, ses),
            len(plan.unmapped),
            names,
        )
    if plan.unmapped and cmap.unmapped_images == "error":
        raise BidsError(
            f"{shard_id(sub, ses)}: {len(plan.unmapped)} image(s) match no column of dataset map "
            f"'{cmap.name}' (set unmapped_images: warn to drop them): {names}"
        )
    return plan


class _Sources:
    """Provenance of every file read into the shard."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, column: str, rel: str, data: memoryview | bytes) -> None:
        self.items.append(
            {
                "column": column,
                "path": rel,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )


def _read_into(fv: FileValue, view: memoryview) -> None:
    try:
        with open(fv.path, "rb", buffering=0) as fh:
            got = 0
            while got < fv.size:
                n = fh.readinto(view[got : fv.size])
                if not n:
                    break
                got += n
            if got != fv.size or fh.read(1):
                raise BidsError(f"{fv.rel}: file changed size while it was being read")
    except FileNotFoundError:
        raise BidsError(f"{fv.rel}: {MISSING_CONTENT}") from None
    except OSError as exc:
        raise BidsError(f"{fv.rel}: cannot read ({exc})") from None


def _file_value(root: Path, rec: FileRecord, column: str) -> FileValue:
    try:
        size = os.stat(root / rec.path).st_size
    except FileNotFoundError:
        raise BidsError(f"{rec.path}: {MISSING_CONTENT}") from None
    return FileValue(root / rec.path, rec.path, size, column, check_nifti_file)


#: Bytes of page overhead besides the values (the levels of a one-row page are two RLE runs).
_PAGE_SLACK = 64


def check_cell_sizes(row: dict[str, Any], cmap: ColumnMap, shard: str) -> None:
    """Stop before anything is written when one column's images exceed 2 GiB.

    A parquet data page records its size as a signed 32-bit integer and an
    Arrow ``binary`` array (the storage of ``datasets``' Nifti feature) has
    32-bit offsets, and the writer puts one session's list of images in one
    page; a list of runs together larger than that cannot be written or read.

    Raises
    ------
    BidsError
        One line naming the shard, the column, its size and its largest file.
    """
    for col in cmap.image_columns():
        value = row.get(col.name)
        cells = value if col.kind == "images" else [value]
        files = [c["bytes"] for c in cells or [] if c is not None]
        total = sum(4 + fv.size for fv in files) + _PAGE_SLACK
        if total > _MAX_BINARY:
            big = max(files, key=lambda fv: fv.size)
            raise BidsError(
                f"{shard}: column '{col.name}' would hold {total / 2**30:.2f} GiB in "
                f"{len(files)} file(s) (largest {big.rel}, {big.size / 2**30:.2f} GiB), "
                "more than one parquet page or Arrow binary cell can (2 GiB); nothing written"
            )


def _nifti_array(cells: list[dict[str, Any]], col: str, sources: _Sources) -> pa.StructArray:
    """Read the files of ``cells`` into one struct<bytes, path> array without extra copies."""
    files: list[FileValue] = [c["bytes"] for c in cells]
    total = sum(fv.size for fv in files)
    if total > _MAX_BINARY:
        raise BidsError(f"column '{col}' holds {total} bytes, more than a binary array can (2 GiB)")
    data = pa.allocate_buffer(total, resizable=False)
    view = memoryview(data).cast("B")
    offsets = [0]
    for fv in files:
        start = offsets[-1]
        chunk = view[start : start + fv.size]
        _read_into(fv, chunk)
        check_nifti(chunk, fv.rel)
        sources.add(col, fv.rel, chunk)
        offsets.append(start + fv.size)
    offs = pa.array(offsets, type=pa.int32()).buffers()[1]
    binary = pa.Array.from_buffers(pa.binary(), len(files), [None, offs, data])
    names = pa.array([c["path"] for c in cells], pa.string())
    return pa.StructArray.from_arrays([binary, names], fields=list(NIFTI_TYPE))


def cell_companion(rec: FileRecord, extension: str) -> str:
    """The file whose text fills image ``rec``'s companion or sidecar cell: the one beside it.

    Only the session's own files are inputs of its shard job, so a cell never
    holds an inherited file (validation and the segmentation plan do follow BIDS
    inheritance, :func:`bids2hub.index.companions.find_companion`).
    """
    return f"{rec.path[: -len(rec.extension)]}{extension}"


def _companion_text(
    manifest: Manifest, rec: FileRecord, extension: str, column: str, sources: _Sources
) -> str | None:
    """Text of the companion of image ``rec`` for ``column``, or None (a null cell).

    A companion that is missing, unreadable, not UTF-8 or (for a ``.json``
    sidecar) not valid JSON does not stop the shard: its cell is null, so
    every other image of the session still reaches the Hub, and the source
    check (:mod:`bids2hub.validate.sources`) reports it as a hard failure.
    """
    rel = cell_companion(rec, extension)
    path = manifest.root / rel
    if not path.is_file() and extension == ".json":
        return None  # a sidecar is optional
    if not path.is_file():
        problem = f"{rel}: missing"
    else:
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
            if extension == ".json":
                json.loads(text)
        except OSError as exc:
            problem = f"{rel}: cannot read ({exc.strerror})"
        except UnicodeDecodeError:
            problem = f"{rel}: not UTF-8 text"
        except ValueError as exc:
            problem = f"{rel}: not valid JSON ({exc})"
        else:
            sources.add(column, rel, data)
            return text
    log.warning("%s; column '%s' holds null in its place", problem, column)
    return None


def session_row(
    manifest: Manifest,
    cmap: ColumnMap,
    sub: str,
    ses: str,
    participants: dict[str, dict[str, str]],
    sources: _Sources,
) -> dict[str, Any]:
    """One session as a row of Python values; Nifti cells hold :class:`FileValue` s.

    Small files (sidecars, gradients) are read here and added to ``sources``;
    the images are read by the writer.
    """
    plan = plan_session(manifest, cmap, sub, ses)
    root = manifest.root
    row: dict[str, Any] = {}
    pheno = participants.get(sub, {})
    for col in cmap.columns:
        if col.kind == "subject":
            row[col.name] = f"sub-{sub}"
        elif col.kind == "session":
            row[col.name] = f"ses-{ses}" if ses else None
        elif col.kind in IMAGE_KINDS:
            cells = [
                {"bytes": _file_value(root, r, col.name), "path": r.name}
                for r in plan.images[col.name]
            ]
            row[col.name] = cells if col.kind == "images" else (cells[0] if cells else None)
        elif col.kind == "companion":
            texts = [
                _companion_text(manifest, r, col.extension, col.name, sources)
                for r in plan.images[col.of]
            ]
            row[col.name] = [t.strip() if t is not None else None for t in texts]
        elif col.kind == "entity":
            recs = plan.images[col.of]
            value = recs[0].entity(col.entity) if recs else ""
            row[col.name] = col.mapping.get(value, value) or None
        elif col.kind == "phenotype":
            where = f"participants.tsv (sub-{sub}, {col.source})"
            row[col.name] = convert(pheno.get(col.source), col.dtype, where)
    if cmap.sidecars:
        for col in cmap.image_columns():
            texts = [
                _companion_text(manifest, r, ".json", sidecar_name(col), sources)
                for r in plan.images[col.name]
            ]
            row[sidecar_name(col)] = (
                texts if col.kind == "images" else (texts[0] if texts else None)
            )
    return row


def build_table(row: dict[str, Any], cmap: ColumnMap, sources: _Sources) -> pa.Table:
    """Materialise ``row`` as a one-row Arrow table, reading the images into memory."""
    schema, _features = shard_schema(cmap)
    images = {c.name: c.kind for c in cmap.image_columns()}
    arrays: list[pa.Array] = []
    for f in schema:
        value = row[f.name]
        kind = images.get(f.name)
        if kind is None or not value:
            arrays.append(pa.array([value], f.type))
        elif kind == "images":
            struct_arr = _nifti_array(value, f.name, sources)
            offsets = pa.array([0, len(value)], pa.int32())
            arrays.append(pa.ListArray.from_arrays(offsets, struct_arr, type=f.type))
        else:
            arrays.append(_nifti_array([value], f.name, sources))
    return pa.Table.from_arrays(arrays, schema=schema)


def package_versions() -> dict[str, str]:
    """Versions recorded in every shard's provenance."""
    import nibabel

    return {
        "bids2hub": __version__,
        "pyarrow": pa.__version__,
        "nibabel": nibabel.__version__,
        "python": platform.python_version(),
    }


def _remove_stale_temporaries(dest: Path) -> None:
    """Remove temporaries a killed earlier attempt (SIGKILL, OOM) left next to ``dest``."""
    for stale in Path(dest).parent.glob(f".{Path(dest).name}.tmp-*"):
        stale.unlink(missing_ok=True)


def write_shard(
    manifest: Manifest,
    cmap: ColumnMap,
    sub: str,
    ses: str,
    participants: dict[str, dict[str, str]],
    dest: Path,
    options: ShardOptions | None = None,
) -> dict[str, Any]:
    """Write the shard of one session to ``dest`` atomically.

    Parameters
    ----------
    manifest
        Index of the dataset.
    cmap
        Column map (dataset map or generic).
    sub, ses
        Labels (``ses`` empty for datasets without sessions).
    participants
        Output of :func:`bids2hub.index.phenotype.read_participants`.
    dest
        Output ``.parquet`` path; replaced only when writing succeeded.
    options
        Writer options.

    Returns
    -------
    dict
        The provenance stored in the shard metadata.
    """
    options = options or ShardOptions()
    _remove_stale_temporaries(dest)
    schema, features = shard_schema(cmap)
    small = _Sources()
    row = session_row(manifest, cmap, sub, ses, participants, small)
    check_cell_sizes(row, cmap, shard_id(sub, ses))
    provenance: dict[str, Any] = {
        "dataset": cmap.name,
        "shard": shard_id(sub, ses),
        "participant": participants.get(sub, {}),
        "versions": package_versions(),
        "writer": {
            "name": "pyarrow" if options.content_defined_chunking else "bids2hub-stream",
            "content_defined_chunking": options.content_defined_chunking,
        },
    }

    def metadata(images: list[dict[str, Any]]) -> dict[str, str]:
        provenance["sources"] = sorted(small.items + images, key=lambda s: (s["path"], s["column"]))
        return {
            "huggingface": json.dumps({"info": {"features": features}}, sort_keys=True),
            "bids2hub": json.dumps(provenance, sort_keys=True),
        }

    with atomic_path(dest) as tmp:
        if options.content_defined_chunking:
            # pyarrow's writer: the only one that does content-defined chunking
            # (costs ~3x the session in memory).
            images = _Sources()
            table = build_table(row, cmap, images)
            table = table.replace_schema_metadata(metadata(images.items))
            writer = pq.ParquetWriter(
                tmp,
                table.schema,
                compression="none",
                use_dictionary=False,
                write_statistics=False,
                write_page_index=False,
                store_schema=True,
                use_content_defined_chunking=True,
            )
            try:
                writer.write_table(table)
            finally:
                writer.close()
        else:
            with open(tmp, "wb") as fh:
                write_row(fh, schema, row, metadata, f"bids2hub version {__version__}")
    return provenance

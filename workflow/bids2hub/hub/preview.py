"""The ``preview`` configuration: one small row per session the Hub's dataset viewer can show.

The viewer cannot decode ``Nifti`` cells (it renders Image, Audio, Video, Pdf and
Json), so a visitor of a Nifti dataset sees an error instead of the data. The
preview table has, per session, the ids, the phenotype and one PNG thumbnail
(``datasets.Image``) per image column of the shard: three orthogonal slices of the
column's first run (the first volume of a 4D run), side by side (sagittal,
coronal, axial; neurological convention, superior and anterior up), grey values
windowed at the 1st-99.5th percentile of the volume's non-zero voxels (sampled at
every second voxel along each axis). Where the shard holds a lesion mask (an image
column selecting ``suffix: mask``), it is drawn in red on every thumbnail, resampled
through the affines, and the slices go through the lesion's centre instead of the
middle of the volume.

Everything is deterministic: the PNGs are encoded here (zlib level 9, filter 0, no
metadata chunks) and the parquet files written with fixed options, so the same
shard gives the same bytes.

Stages: the read-back job of each subject (``check_shards``, rules/validate.smk) feeds
the columns it reads to a :class:`SessionPreview` per session and writes its row into
``work/preview/sub-X/`` (no second read of the shard); then (rules/preview.smk)
:func:`build_preview_table` concatenates the rows into
``hub/preview/preview.parquet`` and writes ``hub/preview/thumbnail.png``, the
thumbnail the dataset card shows.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bids2hub.errors import BidsError
from bids2hub.fsutil import atomic_path
from bids2hub.layout import PREVIEW_TABLE as TABLE
from bids2hub.layout import PREVIEW_THUMBNAIL as THUMBNAIL
from bids2hub.layout import RELATIVE
from bids2hub.shards.cells import Cell, first_cell, open_cell, read_cells
from bids2hub.shards.colmap import IMAGE_KINDS, Column, ColumnMap
from bids2hub.shards.pages import PageError

#: Height of each slice in the thumbnails, pixels.
DEFAULT_HEIGHT = 128
IMAGE_TYPE_FIELDS = (("bytes", "binary"), ("path", "string"))
_GAP = 2  # black pixels between the three slices
_RED = np.array([255, 0, 0], dtype=np.float32)
_ALPHA = 0.55


# --- which columns ------------------------------------------------------------------------------


def is_mask_column(col: Column) -> bool:
    """True for an image column of masks (``suffix: mask``): drawn as an overlay."""
    return col.kind in IMAGE_KINDS and col.select.get("suffix") == "mask"


def thumbnail_columns(cmap: ColumnMap) -> list[Column]:
    """The image columns that get a thumbnail (every image column but the masks)."""
    return [c for c in cmap.image_columns() if not is_mask_column(c)]


def preview_features(cmap: ColumnMap) -> dict[str, Any]:
    """``datasets`` features of the preview table, in column order."""
    feats: dict[str, Any] = {}
    for col in cmap.columns:
        if col.kind in ("subject", "session"):
            feats[col.name] = {"dtype": "string", "_type": "Value"}
        elif col.kind == "phenotype":
            feats[col.name] = {"dtype": col.dtype, "_type": "Value"}
    feats["mask_overlay"] = {"dtype": "bool", "_type": "Value"}
    for col in thumbnail_columns(cmap):
        feats[col.name] = {"_type": "Image"}
    return feats


def preview_schema(cmap: ColumnMap) -> Any:
    """The Arrow schema of the preview table, with the ``huggingface`` metadata."""
    import pyarrow as pa

    image = pa.struct([pa.field(n, getattr(pa, t)()) for n, t in IMAGE_TYPE_FIELDS])
    fields = []
    for name, feat in preview_features(cmap).items():
        if feat["_type"] == "Image":
            fields.append(pa.field(name, image))
        else:
            fields.append(pa.field(name, pa.type_for_alias(feat["dtype"])))
    meta = {"huggingface": json.dumps({"info": {"features": preview_features(cmap)}})}
    return pa.schema(fields, metadata=meta)


def preview_config() -> dict[str, Any]:
    """The card's ``configs`` entry of the preview table."""
    return {
        "config_name": "preview",
        "data_files": [{"split": "train", "path": TABLE.as_posix()}],
    }


def preview_section(repo_id: str | None, cmap: ColumnMap) -> list[str]:
    """The card's Markdown about the preview: the thumbnail and how to see full volumes."""
    repo = repo_id or "<owner>/<name>"
    thumbs = thumbnail_columns(cmap)
    first = thumbs[0] if thumbs else None
    cell = (
        ""
        if first is None
        else (f'["{first.name}"][0]' if first.kind == "images" else f'["{first.name}"]')
    )
    lines = [
        "## Preview",
        "",
        f"![Three slices of a session, its lesion mask in red]({THUMBNAIL.as_posix()})",
        "",
        "The Hub's dataset viewer cannot decode NIfTI: pick the **`preview`** configuration "
        f"(`{TABLE.as_posix()}`) to browse the sessions there. Each row has the ids, the "
        "phenotype and one PNG per image column: a sagittal, a coronal and an axial slice "
        "of the column's first run (its first volume when 4D), through the middle of the "
        "volume, or through the lesion's centre with the lesion mask drawn in red when the "
        "session has one.",
        "",
        "To look at the full volumes:",
        "",
        "- in a notebook, with `datasets` (each cell is a nibabel image):",
        "",
        "  ```python",
        "  from datasets import load_dataset",
        f'  row = next(iter(load_dataset("{repo}", split="train", streaming=True)))',
    ]
    if first is not None:
        lines += [
            f"  img = row{cell}",
            "  from nilearn import plotting; plotting.view_img(img, bg_img=False)",
        ]
    lines += [
        "  ```",
        "",
        "- with [NiiVue](https://github.com/niivue/niivue) in a browser (e.g. "
        "[niivue.com/demos](https://niivue.com/demos/) or `ipyniivue` in a notebook): "
        "cast a column to `Nifti(decode=False)` and save a cell's `bytes` as a `.nii.gz` "
        "file to open;",
        f"- the workflow that built this dataset also writes `{RELATIVE.viewer}`, a "
        "self-contained NiiVue page of one subject's b~1000 trace with its lesion mask "
        "that opens from disk.",
        "",
    ]
    return lines


# --- PNG ----------------------------------------------------------------------------------------


def encode_png(rgb: np.ndarray) -> bytes:
    """A PNG of an (H, W, 3) uint8 array: 8-bit RGB, filter 0, zlib level 9, no metadata."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"need an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


# --- volumes and slices -------------------------------------------------------------------------


def load_volume(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The first 3D volume of a ``.nii``/``.nii.gz`` file's bytes, as RAS+ array and affine.

    Only the first volume of a 4D image is read (the stream is decompressed up
    to it, not further).
    """
    import nibabel as nib
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    try:
        stream: Any = open_cell(memoryview(data).cast("B"))
        if data[:2] == b"\x1f\x8b":
            from isal import igzip  # ISA-L's inflate: ~2x zlib's on these streams

            stream = igzip.GzipFile(fileobj=stream)
        img = nib.Nifti1Image.from_stream(stream)
        proxy = img.dataobj
        shape = img.shape
        if len(shape) > 3:
            vol = np.asanyarray(proxy[(..., *([0] * (len(shape) - 3)))])
        else:
            vol = np.asanyarray(proxy)
        vol = np.asarray(vol, dtype=np.float32).reshape(shape[:3])
        affine = img.affine
    except Exception as exc:  # nibabel raises many kinds for a broken file
        raise BidsError(f"{where}: cannot read the image for its thumbnail ({exc})") from None
    ornt = io_orientation(affine)
    canon = apply_orientation(vol, ornt)
    # A view (flips and transposes), not a copy: only three slices are sampled from it.
    return canon, affine @ inv_ornt_aff(ornt, vol.shape)


def _window(vol: np.ndarray) -> tuple[float, float]:
    """The grey window: 1st and 99.5th percentile of the non-zero voxels of every 2nd voxel.

    A regular 1-in-8 sample (every second voxel along each axis) gives the same window
    to within grey levels on MRI; the full volume's selection and partition were a third
    of a read-back job on a small session (a 23-million-voxel T1w: ~0.1 s per percentile).
    """
    sample = vol[::2, ::2, ::2]
    values = sample[np.isfinite(sample) & (sample != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1.0, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def _panel_coords(shape: Sequence[int], zooms: np.ndarray, axis: int, index: float, height: int):
    """Voxel coordinates (3, H, W) of the pixels of one slice, physical aspect kept.

    ``axis`` 0 sagittal (columns y, rows z), 1 coronal (x, z), 2 axial (x, y);
    rows run from superior/anterior (top) down.
    """
    cols_axis, rows_axis = {0: (1, 2), 1: (0, 2), 2: (0, 1)}[axis]
    extent_c = shape[cols_axis] * zooms[cols_axis]
    extent_r = shape[rows_axis] * zooms[rows_axis]
    width = max(1, round(height * extent_c / extent_r))
    c = (np.arange(width) + 0.5) * shape[cols_axis] / width - 0.5
    r = (np.arange(height)[::-1] + 0.5) * shape[rows_axis] / height - 0.5
    coords = np.empty((3, height, width), dtype=np.float64)
    coords[axis] = index
    coords[cols_axis] = c[None, :]
    coords[rows_axis] = r[:, None]
    return coords


def _sample(vol: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Nearest-neighbour values of ``vol`` at voxel ``coords``; 0 outside."""
    idx = np.rint(coords).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.array(vol.shape)[:, None, None]), axis=0)
    out = np.zeros(coords.shape[1:], dtype=vol.dtype)
    out[inside] = vol[idx[0][inside], idx[1][inside], idx[2][inside]]
    return out


def _to_voxels(affine_from: np.ndarray, affine_to: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Map voxel ``coords`` of one grid onto the voxel coordinates of another, via world space."""
    m = np.linalg.inv(affine_to) @ affine_from
    flat = coords.reshape(3, -1)
    return (m[:3, :3] @ flat + m[:3, 3:4]).reshape(coords.shape)


def lesion_centre(mask: np.ndarray, affine: np.ndarray) -> np.ndarray | None:
    """World coordinates of a mask's centre of mass, or None when it is empty."""
    inside = mask > 0
    count = np.count_nonzero(inside)
    if count == 0:
        return None
    # Per axis, the voxel count of each plane weighted by its index: no index arrays
    # (np.argwhere built three of the mask's size, for every thumbnail of the session).
    centre = np.array(
        [
            np.dot(np.count_nonzero(inside, axis=tuple(a for a in range(3) if a != axis)),
                   np.arange(inside.shape[axis])) / count
            for axis in range(3)
        ]
    )  # fmt: skip
    return affine[:3, :3] @ centre + affine[:3, 3]


def render_thumbnail(
    vol: np.ndarray,
    affine: np.ndarray,
    *,
    mask: tuple[np.ndarray, np.ndarray] | None = None,
    height: int = DEFAULT_HEIGHT,
) -> np.ndarray:
    """Three orthogonal slices of a RAS+ volume side by side, the mask (array, affine) in red.

    The slices cross at the mask's centre when it has voxels, else at the middle.
    """
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    centre = (np.array(vol.shape) - 1) / 2.0
    if mask is not None:
        world = lesion_centre(*mask)
        if world is not None:
            ijk = np.linalg.inv(affine) @ np.append(world, 1.0)
            centre = np.clip(np.rint(ijk[:3]), 0, np.array(vol.shape) - 1)
    lo, hi = _window(vol)
    panels = []
    for axis in (0, 1, 2):
        coords = _panel_coords(vol.shape, zooms, axis, float(np.rint(centre[axis])), height)
        grey = np.clip((_sample(vol, coords) - lo) / (hi - lo), 0.0, 1.0) * 255.0
        rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
        if mask is not None:
            inside = _sample(mask[0], _to_voxels(affine, mask[1], coords)) > 0
            rgb[inside] = (1 - _ALPHA) * rgb[inside] + _ALPHA * _RED
        panels.append(np.rint(rgb).astype(np.uint8))
        panels.append(np.zeros((height, _GAP, 3), np.uint8))
    return np.concatenate(panels[:-1], axis=1)


# --- one session --------------------------------------------------------------------------------


class SessionPreview:
    """Builds one session's preview row from the shard's columns as a reader passes them.

    The read-back check (:func:`bids2hub.validate.roundtrip.check_shard`) reads every
    column of the shard once, memory-mapped; it hands each one to :meth:`visit`, which
    keeps the ids and phenotype and decodes the first volume of each image column's
    first run, so the preview costs no second read of the shard. :meth:`row` renders
    the thumbnails (the mask, when there is one, is known by then).

    Parameters
    ----------
    shard
        The shard (named in warnings and in the thumbnails' paths).
    cmap
        Its column map.
    height
        Pixels per slice.
    """

    def __init__(self, shard: Path, cmap: ColumnMap, *, height: int = DEFAULT_HEIGHT) -> None:
        self.shard = Path(shard)
        self.cmap = cmap
        self.height = height
        self._thumbs = thumbnail_columns(cmap)
        self._images = {c.name: c for c in cmap.image_columns()}
        self._values = {
            c.name for c in cmap.columns if c.kind in ("subject", "session", "phenotype")
        }
        self._masks = [c.name for c in cmap.image_columns() if is_mask_column(c)]
        self._wanted = {c.name for c in self._thumbs} | set(self._masks) | self._values
        self.values: dict[str, Any] = {}
        self.volumes: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    @property
    def columns(self) -> list[str]:
        """The shard columns the preview reads, in column-map order."""
        return [c.name for c in self.cmap.columns if c.name in self._wanted]

    def visit(self, name: str, column: Any) -> None:
        """Take what the preview needs of one column.

        ``column`` is a Nifti column's cells (:func:`bids2hub.shards.cells.read_cells`)
        or any other column's one-row ``pyarrow`` column.
        """
        if name not in self._wanted:
            return
        if name in self._values:
            self.values[name] = column[0].as_py()
            return
        cell = first_cell(column)
        self.volumes[name] = None if cell is None else self._volume(cell)

    def image_kind(self, name: str) -> str | None:
        """``image`` or ``images`` for a Nifti column the preview reads, else None."""
        return self._images[name].kind if name in self._images else None

    def _volume(self, cell: Cell) -> tuple[np.ndarray, np.ndarray] | None:
        """The cell's first volume, or None (with a warning) when its bytes do not decode.

        A cell that does not decode is the round-trip check's finding (it fails the run
        at the validation gate, which the push waits for); the preview shows no
        thumbnail for it instead of failing first and hiding that report.
        """
        data, path = cell
        try:
            return load_volume(data, f"{self.shard}: {path}")  # type: ignore[arg-type]
        except BidsError as exc:
            print(f"warning: {exc}; no thumbnail", file=sys.stderr)
            return None

    def row(self) -> dict[str, Any]:
        """The preview row: ids, phenotype, ``mask_overlay`` and a PNG per image column."""
        mask = next((self.volumes[m] for m in self._masks if self.volumes.get(m)), None)
        out = {name: self.values.get(name) for name in self.columns if name in self._values}
        out["mask_overlay"] = mask is not None
        stem = self.shard.name.removesuffix(".parquet")
        for col in self._thumbs:
            volume = self.volumes.get(col.name)
            if volume is None:
                out[col.name] = None
                continue
            png = encode_png(render_thumbnail(*volume, mask=mask, height=self.height))
            out[col.name] = {"bytes": png, "path": f"{stem}_{col.name}.png"}
        return out


def session_preview(
    shard: Path, cmap: ColumnMap, *, height: int = DEFAULT_HEIGHT
) -> dict[str, Any]:
    """The preview row of one shard read on its own (ids, phenotype, a PNG per image column)."""
    import pyarrow.parquet as pq

    preview = SessionPreview(shard, cmap, height=height)
    try:
        pf = pq.ParquetFile(shard, memory_map=True)
        if pf.metadata.num_rows != 1:
            raise BidsError(f"{shard}: {pf.metadata.num_rows} rows, a shard has one")
        present = set(pf.schema_arrow.names)
        missing = [name for name in preview.columns if name not in present]
        if missing:
            raise KeyError(", ".join(missing))
        for name in preview.columns:
            image = preview.image_kind(name)
            if image is None:
                preview.visit(name, pf.read(columns=[name]).column(0))
            else:
                preview.visit(name, read_cells(shard, pf.metadata, name, image == "images"))
    except (OSError, KeyError, ValueError, PageError) as exc:
        raise BidsError(f"{shard}: cannot read the shard for its preview ({exc})") from None
    return preview.row()


def _write_table(table: Any, dest: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(dest) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="none",  # PNG bytes are compressed already
            use_dictionary=False,
            write_statistics=False,
            row_group_size=100,  # the viewer reads a row group at a time
            store_schema=True,
        )


def write_session_preview(
    shard: Path, cmap: ColumnMap, dest: Path, *, height: int = DEFAULT_HEIGHT
) -> dict[str, Any]:
    """Write the one-row preview table of a shard to ``dest`` (atomic, deterministic)."""
    row = session_preview(Path(shard), cmap, height=height)
    write_preview_row(row, cmap, Path(dest))
    return row


def write_preview_row(row: dict[str, Any], cmap: ColumnMap, dest: Path) -> None:
    """Write one preview row (:meth:`SessionPreview.row`) as a one-row table (atomic)."""
    import pyarrow as pa

    schema = preview_schema(cmap)
    _write_table(pa.Table.from_pylist([row], schema=schema), Path(dest))


def build_preview_table(parts: Sequence[Path], cmap: ColumnMap, dest: Path, thumbnail: Path) -> int:
    """Concatenate the sessions' preview rows (in the order given) into ``dest``.

    Also writes ``thumbnail``: the first thumbnail with a mask drawn on it, else the
    first thumbnail of the first session. Returns the number of rows.

    Raises
    ------
    BidsError
        No parts, or a part's columns differ from the column map's preview columns.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        raise BidsError("no session previews to put in the preview table")
    schema = preview_schema(cmap)
    tables = []
    for part in parts:
        t = pq.read_table(part)
        if t.schema.names != schema.names:
            raise BidsError(f"{part}: columns {t.schema.names} differ from {schema.names}; rerun")
        tables.append(t.cast(schema))
    table = pa.concat_tables(tables)
    _write_table(table, Path(dest))
    image_cols = [c.name for c in thumbnail_columns(cmap)]
    chosen: bytes | None = None
    for overlay_only in (True, False):
        for row in table.select(["mask_overlay", *image_cols]).to_pylist():
            if overlay_only and not row["mask_overlay"]:
                continue
            cell = next((row[c] for c in image_cols if row[c] is not None), None)
            if cell is not None:
                chosen = cell["bytes"]
                break
        if chosen is not None:
            break
    if chosen is None:
        raise BidsError("no session has an image to show in the preview")
    with atomic_path(Path(thumbnail)) as tmp:
        tmp.write_bytes(chosen)
    return table.num_rows

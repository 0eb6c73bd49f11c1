"""Shard round-trip: columns and types, aligned lists, cell hashes, datasets decode."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from pathlib import Path

import pytest
from bids2hub.index.manifest import load_index, shard_id
from bids2hub.index.phenotype import read_participants
from bids2hub.shards.colmap import load_map
from bids2hub.shards.writer import write_shard
from bids2hub.validate.roundtrip import check_shard
from bids2hub.validate.sources import check_session

from tests.conftest import REPO, write_nifti

ARC_MAP = REPO / "config" / "datasets" / "ds004884.yaml"


def _setup(root: Path, tmp_path: Path, sub: str, ses: str | None = None):
    manifest, _ = load_index(root, tmp_path / "index" / "manifest.parquet")
    cmap = load_map(ARC_MAP)
    ses = ses if ses is not None else next(s for u, s in manifest.shard_keys() if u == sub)
    people = read_participants(root / "participants.tsv")
    shard = tmp_path / f"{shard_id(sub, ses)}.parquet"
    write_shard(manifest, cmap, sub, ses, people, shard)
    return manifest, cmap, ses, shard


def test_written_shards_round_trip_and_decode(arc_tree_ro: Path, tmp_path: Path) -> None:
    manifest, cmap, ses, shard = _setup(arc_tree_ro, tmp_path, "M2215")
    session = check_session(manifest, cmap, "M2215", ses)
    result = check_shard(shard, manifest, cmap, "M2215", ses, session)
    assert result["failures"] == []
    n_images = sum(1 for p in session["files"] if p.endswith(".nii.gz"))
    assert result["checked"]["cells"] >= n_images  # images, gradients and sidecars
    # every column with a value is decoded once: ids, images, gradients, sidecars, phenotype
    assert result["checked"]["columns_decoded"] >= 10
    assert json.dumps(result, sort_keys=True) == json.dumps(
        check_shard(shard, manifest, cmap, "M2215", ses, session), sort_keys=True
    )


def test_cell_altered_after_writing_fails(arc_tree_ro: Path, tmp_path: Path) -> None:
    manifest, cmap, ses, shard = _setup(arc_tree_ro, tmp_path, "M2112")
    session = check_session(manifest, cmap, "M2112", ses)
    t1 = sorted(p for p in session["files"] if p.endswith("_T1w.nii.gz"))[-1]
    src = (arc_tree_ro / t1).read_bytes()
    data = bytearray(shard.read_bytes())
    at = data.find(src)
    assert at > 0
    data[at + len(src) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = check_shard(shard, manifest, cmap, "M2112", ses, session)
    msgs = [f["message"] for f in result["failures"] if f["check"] == "round_trip"]
    assert msgs == [
        f"hub/data/sub-M2112/{shard.stem}.parquet: column 't1w': cell sha256 differs from {t1}"
    ]


def test_shard_missing_a_run_added_later_fails(arc_tree: Path, tmp_path: Path) -> None:
    manifest, cmap, ses, shard = _setup(arc_tree, tmp_path, "M2112")
    t1 = sorted(arc_tree.glob(f"sub-M2112/ses-{ses}/anat/*_T1w.nii.gz"))[0]
    write_nifti(t1.with_name(re.sub(r"_run-\d+_", "_run-99_", t1.name)))
    manifest, _ = load_index(arc_tree, tmp_path / "index" / "manifest.parquet")
    session = check_session(manifest, cmap, "M2112", ses)
    result = check_shard(shard, manifest, cmap, "M2112", ses, session, decode=False)
    messages = [f["message"] for f in result["failures"]]
    assert any("column 't1w':" in m and "the session has" in m for m in messages), messages
    assert any("column 't1w_sidecar':" in m for m in messages), messages
    assert result["checked"]["columns_decoded"] == 0


def test_shard_with_other_columns_fails(arc_tree_ro: Path, tmp_path: Path) -> None:
    manifest, cmap, ses, shard = _setup(arc_tree_ro, tmp_path, "M2105")
    session = check_session(manifest, cmap, "M2105", ses)
    no_sidecars = dataclasses.replace(cmap, sidecars=False)
    result = check_shard(shard, manifest, no_sidecars, "M2105", ses, session, decode=False)
    [features, columns] = [f["message"] for f in result["failures"]]  # sorted by message
    assert "columns differ from the column map" in columns and "extra ['t1w_sidecar'" in columns
    assert "'huggingface' features differ" in features


def test_unreadable_shard_is_a_failure(arc_tree_ro: Path, tmp_path: Path) -> None:
    manifest, _ = load_index(arc_tree_ro, tmp_path / "manifest.parquet")
    cmap = load_map(ARC_MAP)
    sub, ses = manifest.shard_keys()[0]
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    result = check_shard(bad, manifest, cmap, sub, ses, {"files": {}}, rel="bad.parquet")
    [fail] = result["failures"]
    assert fail["file"] == "bad.parquet" and "cannot be read as parquet" in fail["message"]


def test_broken_path_leaf_fails_its_column(arc_tree_ro: Path, tmp_path: Path) -> None:
    """A page pyarrow cannot read is the column's failure, and the other columns are checked."""
    import pyarrow.parquet as pq

    manifest, cmap, ses, shard = _setup(arc_tree_ro, tmp_path, "M2112")
    session = check_session(manifest, cmap, "M2112", ses)
    rg = pq.ParquetFile(shard).metadata.row_group(0)
    [col] = [
        rg.column(i)
        for i in range(rg.num_columns)
        if rg.column(i).path_in_schema == "t1w.list.element.path"
    ]
    data = bytearray(shard.read_bytes())
    data[col.data_page_offset : col.data_page_offset + 4] = b"\xff" * 4
    shard.write_bytes(bytes(data))
    result = check_shard(shard, manifest, cmap, "M2112", ses, session)
    [fail] = [f for f in result["failures"] if f["check"] == "round_trip"]
    assert "column 't1w': pyarrow cannot read 't1w.list.element.path'" in fail["message"]
    assert result["checked"]["columns_decoded"] >= 9  # the rest still read and decoded


@pytest.mark.parametrize("decode", [True, False])
def test_decode_is_optional(arc_tree_ro: Path, tmp_path: Path, decode: bool) -> None:
    manifest, cmap, ses, shard = _setup(arc_tree_ro, tmp_path, "M2105")
    session = check_session(manifest, cmap, "M2105", ses)
    result = check_shard(shard, manifest, cmap, "M2105", ses, session, decode=decode)
    assert result["failures"] == []
    assert (result["checked"]["columns_decoded"] > 0) is decode


@pytest.mark.parametrize("binary", ["binary", "large_binary"])
def test_cells_are_viewed_in_place_with_offsets_and_nulls(binary: str) -> None:
    """Cells are views of the column's buffer: a sliced chunk, null lists and null bytes."""
    import pyarrow as pa
    from bids2hub.shards.cells import nifti_cells as _nifti_cells

    btype = getattr(pa, binary)()
    cell = pa.struct([("bytes", btype), ("path", pa.string())])
    lists = pa.array(
        [
            [{"bytes": b"skipped", "path": "x.nii.gz"}],
            [{"bytes": b"abc", "path": "a.nii.gz"}, {"bytes": None, "path": "b.nii.gz"}],
            None,
        ],
        type=pa.list_(cell),
    )
    first, second, third = (pa.chunked_array([lists.slice(i, 1)]) for i in range(3))
    got = _nifti_cells(second, is_list=True)
    assert [(bytes(v) if v is not None else None, p) for v, p in got] == [
        (b"abc", "a.nii.gz"),
        (None, "b.nii.gz"),
    ]
    assert isinstance(got[0][0], memoryview)  # not a copy
    assert [(bytes(v), p) for v, p in _nifti_cells(first, is_list=True)] == [
        (b"skipped", "x.nii.gz")
    ]
    assert _nifti_cells(third, is_list=True) == []
    single = pa.array([{"bytes": b"zz", "path": "s.nii.gz"}, None], type=cell)
    one = _nifti_cells(pa.chunked_array([single.slice(0, 1)]), is_list=False)
    assert [(bytes(v), p) for v, p in one] == [(b"zz", "s.nii.gz")]
    assert _nifti_cells(pa.chunked_array([single.slice(1, 1)]), is_list=False) == []


@pytest.mark.parametrize("name", ["run.nii.gz", "run.nii"])
def test_decode_reads_the_header_not_the_voxels(tmp_path: Path, name: str) -> None:
    """The decoded sample is the cell up to its voxels; datasets decodes it to the same image."""
    import gzip

    import nibabel as nib
    import numpy as np
    from bids2hub.validate.roundtrip import _decodable
    from datasets import Nifti
    from datasets.features.features import decode_nested_example

    img = nib.Nifti1Image(np.arange(8 * 8 * 8 * 4, dtype=np.int16).reshape(8, 8, 8, 4), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 200))
    whole = img.to_bytes()
    data = gzip.compress(whole, mtime=0) if name.endswith(".gz") else whole
    head = _decodable(memoryview(data), name)
    offset = int(struct.unpack("<f", whole[108:112])[0])  # as written (nibabel zeroes it on load)
    assert offset > 540 and head == whole[:offset]  # header and extension, no voxel
    decoded = decode_nested_example(Nifti(), {"bytes": head, "path": name})
    assert decoded.shape == (8, 8, 8, 4)
    assert np.array_equal(decoded.affine, img.affine)
    assert decoded.header.extensions[0].get_content() == b"x" * 200


def test_a_cell_that_is_not_nifti_fails_the_decode() -> None:
    import gzip

    from bids2hub.index.manifest import FileRecord
    from bids2hub.validate.roundtrip import _Checker, _decodable, _decode
    from datasets import Features, Nifti

    junk = gzip.compress(b"not a nifti header " * 50, mtime=0)
    assert _decodable(memoryview(junk), "x.nii.gz") == b"not a nifti header " * 50  # whole
    ck = _Checker("s.parquet", {"files": {}})
    rec = FileRecord("sub-1/anat/x.nii.gz", "subject", "1", "", "anat", "T1w", ".nii.gz", (), 0, 0)
    ok = _decode(ck, Features({"t1w": Nifti()}), "t1w", {"bytes": junk, "path": "x"}, rec, False)
    assert ok is False
    [fail] = ck.failures
    assert fail["check"] == "decode" and "cannot be decoded by datasets" in fail["message"]

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bids2hub.errors import BidsError
from bids2hub.index.manifest import load_index
from bids2hub.index.phenotype import participants_fields, read_participants
from bids2hub.shards.colmap import ColumnMap, generic_map, load_map
from bids2hub.shards.writer import ShardOptions, write_shard

from tests.conftest import REPO, write_nifti

ARC_COLUMNS = [
    ("subject_id", "string"),
    ("session_id", "string"),
    ("t1w", "list<nifti>"),
    ("t2w", "list<nifti>"),
    ("t2w_acquisition", "string"),
    ("flair", "list<nifti>"),
    ("bold_naming40", "list<nifti>"),
    ("bold_rest", "list<nifti>"),
    ("dwi", "list<nifti>"),
    ("dwi_bvals", "list<string>"),
    ("dwi_bvecs", "list<string>"),
    ("sbref", "list<nifti>"),
    ("lesion", "nifti"),
    ("age_at_stroke", "float"),
    ("sex", "string"),
    ("race", "string"),
    ("wab_aq", "float"),
    ("wab_days", "float"),
    ("wab_type", "string"),
]
SIDECARS = ["t1w", "t2w", "flair", "bold_naming40", "bold_rest", "dwi", "sbref", "lesion"]
NIFTI = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
TYPES = {
    "string": pa.string(),
    "float": pa.float32(),
    "nifti": NIFTI,
    "list<nifti>": pa.list_(NIFTI),
    "list<string>": pa.list_(pa.string()),
}


def _write_all(root: Path, out: Path, dataset: str | None = "ds004884") -> list[Path]:
    manifest, _ = load_index(root, out / "index/manifest.parquet")
    tsv = manifest.root / "participants.tsv"
    if dataset:
        cmap = load_map(REPO / "config/datasets" / f"{dataset}.yaml")
    else:
        cmap = generic_map(manifest, participants_fields(tsv))
    people = read_participants(tsv)
    paths = []
    for sub, ses in manifest.shard_keys():
        dest = out / f"sub-{sub}_ses-{ses}.parquet"
        write_shard(manifest, cmap, sub, ses, people, dest)
        paths.append(dest)
    return paths


def test_arc_schema_columns_order_and_types(arc_tree_ro: Path, tmp_path: Path) -> None:
    shards = _write_all(arc_tree_ro, tmp_path)
    assert len(shards) == 7
    schema = pq.read_schema(shards[0])
    expected = [(n, TYPES[t]) for n, t in ARC_COLUMNS]
    expected += [(f"{c}_sidecar", pa.string() if c == "lesion" else pa.list_(pa.string()))
                 for c in SIDECARS]  # fmt: skip
    assert [(f.name, f.type) for f in schema] == expected
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["t1w"] == {"feature": {"_type": "Nifti"}, "_type": "List"}
    assert features["lesion"] == {"_type": "Nifti"}
    assert features["age_at_stroke"] == {"dtype": "float32", "_type": "Value"}


def test_rows_hold_every_run_sorted_and_empty_lists(arc_tree_ro: Path, tmp_path: Path) -> None:
    shards = _write_all(arc_tree_ro, tmp_path)
    rows = {p.stem: pq.read_table(p).to_pylist()[0] for p in shards}
    files = {p.relative_to(arc_tree_ro).as_posix() for p in arc_tree_ro.rglob("*.nii.gz")}
    seen = set()
    for stem, row in rows.items():
        sub, ses = stem.split("_")
        assert row["subject_id"] == sub and row["session_id"] == ses
        for col in SIDECARS[:-1]:
            names = [cell["path"] for cell in row[col]]
            assert len(row[f"{col}_sidecar"]) == len(names)
            seen.update(n for n in names)
            runs = [int(n.split("_run-")[1].split("_")[0]) for n in names]
            assert runs == sorted(runs), (stem, col, names)
        assert len(row["dwi_bvals"]) == len(row["dwi"]) == len(row["dwi_bvecs"])
        if row["lesion"] is not None:
            seen.add(row["lesion"]["path"])
    assert seen == {f.rsplit("/", 1)[1] for f in files}  # every NIfTI landed in a column
    no_dwi = rows["sub-M2039_ses-" + next(iter(arc_tree_ro.glob("sub-M2039/ses-*"))).name[4:]]
    assert no_dwi["dwi"] == [] and no_dwi["dwi_bvals"] == [] and no_dwi["sbref"] == []
    two_t2 = [r for r in rows.values() if len(r["t2w"]) == 2]
    assert two_t2 and two_t2[0]["subject_id"] == "sub-M2105"
    multi_t1 = [r for r in rows.values() if len(r["t1w"]) > 1]
    assert multi_t1 and multi_t1[0]["subject_id"] == "sub-M2112"


def test_cells_are_the_source_bytes(arc_tree_ro: Path, tmp_path: Path) -> None:
    shards = _write_all(arc_tree_ro, tmp_path)
    by_name = {p.name: p for p in arc_tree_ro.rglob("*.nii.gz")}
    checked = 0
    for shard in shards:
        table = pq.read_table(shard)
        prov = json.loads(table.schema.metadata[b"bids2hub"])
        sha_of = {s["path"]: s["sha256"] for s in prov["sources"]}
        row = table.to_pylist()[0]
        cells = [c for col in SIDECARS[:-1] for c in row[col]]
        cells += [row["lesion"]] if row["lesion"] else []
        for cell in cells:
            src = by_name[cell["path"]]
            digest = hashlib.sha256(src.read_bytes()).hexdigest()
            assert hashlib.sha256(cell["bytes"]).hexdigest() == digest
            assert sha_of[src.relative_to(arc_tree_ro).as_posix()] == digest
            checked += 1
        assert set(prov["versions"]) >= {"bids2hub", "pyarrow", "nibabel"}
    assert checked == len(by_name)


def test_same_input_same_bytes(arc_tree_ro: Path, tmp_path: Path) -> None:
    first = _write_all(arc_tree_ro, tmp_path / "a")
    second = _write_all(arc_tree_ro, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_generic_map_without_dataset_config(arc_tree_ro: Path, tmp_path: Path) -> None:
    shards = _write_all(arc_tree_ro, tmp_path, dataset=None)
    names = pq.read_schema(shards[0]).names
    assert names[:2] == ["subject_id", "session_id"]
    for col in ("t1w", "t2w", "flair", "bold_naming40", "bold_rest", "dwi", "dwi_bvals",
                "sbref", "lesion_masks_mask", "sex", "wab_aq"):  # fmt: skip
        assert col in names
    assert pq.read_schema(shards[0]).field("wab_aq").type == pa.float32()


def _tiny(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    write_nifti(root / "sub-01/anat/sub-01_run-1_T1w.nii.gz")
    return root


def test_unmapped_image_fails_with_its_name(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "bids")
    write_nifti(root / "sub-01/func/sub-01_task-stroop_bold.nii.gz", (4, 4, 3, 2))
    manifest, _ = load_index(root, tmp_path / "m.parquet")
    cmap = load_map(REPO / "config/datasets/ds004884.yaml")
    dest = tmp_path / "out.parquet"
    with pytest.raises(BidsError, match=r"sub-01/func/sub-01_task-stroop_bold\.nii\.gz"):
        write_shard(manifest, cmap, "01", "", {}, dest)
    assert not dest.exists()
    assert list(tmp_path.glob(".out.parquet*")) == []


def _two_dwi_runs(root: Path) -> Path:
    """Two DWI runs; run-2 has a .bvec but no .bval (BIDS error DWI_MISSING_BVAL)."""
    dwi = root / "sub-01/dwi"
    for run in (1, 2):
        write_nifti(dwi / f"sub-01_run-{run}_dwi.nii.gz", (4, 4, 3, 2), seed=run)
        (dwi / f"sub-01_run-{run}_dwi.bvec").write_text("0 1\n0 0\n0 0\n")
    (dwi / "sub-01_run-1_dwi.bval").write_text("0 1000\n")
    return root


def test_missing_bval_keeps_the_session_with_a_null_cell(tmp_path: Path) -> None:
    """Old behaviour: the shard was not written and every image of the session was lost."""
    import datasets

    root = _two_dwi_runs(_tiny(tmp_path / "bids"))
    (root / "sub-01/anat/sub-01_run-1_T1w.json").write_text('{"RepetitionTime": 2.0')
    manifest, _ = load_index(root, tmp_path / "m.parquet")
    cmap = load_map(REPO / "config/datasets/ds004884.yaml")
    dest = tmp_path / "sub-01.parquet"
    prov = write_shard(manifest, cmap, "01", "", {}, dest)
    ds = datasets.load_dataset("parquet", data_files=str(dest), split="train")
    row = pq.read_table(dest).to_pylist()[0]
    assert [c["path"] for c in row["dwi"]] == ["sub-01_run-1_dwi.nii.gz", "sub-01_run-2_dwi.nii.gz"]
    assert row["dwi_bvals"] == ["0 1000", None]  # aligned with dwi, null where missing
    assert row["dwi_bvecs"] == ["0 1\n0 0\n0 0"] * 2
    assert row["t1w_sidecar"] == [None]  # invalid JSON: null, the image is kept
    assert len(row["t1w"]) == 1
    assert len(ds[0]["dwi"]) == 2 and ds[0]["dwi"][1].shape == (4, 4, 3, 2)
    assert ds[0]["dwi_bvals"] == ["0 1000", None] and ds[0]["t1w_sidecar"] == [None]
    read = {s["path"] for s in prov["sources"]}
    assert "sub-01/dwi/sub-01_run-2_dwi.bval" not in read
    assert "sub-01/anat/sub-01_run-1_T1w.json" not in read


def test_a_column_past_2_gib_stops_before_anything_is_written(tmp_path: Path) -> None:
    """Two sparse 1.1 GiB DWI runs: one list cell of 2.2 GiB (32-bit page size and offsets)."""
    root = _tiny(tmp_path / "bids")
    dwi = root / "sub-01/dwi"
    dwi.mkdir(parents=True)
    for run in (1, 2):
        with open(dwi / f"sub-01_run-{run}_dwi.nii.gz", "wb") as fh:
            fh.truncate(1100 << 20)  # sparse: no disk space, no bytes written by the test
        (dwi / f"sub-01_run-{run}_dwi.bval").write_text("0\n")
        (dwi / f"sub-01_run-{run}_dwi.bvec").write_text("0\n0\n0\n")
    manifest, _ = load_index(root, tmp_path / "m.parquet")
    cmap = load_map(REPO / "config/datasets/ds004884.yaml")
    dest = tmp_path / "o.parquet"
    for options in (ShardOptions(), ShardOptions(True)):
        with pytest.raises(BidsError) as err:
            write_shard(manifest, cmap, "01", "", {}, dest, options)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith("sub-01: column 'dwi' would hold 2.15 GiB in 2 file(s)")
        assert "sub-01/dwi/sub-01_run-1_dwi.nii.gz" in message and "nothing written" in message
        assert not dest.exists() and list(tmp_path.glob(".o.parquet*")) == []


def test_no_sessions_gives_null_session_id(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "bids")
    manifest, _ = load_index(root, tmp_path / "m.parquet")
    cmap = load_map(REPO / "config/datasets/ds004884.yaml")
    dest = tmp_path / "sub-01.parquet"
    write_shard(manifest, cmap, "01", "", {}, dest)
    row = pq.read_table(dest).to_pylist()[0]
    assert row["subject_id"] == "sub-01" and row["session_id"] is None
    assert row["age_at_stroke"] is None and [c["path"] for c in row["t1w"]] == [
        "sub-01_run-1_T1w.nii.gz"
    ]


def test_streaming_writer_reads_back_like_pyarrow_writer(arc_tree_ro: Path, tmp_path: Path) -> None:
    manifest, _ = load_index(arc_tree_ro, tmp_path / "index/manifest.parquet")
    cmap = load_map(REPO / "config/datasets/ds004884.yaml")
    people = read_participants(manifest.root / "participants.tsv")
    for sub, ses in manifest.shard_keys():
        ours, ref = tmp_path / f"{sub}_{ses}.stream.parquet", tmp_path / f"{sub}_{ses}.pa.parquet"
        p1 = write_shard(manifest, cmap, sub, ses, people, ours)
        p2 = write_shard(manifest, cmap, sub, ses, people, ref, ShardOptions(True))
        a, b = pq.read_table(ours), pq.read_table(ref)
        assert a.schema.remove_metadata() == b.schema.remove_metadata()
        assert a.to_pylist() == b.to_pylist()
        assert p1["sources"] == p2["sources"]
        meta = pq.ParquetFile(ours).metadata
        assert meta.num_rows == 1 and meta.num_row_groups == 1
        assert {c.compression for i in range(meta.num_columns)
                for c in [meta.row_group(0).column(i)]} == {"UNCOMPRESSED"}  # fmt: skip
        assert a.schema.metadata[b"huggingface"] == b.schema.metadata[b"huggingface"]


def test_unmapped_image_warn_leaves_it_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _tiny(tmp_path / "bids")
    write_nifti(root / "sub-01/func/sub-01_task-stroop_bold.nii.gz", (4, 4, 3, 2))
    manifest, _ = load_index(root, tmp_path / "m.parquet")
    arc = load_map(REPO / "config/datasets/ds004884.yaml")
    cmap = ColumnMap(**{**arc.__dict__, "unmapped_images": "warn"})
    write_shard(manifest, cmap, "01", "", {}, tmp_path / "o.parquet")
    assert "sub-01/func/sub-01_task-stroop_bold.nii.gz" in caplog.text
    row = pq.read_table(tmp_path / "o.parquet").to_pylist()[0]
    assert row["bold_naming40"] == [] and row["bold_rest"] == []

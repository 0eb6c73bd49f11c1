"""The masks table: rows, volumes, generator, Nifti decoding, determinism, errors."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
from bids2hub.errors import SegmentationError
from bids2hub.layout import DERIVATIVE
from bids2hub.segment.masks import build_masks_table, mask_relpath, planned_masks, read_generator

DIGEST = "sha256:" + "ab" * 32


def _mask(path: Path, voxels: int, zooms=(2.0, 2.0, 2.0)) -> bytes:
    data = np.zeros((6, 6, 6), np.uint8)
    data.flat[:voxels] = 1
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    raw = gzip.compress(img.to_bytes(), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return raw


def _description(path: Path, name: str = "DeepISLES", uri: str | None = None) -> Path:
    gen: dict = {"Name": name, "Version": "1.1"}
    if uri:
        gen["Container"] = {"Type": "apptainer", "URI": uri}
    path.write_text(json.dumps({"Name": "masks", "GeneratedBy": [gen]}))
    return path


def test_mask_paths_follow_the_interface() -> None:
    assert mask_relpath("M2001", "1253") == (
        "derivatives/deepisles/sub-M2001/ses-1253/dwi/sub-M2001_ses-1253_desc-lesion_mask.nii.gz"
    )
    assert (
        mask_relpath("01", "") == "derivatives/deepisles/sub-01/dwi/sub-01_desc-lesion_mask.nii.gz"
    )


def test_plan_and_generator(tmp_path: Path) -> None:
    with pytest.raises(SegmentationError, match=r"absent\.json: segmentation plan not found"):
        planned_masks(tmp_path / "absent.json")
    plan = tmp_path / "segmentation.json"
    plan.write_text(json.dumps({"targets": {"B": {"session": ""}, "A": {"session": "2"}}}))
    assert planned_masks(plan) == [("A", "2"), ("B", "")]
    gen = read_generator(_description(tmp_path / "d.json", uri=f"docker://x/deepisles@{DIGEST}"))
    assert (gen.backend, gen.image_digest) == ("deepisles", DIGEST)
    gen = read_generator(_description(tmp_path / "t.json", name="bids2hub-threshold"))
    assert (gen.backend, gen.image_digest) == ("threshold", None)


def test_masks_table_rows_decode_and_are_deterministic(tmp_path: Path) -> None:
    import datasets

    hub = tmp_path / "hub"
    a = _mask(hub / mask_relpath("A", "1"), 10)
    _mask(hub / mask_relpath("B", ""), 0, zooms=(1.0, 1.0, 1.0))
    desc = _description(tmp_path / "d.json", uri=f"docker://x/deepisles@{DIGEST}")
    out = hub / "masks" / "masks.parquet"
    rows = build_masks_table(hub / DERIVATIVE, [("B", ""), ("A", "1")], desc, out)
    assert [(r["subject_id"], r["session_id"], r["volume_ml"]) for r in rows] == [
        ("sub-A", "ses-1", 0.08),  # 10 voxels of 8 mm^3
        ("sub-B", None, 0.0),
    ]
    table = pq.read_table(out)
    assert table.column("lesion_mask")[0].as_py()["bytes"] == a
    assert table.column("image_digest").to_pylist() == [DIGEST, DIGEST]
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train",
                               cache_dir=str(tmp_path / "cache"))  # fmt: skip
    img = ds[0]["lesion_mask"]
    assert img.shape == (6, 6, 6) and int(img.get_fdata().sum()) == 10
    first = hashlib.sha256(out.read_bytes()).hexdigest()
    build_masks_table(hub / DERIVATIVE, [("A", "1"), ("B", "")], desc, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == first


def test_missing_or_broken_mask_names_the_file(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    desc = _description(tmp_path / "d.json")
    out = hub / "masks.parquet"
    with pytest.raises(SegmentationError, match=r"sub-A_ses-1_desc-lesion_mask\.nii\.gz.*missing"):
        build_masks_table(hub / DERIVATIVE, [("A", "1")], desc, out)
    bad = hub / mask_relpath("A", "1")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a nifti at all")
    with pytest.raises(SegmentationError, match="sub-A_ses-1_desc-lesion_mask"):
        build_masks_table(hub / DERIVATIVE, [("A", "1")], desc, out)
    assert not out.exists()
    with pytest.raises(SegmentationError, match="GeneratedBy"):
        read_generator(_write(tmp_path / "e.json", {"Name": "x"}))


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path

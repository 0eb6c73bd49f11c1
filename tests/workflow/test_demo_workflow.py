"""The demo end to end, as a new user runs it: demo data, workflow, datasets."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import run_snakemake, tool_env

pytestmark = pytest.mark.workflow


def test_demo_shards_load_and_decode_like_the_sources(tmp_path: Path) -> None:
    import datasets

    bids = tmp_path / "demo" / "bids"
    subprocess.run(
        [sys.executable, "-m", "bids2hub", "demo-data", str(bids)],
        check=True, env=tool_env(), capture_output=True,
    )  # fmt: skip
    out = tmp_path / "results"
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump({"bids_dir": str(bids), "out_dir": str(out), "dataset": "demo"}))
    run_snakemake(tmp_path, "--configfile", str(cfg))

    shards = sorted((out / "hub/data").glob("sub-*/*.parquet"))
    sessions = sorted({p.parent.name for p in bids.glob("sub-*/ses-*/anat")})
    assert len(shards) == len(list(bids.glob("sub-*/ses-*"))) and sessions
    ds = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in shards], split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )  # fmt: skip
    assert ds.num_rows == len(shards)
    sources = {p.name: p for p in bids.rglob("*.nii.gz")}
    raw_rows = [pq.read_table(p).to_pylist()[0] for p in shards]
    decoded = 0
    for raw, row in zip(raw_rows, ds, strict=True):
        for col in ("t1w", "t2w", "flair", "bold_naming40", "bold_rest", "dwi", "lesion"):
            cells = raw[col] if isinstance(raw[col], list) else [raw[col]]
            images = row[col] if isinstance(row[col], list) else [row[col]]
            for cell, img in zip(cells, images, strict=True):
                if cell is None:
                    assert img is None
                    continue
                src = sources[cell["path"]]
                assert hashlib.sha256(cell["bytes"]).hexdigest() == (
                    hashlib.sha256(src.read_bytes()).hexdigest()
                )
                ref = nib.load(src)
                assert img.shape == ref.shape
                np.testing.assert_allclose(img.affine, ref.affine)
                decoded += 1
    assert decoded == len(sources)  # every source image, masks included, came back

"""A missing .bval and an invalid JSON sidecar lose nothing but their own cells.

Old behaviour: the session's shard job failed, so every image of the session
was missing from the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import run_snakemake

pytestmark = pytest.mark.workflow


def test_missing_bval_and_invalid_sidecar_keep_the_sessions(tmp_path: Path) -> None:
    import datasets
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(tmp_path / "bids", n_subjects=3)
    bval = next(bids.glob("sub-M9001/ses-*/dwi/*_dwi.bval"))
    bval.unlink()  # BIDS validator: DWI_MISSING_BVAL
    sidecar = next(bids.glob("sub-M9002/ses-*/dwi/*_dwi.json"))
    sidecar.write_text('{"RepetitionTime": 3.2,')  # truncated JSON
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"bids_dir": str(bids), "out_dir": str(out), "dataset": "demo"}))
    proc = run_snakemake(
        tmp_path, "check_validation", "--keep-going", "--configfile", str(cfg), check=False
    )
    # Hard failures fail the run, after every shard and the report were written.
    assert proc.returncode != 0
    assert "validation failed" in proc.stdout + proc.stderr

    s1 = bval.parent.parent.name
    shard1 = out / f"hub/data/sub-M9001/sub-M9001_{s1}.parquet"
    row = pq.read_table(shard1).to_pylist()[0]
    assert len(row["dwi"]) == len(row["dwi_bvals"]) == len(row["dwi_bvecs"]) == 1
    assert row["dwi_bvals"] == [None] and row["dwi_bvecs"][0]
    s2 = sidecar.parent.parent.name
    shard2 = out / f"hub/data/sub-M9002/sub-M9002_{s2}.parquet"
    ds = datasets.load_dataset("parquet", data_files=str(shard2), split="train")
    assert ds[0]["dwi_sidecar"] == [None] and ds[0]["dwi"][0].shape[3] > 1
    assert ds[0]["dwi_bvals"][0]

    report = json.loads((out / "validation/report.json").read_text())
    hard = {(f["check"], f["file"]) for f in report["failures"]}
    assert ("companion", bval.relative_to(bids).as_posix()) in hard
    assert ("sidecar", sidecar.relative_to(bids).as_posix()) in hard
    codes = [f["message"] for f in report["failures"] if f["check"] == "bids_validator"]
    assert any("DWI_MISSING_BVAL" in m for m in codes), codes  # the validator's error stays
    assert report["round_trip"]["not_checked"] == []
    assert report["round_trip"]["null_cells"] == 2
    assert not [f for f in report["failures"] if f["check"] in ("round_trip", "decode")]
    rt = json.loads((out / f"validation/shards/sub-M9001/sub-M9001_{s1}.json").read_text())
    assert rt["null_cells"] == [{"column": "dwi_bvals", "file": bval.relative_to(bids).as_posix()}]

    plan = json.loads((out / "index/segmentation.json").read_text())
    assert "M9001" not in plan["targets"] and "M9002" not in plan["targets"]
    assert "has no .bval" in plan["excluded"]["M9001"]
    assert (
        f"its sidecar {sidecar.relative_to(bids).as_posix()} is not valid JSON"
        in (plan["excluded"]["M9002"])
    )

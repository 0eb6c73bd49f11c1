"""SOOP (OpenNeuro ds004889) as published, end to end: `dataset: ds004889` on a SOOP-shaped tree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import run_snakemake
from tests.soop import ADC_UNITS, SUBJECTS, soop_truth, write_soop_like_tree

pytestmark = pytest.mark.workflow


def test_soop_shards_masks_units_and_dice_against_the_acute_mask(tmp_path: Path) -> None:
    bids = write_soop_like_tree(tmp_path / "ds004889")
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "bids_dir": str(bids),
                "out_dir": str(out),
                "dataset": "ds004889",
                # 8 of the 1,715 subjects the map's expected counts describe.
                "validation": {"count_tolerance": 10000, "tolerate_validator_errors": True},
            }
        )
    )
    shards = [str(out / f"hub/data/sub-{s}/sub-{s}.parquet") for s in SUBJECTS]
    run_snakemake(
        tmp_path, *shards, "summarize_segmentation", "write_validation_report", "dataset_card",
        "--configfile", str(cfg),
    )  # fmt: skip

    # One shard per subject (no sessions), participants.tsv read as published.
    for shard in shards:
        table = pq.read_table(shard)
        assert table.num_rows == 1 and table.column("session_id")[0].as_py() is None
        assert len(table.column("dwi_trace")[0].as_py()) == 1
    ages = {
        s: pq.read_table(p).column("age")[0].as_py() for s, p in zip(SUBJECTS, shards, strict=True)
    }
    assert ages["38"] == "89+" and ages["1"] is None  # imaged, but no participants.tsv row
    etiology = pq.read_table(shards[SUBJECTS.index("2")]).column("etiology")[0].as_py()
    assert etiology.startswith("2: Cardioembolism (e.g., atrial fibrillation/flutter,")

    # One mask per subject with a trace and an ADC, from the dataset-level dwi.bval.
    plan = json.loads((out / "index/segmentation.json").read_text())
    assert plan["excluded"] == {} and sorted(plan["targets"]) == sorted(SUBJECTS)
    deriv = out / "hub/derivatives/deepisles"
    for sub in SUBJECTS:
        mask = nib.load(deriv / f"sub-{sub}/dwi/sub-{sub}_desc-lesion_mask.nii.gz")
        assert mask.shape == nib.load(bids / plan["targets"][sub]["dwi"]).shape
        info = json.loads((out / f"work/deepisles/sub-{sub}/prepared.json").read_text())
        assert info["adc_unit"] == ADC_UNITS[sub]

    # QC: Dice against desc-lesionAcute (desc-lesion too), the unit, empty as a status.
    with open(out / "qc/segmentation.tsv", newline="") as fh:
        rows = {r["subject_id"]: r for r in csv.DictReader(fh, delimiter="\t")}
    for sub in SUBJECTS:
        row = rows[f"sub-{sub}"]
        assert row["adc_unit"] == ADC_UNITS[sub]
        if soop_truth(sub)["acute"].any():
            assert row["expert_desc"] == "lesionAcute" and float(row["dice"]) > 0.8, row
            assert row["status"] == "lesion" and row["flag"] == ""
        else:
            assert row["status"] == "empty" and row["dice"] == "" and row["flag"] == ""
    assert rows["sub-235"]["other_dice"] == ""  # acute and chronic, no combined mask
    assert rows["sub-2"]["other_dice"].startswith("lesion=")
    report = json.loads((out / "validation/report.json").read_text())
    assert report["segmentation"]["masks"] == {"n": 8, "empty": 1, "flagged": []}
    assert not [f for f in report["failures"] if f.get("check") == "dwi_gradients"], (
        "the dataset-level dwi.bval applies to every trace and ADC"
    )
    card = (out / "hub/README.md").read_text()
    assert "8 predicted mask(s) (threshold backend), 1 empty, 0 flagged" in card
    assert "| desc-lesionAcute | 7 |" in card

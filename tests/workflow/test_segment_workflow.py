"""Lesion masks on the demo data with the CPU backend, end to end through Snakemake."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from nibabel.processing import resample_from_to

from tests.conftest import run_snakemake

pytestmark = pytest.mark.workflow

# The segmentation stage's own targets: a 5-subject demo with a broken .bval is
# not the dataset the demo map's expected counts describe (validation would fail).
SEGMENTATION = ("summarize_segmentation", "write_deepisles_description")


def _mtimes(root: Path) -> dict[str, int]:
    # out_dir/.lock is not an output: every run rewrites it with its own pid and host.
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix() != ".lock"
    }


def test_demo_masks_dice_exclusions_and_noop_rerun(tmp_path: Path) -> None:
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(tmp_path / "bids", n_subjects=5)
    # sub-M9004 has DWI and an infarct, but its .bval gets one value too many.
    bval = next(bids.glob("sub-M9004/ses-*/dwi/*_dwi.bval"))
    bval.write_text(bval.read_text().strip() + " 1000\n")
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"bids_dir": str(bids), "out_dir": str(out), "dataset": "demo"}))
    run_snakemake(tmp_path, *SEGMENTATION, "--configfile", str(cfg))

    plan = json.loads((out / "index/segmentation.json").read_text())
    assert sorted(plan["targets"]) == ["M9001", "M9002", "M9003"]
    assert plan["excluded"] == {
        "M9004": "no usable DWI: ses-"
        + bval.parent.parent.name[4:]
        + ": acq-epb0p2_dir-AP_run-1_dwi: .bval has 8 values but the image has 7 volumes",
        "M9005": "no DWI run",
    }
    deriv = out / "hub/derivatives/deepisles"
    masks = sorted(p.relative_to(deriv).as_posix() for p in deriv.rglob("*.nii.gz"))
    expected = sorted(
        f"sub-{s}/ses-{t['session']}/dwi/sub-{s}_ses-{t['session']}_desc-lesion_mask.nii.gz"
        for s, t in plan["targets"].items()
    )
    assert masks == expected
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    assert desc["GeneratedBy"][0]["Name"] == "bids2hub-threshold"

    with open(out / "qc/segmentation.tsv", newline="") as fh:
        rows = {r["subject_id"]: r for r in csv.DictReader(fh, delimiter="\t")}
    assert sorted(rows) == ["sub-M9001", "sub-M9002", "sub-M9003"]
    for sub, target in plan["targets"].items():
        row = rows[f"sub-{sub}"]
        assert row["backend"] == "threshold" and row["session_id"] == f"ses-{target['session']}"
        mask_img = nib.load(deriv / expected[sorted(plan["targets"]).index(sub)])
        dwi_img = nib.load(bids / target["dwi"])
        assert mask_img.shape == dwi_img.shape[:3]
        np.testing.assert_allclose(mask_img.affine, dwi_img.affine, atol=1e-4)
        mask = np.asanyarray(mask_img.dataobj)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        # Independent Dice: nibabel's resampler moves the true mask onto the DWI grid.
        truth = resample_from_to(nib.load(bids / target["expert_mask"]), mask_img, order=0)
        truth_data = np.asanyarray(truth.dataobj) > 0
        dice = 2 * (truth_data & (mask > 0)).sum() / (truth_data.sum() + (mask > 0).sum())
        print(f"sub-{sub}: Dice {dice:.4f} (qc.tsv {row['dice']}), {row['volume_ml']} mL")
        assert dice >= 0.7
        assert float(row["dice"]) == pytest.approx(dice, abs=1e-3)
        volume = mask.sum() * abs(np.linalg.det(mask_img.affine[:3, :3])) / 1000
        assert float(row["volume_ml"]) == pytest.approx(volume, abs=1e-3)
        assert float(row["abs_volume_diff_ml"]) == pytest.approx(
            abs(float(row["volume_ml"]) - float(row["expert_volume_ml"])), abs=2e-3
        )
        log = (out / f"logs/prepare_dwi/sub-{sub}.log").read_text()
        assert f"session '{target['session']}'" in log and "b=1000 shell (6 volumes" in log

    # Nothing changed: nothing to do, nothing rewritten.
    before = _mtimes(out)
    proc = run_snakemake(tmp_path, *SEGMENTATION, "--configfile", str(cfg))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert _mtimes(out) == before

    # Fixing the .bval makes sub-M9004 a target: only its jobs (and the QC) run.
    bval.write_text(" ".join(bval.read_text().split()[:-1]) + "\n")
    proc = run_snakemake(tmp_path, *SEGMENTATION, "--configfile", str(cfg))
    plan = json.loads((out / "index/segmentation.json").read_text())
    assert "M9004" in plan["targets"] and "M9004" not in plan["excluded"]
    after = _mtimes(out)
    changed = {k for k in after if before.get(k) != after[k] and k.startswith("hub/derivatives/")}
    assert changed == {k for k in after if k.startswith("hub/derivatives/deepisles/sub-M9004/")}
    assert len(changed) == 1
    assert before["qc/segmentation.tsv"] != after["qc/segmentation.tsv"]

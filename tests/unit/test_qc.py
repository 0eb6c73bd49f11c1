"""QC of the masks: resampling through affines, Dice, volumes, the TSV."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.segment.qc import (
    COLUMNS,
    FLAG_EMPTY_DEEPISLES,
    FLAG_MISSED,
    QcRow,
    dice,
    qc_subject,
    qc_table,
    resample_nearest,
    voxel_ml,
)


def _img(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    return nib.Nifti1Image(data, affine)


def test_dice() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0  # both empty
    a[0, :2] = True
    b[0, 1:3] = True
    assert dice(a, b) == pytest.approx(2 * 2 / (4 + 4))
    assert dice(a, np.zeros_like(a)) == 0.0


def test_resample_through_the_affines() -> None:
    # Expert: 2 mm grid; prediction: 1 mm grid over the same field, shifted origin.
    coarse = np.zeros((10, 10, 10), np.uint8)
    coarse[3:6, 2:5, 4:7] = 1
    a2 = np.diag([2.0, 2.0, 2.0, 1.0])
    a2[:3, 3] = [-10, -10, -10]
    a1 = np.diag([1.0, 1.0, 1.0, 1.0])
    a1[:3, 3] = [-10.5, -10.5, -10.5]  # voxel centres of the fine grid between coarse ones
    fine = resample_nearest(_img(coarse, a2), _img(np.zeros((20, 20, 20), np.uint8), a1))
    assert fine.shape == (20, 20, 20)
    # Same physical volume: 27 voxels of 8 mm^3 = 216 voxels of 1 mm^3.
    assert int(fine.sum()) == 27 * 8
    world = a1 @ np.array([*np.argwhere(fine)[0], 1.0])
    assert -10 + 2 * 3 - 1 <= world[0] <= -10 + 2 * 5 + 1
    # A flip of the axis (negative zoom) lands on the same world positions.
    flipped = a2.copy()
    flipped[0, 0], flipped[0, 3] = -2.0, -10 + 2 * 9
    back = resample_nearest(_img(coarse[::-1], flipped), _img(np.zeros((20, 20, 20)), a1))
    assert np.array_equal(back, fine)


def test_qc_subject_and_table(tmp_path: Path) -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    pred = np.zeros((10, 10, 10), np.uint8)
    pred[2:6, 2:6, 2:6] = 1  # 64 voxels of 8 mm^3 = 0.512 mL
    expert = np.zeros((20, 20, 20), np.uint8)
    expert[4:12, 4:12, 4:10] = 1  # 1 mm grid: 384 mm^3
    nib.save(_img(pred, affine), tmp_path / "pred.nii.gz")
    ex_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    ex_affine[:3, 3] = -0.5  # 1 mm voxel centres inside the 2 mm voxels
    nib.save(_img(expert, ex_affine), tmp_path / "expert.nii.gz")
    assert voxel_ml(_img(pred, affine)) == pytest.approx(0.008)
    row = qc_subject("M1", "2", "threshold", tmp_path / "pred.nii.gz", tmp_path / "expert.nii.gz")
    assert row.volume_ml == pytest.approx(0.512)
    assert row.expert_volume_ml == pytest.approx(0.384)
    assert row.dice == pytest.approx(2 * 48 / (64 + 48))
    alone = qc_subject("M10", "", "threshold", tmp_path / "pred.nii.gz", None)
    text = qc_table([alone, row, QcRow("M3", "1", "deepisles", 0.0)])
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    assert tuple(rows[0]) == COLUMNS
    assert [r[0] for r in rows[1:]] == ["sub-M1", "sub-M3", "sub-M10"]  # natural order
    assert rows[1] == ["sub-M1", "ses-2", "threshold", "0.512", "0.384", "0.8571", "0.128",
                       "lesion", "", "lesion", "", ""]  # fmt: skip
    assert rows[3] == ["sub-M10", "", "threshold", "0.512", "", "", "", "lesion", "", "", "", ""]
    # An empty DeepISLES mask is a status and a flag (SEALS failures look like it).
    assert rows[2][7:9] == ["empty", FLAG_EMPTY_DEEPISLES]
    nib.save(_img(np.zeros_like(pred), affine), tmp_path / "none.nii.gz")
    missed = qc_subject(
        "M4", "", "threshold", tmp_path / "none.nii.gz", tmp_path / "expert.nii.gz",
        expert_desc="lesionAcute", others={"lesion": tmp_path / "expert.nii.gz"}, adc_unit="mm2/s",
    )  # fmt: skip
    cells = missed.cells()
    assert cells[7:] == ["empty", FLAG_MISSED, "lesionAcute", "lesion=0.0000", "mm2/s"]

"""SOOP (OpenNeuro ds004889) as published: precomputed trace/ADC, inherited bval, ADC units."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.errors import BidsError
from bids2hub.index.companions import find_companion
from bids2hub.index.manifest import build_manifest, list_tree, load_index
from bids2hub.segment.plan import FactCache, plan_segmentation
from bids2hub.segment.prepare import ADC_UNITS, infer_adc_unit, prepare_dwi
from bids2hub.segment.qc import dice
from bids2hub.segment.run import brain_mask, segment_threshold
from bids2hub.shards.colmap import load_map
from bids2hub.validate.sources import check_session

from tests.conftest import REPO
from tests.soop import ADC_UNITS as FIXTURE_UNITS
from tests.soop import SUBJECTS, soop_truth, write_soop_like_tree

DATA = REPO / "tests" / "data" / "ds004889"


@pytest.fixture(scope="module")
def soop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_soop_like_tree(tmp_path_factory.mktemp("soop") / "ds004889")


def test_the_excerpt_keeps_the_published_quirks() -> None:
    raw = (DATA / "participants.tsv").read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") and not raw.endswith(b"\n")
    assert b"\t89+\t" in raw and b'"2: Cardioembolism (e.g., atrial' in raw
    listed = (DATA / "files.txt").read_text().split()
    assert not any(line.startswith(b"sub-1\t") for line in raw.split(b"\r\n"))  # imaged, no row
    assert "sub-1/dwi/sub-1_rec-TRACE_dwi.nii.gz" in listed
    masks = [p for p in listed if p.startswith("derivatives/lesion_masks/sub-235/")]
    assert sorted(p.split("_desc-")[1] for p in masks) == [
        "lesionAcute_mask.nii.gz",
        "lesionChronic_mask.nii.gz",
    ]
    assert (DATA / "dwi.bval").read_text() == "0"
    image_type = json.loads((DATA / "sub-127/dwi/sub-127_rec-ADC_dwi.json").read_text())[
        "ImageType"
    ]
    assert "ADC" not in image_type  # named rec-ADC, but the sidecar does not say so


def test_companions_follow_bids_inheritance(soop: Path, tmp_path: Path) -> None:
    manifest, _ = load_index(soop, tmp_path / "manifest.parquet")
    trace = next(r for r in manifest.files_for("2", "") if r.name == "sub-2_rec-TRACE_dwi.nii.gz")
    assert find_companion(manifest, trace, ".bval").path == "dwi.bval"
    assert find_companion(manifest, trace, ".json").path == "sub-2/dwi/sub-2_rec-TRACE_dwi.json"
    # A subject-level file with the image's entities is nearer than the root one...
    (soop / "sub-2/sub-2_rec-TRACE_dwi.bval").write_text("1000")
    (soop / "sub-2/sub-2_acq-other_dwi.bval").write_text("5")  # not a subset: never applies
    manifest = build_manifest(soop, list_tree(soop))
    trace = next(r for r in manifest.files_for("2", "") if r.name == "sub-2_rec-TRACE_dwi.nii.gz")
    adc = next(r for r in manifest.files_for("2", "") if r.name == "sub-2_rec-ADC_dwi.nii.gz")
    try:
        assert find_companion(manifest, trace, ".bval").path == "sub-2/sub-2_rec-TRACE_dwi.bval"
        assert find_companion(manifest, adc, ".bval").path == "dwi.bval"
        # ... and one beside the image wins over both.
        (soop / "sub-2/dwi/sub-2_rec-TRACE_dwi.bval").write_text("1000")
        manifest = build_manifest(soop, list_tree(soop))
        trace = next(
            r for r in manifest.files_for("2", "") if r.name == "sub-2_rec-TRACE_dwi.nii.gz"
        )
        assert find_companion(manifest, trace, ".bval").path == "sub-2/dwi/sub-2_rec-TRACE_dwi.bval"
        assert find_companion(manifest, trace, ".bvec").path == "dwi.bvec"
    finally:
        for extra in ("sub-2/sub-2_rec-TRACE_dwi.bval", "sub-2/sub-2_acq-other_dwi.bval",
                      "sub-2/dwi/sub-2_rec-TRACE_dwi.bval"):  # fmt: skip
            (soop / extra).unlink(missing_ok=True)


def test_every_soop_subject_with_trace_and_adc_is_planned(soop: Path, tmp_path: Path) -> None:
    manifest, _ = load_index(soop, tmp_path / "manifest.parquet")
    plan = plan_segmentation(manifest, list(SUBJECTS), "earliest", FactCache(manifest, None))
    assert plan["excluded"] == {}
    assert sorted(plan["targets"]) == sorted(SUBJECTS)
    for sub, t in plan["targets"].items():
        assert t["mode"] == "precomputed"
        assert t["dwi"] == f"sub-{sub}/dwi/sub-{sub}_rec-TRACE_dwi.nii.gz"
        assert t["adc"] == f"sub-{sub}/dwi/sub-{sub}_rec-ADC_dwi.nii.gz"
        assert t["recognised"] == {"dwi": "rec-TRACE", "adc": "rec-ADC"}
        assert t["flair"] == f"sub-{sub}/anat/sub-{sub}_FLAIR.nii.gz"


def test_trace_and_adc_recognised_by_the_sidecar_image_type(tmp_path: Path) -> None:
    """Without a rec entity, the sidecar's ImageType (Siemens: TRACEW, ADC) says what they are."""
    root = write_soop_like_tree(tmp_path / "bids", subjects=["2"])
    dwi = root / "sub-2/dwi"
    for old, new, image_type in (
        ("rec-TRACE", "acq-b1000", ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW", "ND"]),
        ("rec-ADC", "acq-map", ["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"]),
    ):
        for ext in (".nii.gz", ".json"):
            src = dwi / f"sub-2_{old}_dwi{ext}"
            src.rename(dwi / f"sub-2_{new}_dwi{ext}")
        sidecar = dwi / f"sub-2_{new}_dwi.json"
        meta = json.loads(sidecar.read_text())
        meta["ImageType"] = image_type
        sidecar.write_text(json.dumps(meta))
    manifest, _ = load_index(root, tmp_path / "manifest.parquet")
    plan = plan_segmentation(manifest, ["2"], "earliest", FactCache(manifest, None))
    target = plan["targets"]["2"]
    assert target["dwi"].endswith("sub-2_acq-b1000_dwi.nii.gz")
    assert target["adc"].endswith("sub-2_acq-map_dwi.nii.gz")
    assert target["recognised"] == {
        "dwi": "sidecar ImageType ORIGINAL/PRIMARY/DIFFUSION/TRACEW/ND",
        "adc": "sidecar ImageType DERIVED/PRIMARY/DIFFUSION/ADC/ND",
    }


def test_validation_finds_the_dataset_level_bval(soop: Path, tmp_path: Path) -> None:
    manifest, _ = load_index(soop, tmp_path / "manifest.parquet")
    cmap = load_map(REPO / "config" / "datasets" / "ds004889.yaml")
    result = check_session(manifest, cmap, "2", "")
    assert not [f for f in result["failures"] if f["check"] == "dwi_gradients"], result
    # Without the dataset-level files the same images have no .bval: a named failure.
    copy = tmp_path / "copy"
    shutil.copytree(soop, copy, ignore=shutil.ignore_patterns("sub-1*", "sub-3*", "sub-7*"))
    (copy / "dwi.bval").unlink()
    manifest, _ = load_index(copy, tmp_path / "m2.parquet")
    result = check_session(manifest, cmap, "2", "")
    messages = [f["message"] for f in result["failures"] if f["check"] == "dwi_gradients"]
    assert "sub-2/dwi/sub-2_rec-TRACE_dwi.nii.gz: no .bval file" in messages


@pytest.mark.parametrize("unit", sorted(ADC_UNITS))
def test_adc_unit_inferred_from_the_brain(unit: str) -> None:
    truth = soop_truth("2")
    adc_mm2 = np.where(truth["brain"], 0.8e-3, 0.0)
    adc_mm2[truth["csf"]] = 3e-3
    found, median = infer_adc_unit(adc_mm2 / ADC_UNITS[unit], truth["brain"], "x.nii.gz")
    assert found == unit and median == pytest.approx(0.8e-3 / ADC_UNITS[unit])
    with pytest.raises(BidsError, match=r"x\.nii\.gz: the brain's median ADC is 0\.02"):
        infer_adc_unit(np.where(truth["brain"], 0.02, 0.0), truth["brain"], "x.nii.gz")
    with pytest.raises(BidsError, match="has no positive value"):
        infer_adc_unit(np.zeros((3, 3, 3)), np.ones((3, 3, 3), bool), "x.nii.gz")


def test_each_adc_unit_is_staged_in_mm2_and_segmented(soop: Path, tmp_path: Path) -> None:
    """prepare_dwi applies the header scaling, infers the unit, stages mm^2/s; the threshold
    backend then finds the acute lesion whatever unit the scanner wrote."""
    manifest, _ = load_index(soop, tmp_path / "manifest.parquet")
    plan = plan_segmentation(manifest, list(SUBJECTS), "earliest", FactCache(manifest, None))
    scores: dict[str, list[float]] = {}
    for sub in SUBJECTS:
        work = tmp_path / "work" / sub
        info = prepare_dwi(soop, plan["targets"][sub], work / "dwi.nii.gz", work / "adc.nii.gz")
        assert info["adc_unit"] == FIXTURE_UNITS[sub], sub
        assert info["adc_staged_unit"] == "mm2/s" and "z-scores" in info["adc_note"]
        staged = nib.load(work / "adc.nii.gz").get_fdata()
        truth = soop_truth(sub)
        tissue = truth["brain"] & ~truth["csf"] & ~truth["acute"] & ~truth["chronic"]
        assert np.median(staged[tissue]) == pytest.approx(0.8e-3, rel=0.05), sub
        segment_threshold(work / "dwi.nii.gz", work / "adc.nii.gz", None, work / "mask.nii.gz")
        mask = nib.load(work / "mask.nii.gz").get_fdata() > 0
        if truth["acute"].any():
            scores.setdefault(info["adc_unit"], []).append(dice(mask, truth["acute"]))
        else:
            assert not mask.any(), f"sub-{sub} has no acute lesion: the mask is empty"
    assert sorted(scores) == sorted(ADC_UNITS)
    for unit, values in scores.items():
        assert min(values) >= 0.8, (unit, values)
    scaled = nib.load(soop / "sub-1/dwi/sub-1_rec-ADC_dwi.nii.gz")
    assert scaled.get_data_dtype() == np.int16 and scaled.dataobj.slope == pytest.approx(1.05995e-6)
    info = json.loads(
        json.dumps(
            prepare_dwi(
                soop,
                plan["targets"]["1"],
                tmp_path / "again" / "dwi.nii.gz",
                tmp_path / "again" / "adc.nii.gz",
            )
        )
    )
    assert info["adc_header_scaling"] == [pytest.approx(1.05995e-6), 0.0]


def test_brain_mask_keeps_the_edge_slices() -> None:
    """Brain in the first and last slice (SOOP's 6 mm slices often cut the head): the
    closing and the erosion must not drop them."""
    truth = soop_truth("1002")
    brain = truth["brain"].copy()
    brain[..., 0] = brain[..., 1]
    brain[..., -1] = brain[..., -2]
    mask = brain_mask(np.where(brain, 180.0, 1.0))
    per_slice = mask.sum((0, 1))
    assert per_slice[0] > 0.5 * brain[..., 0].sum() and per_slice[-1] > 0.5 * brain[..., -1].sum()
    assert dice(mask, brain) > 0.85

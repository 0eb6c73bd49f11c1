"""Per-session source checks: integrity, DWI gradients, mask grids, identifying keys."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.errors import NiftiError
from bids2hub.index.manifest import load_index
from bids2hub.shards.colmap import load_map
from bids2hub.validate.sources import (
    check_session,
    dumps,
    identifying_keys,
    is_intact,
    scan_nifti,
    tsv_identifying_columns,
)

from tests.conftest import REPO, write_nifti

ARC_MAP = REPO / "config" / "datasets" / "ds004884.yaml"
SOOP_MAP = REPO / "config" / "datasets" / "ds004889.yaml"


def _session(root: Path, tmp_path: Path, sub: str, ses: str, cmap_path: Path = ARC_MAP) -> dict:
    manifest, _ = load_index(root, tmp_path / "out" / "index" / "manifest.parquet")
    return check_session(manifest, load_map(cmap_path), sub, ses)


def _only(result: dict, check: str) -> list[dict]:
    return [f for f in result["failures"] + result["warnings"] if f["check"] == check]


def test_scan_nifti_hashes_and_reads_header(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "a.nii.gz", shape=(4, 5, 3, 2))
    info = scan_nifti(path, "a.nii.gz")
    assert info["shape"] == [4, 5, 3, 2] and info["size"] == path.stat().st_size
    import hashlib

    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["t.nii.gz", "t.nii"])
def test_scan_nifti_rejects_truncated_files(tmp_path: Path, name: str) -> None:
    path = write_nifti(tmp_path / name, shape=(8, 8, 8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(NiftiError, match=rf"^{name}: .*(truncated|corrupt)"):
        scan_nifti(path, name)


def test_scan_nifti_checks_the_crc_of_the_whole_stream(tmp_path: Path) -> None:
    path = tmp_path / "c.nii.gz"
    img = nib.Nifti1Image(np.arange(4096, dtype=np.int16).reshape(16, 16, 16), np.eye(4))
    raw = bytearray(gzip.compress(img.to_bytes(), compresslevel=0, mtime=0))
    raw[len(raw) // 2] ^= 0x01  # stored block: length still right, CRC wrong
    path.write_bytes(bytes(raw))
    with pytest.raises(NiftiError, match=r"c\.nii\.gz: truncated or corrupt gzip stream"):
        scan_nifti(path, "c.nii.gz")


def test_arc_sessions_pass_and_results_are_deterministic(arc_tree_ro: Path, tmp_path: Path) -> None:
    manifest, _ = load_index(arc_tree_ro, tmp_path / "manifest.parquet")
    cmap = load_map(ARC_MAP)
    checked = {"dwi": 0, "masks": 0, "nifti": 0}
    for sub, ses in manifest.shard_keys():
        result = check_session(manifest, cmap, sub, ses)
        assert result["failures"] == [] and result["warnings"] == []
        assert is_intact(result)
        assert dumps(result) == dumps(check_session(manifest, cmap, sub, ses))
        for key in checked:
            checked[key] += result["checked"][key]
    assert checked["dwi"] > 0 and checked["masks"] > 0 and checked["nifti"] > 20


def test_truncated_nifti_is_a_blocking_integrity_failure(arc_tree: Path, tmp_path: Path) -> None:
    t1 = sorted(arc_tree.glob("sub-M2112/ses-*/anat/*_T1w.nii.gz"))[0]
    t1.write_bytes(t1.read_bytes()[:-40])
    ses = t1.parent.parent.name[4:]
    result = _session(arc_tree, tmp_path, "M2112", ses)
    rel = t1.relative_to(arc_tree).as_posix()
    [fail] = result["failures"]
    assert fail["check"] == "integrity" and fail["file"] == rel and rel in fail["message"]
    assert not is_intact(result)


def test_dwi_with_5_volumes_and_6_bvals_fails(arc_tree: Path, tmp_path: Path) -> None:
    dwi = sorted(arc_tree.glob("sub-M2215/ses-*/dwi/*_dwi.nii.gz"))[0]
    img = nib.load(dwi)
    data = np.asanyarray(img.dataobj)[..., :5]
    nib.save(nib.Nifti1Image(data, img.affine, img.header), dwi)
    stem = dwi.name[: -len(".nii.gz")]
    (dwi.parent / f"{stem}.bval").write_text(" ".join(["0"] + ["1000"] * 5) + "\n")
    vec = "\n".join(" ".join(["0.5"] * 6) for _ in range(3)) + "\n"
    (dwi.parent / f"{stem}.bvec").write_text(vec)
    ses = dwi.parent.parent.name[4:]
    result = _session(arc_tree, tmp_path, "M2215", ses)
    fails = _only(result, "dwi_gradients")
    rel = dwi.relative_to(arc_tree).as_posix()
    assert [f["file"] for f in fails] == [rel, rel]
    assert "5 volume(s) but 6 b-value(s)" in fails[0]["message"] + fails[1]["message"]
    assert "expected 3 rows of 5" in fails[0]["message"] + fails[1]["message"]
    assert is_intact(result)  # the shard can still be written and read back


def _mask_and_reference(root: Path) -> tuple[Path, Path]:
    mask = sorted(root.glob("derivatives/lesion_masks/sub-M2105/ses-*/anat/*_mask.nii.gz"))[0]
    ref = root / mask.relative_to(root / "derivatives" / "lesion_masks").as_posix().replace(
        "_desc-lesion_mask", ""
    )
    assert ref.is_file()
    return mask, ref


def test_mask_whose_shape_differs_from_its_t2w_fails(arc_tree: Path, tmp_path: Path) -> None:
    mask, ref = _mask_and_reference(arc_tree)
    img = nib.load(ref)
    bad = np.zeros(tuple(d + 1 for d in img.shape[:3]), np.uint8)
    nib.save(nib.Nifti1Image(bad, img.affine), mask)
    result = _session(arc_tree, tmp_path, "M2105", mask.parent.parent.name[4:])
    [fail] = _only(result, "mask_grid")
    assert fail["file"] == mask.relative_to(arc_tree).as_posix()
    assert fail["reference"] == ref.relative_to(arc_tree).as_posix()
    assert "shape" in fail["message"] and fail in result["failures"]


def test_mask_whose_affine_differs_from_its_t2w_fails(arc_tree: Path, tmp_path: Path) -> None:
    mask, ref = _mask_and_reference(arc_tree)
    img = nib.load(ref)
    shifted = img.affine.copy()
    shifted[0, 3] += 2.0
    nib.save(nib.Nifti1Image(np.zeros(img.shape[:3], np.uint8), shifted), mask)
    result = _session(arc_tree, tmp_path, "M2105", mask.parent.parent.name[4:])
    [fail] = _only(result, "mask_grid")
    assert "affine differs" in fail["message"] and "2 mm" in fail["message"]


def test_sidecar_with_patient_name_is_flagged_without_its_value(
    arc_tree: Path, tmp_path: Path
) -> None:
    sidecar = sorted(arc_tree.glob("sub-M2112/ses-*/anat/*_T1w.json"))[0]
    meta = json.loads(sidecar.read_text())
    meta |= {"PatientName": "DOE^JANE", "PatientPosition": "HFS", "extra": {"patient_id": "X7"}}
    sidecar.write_text(json.dumps(meta))
    result = _session(arc_tree, tmp_path, "M2112", sidecar.parent.parent.name[4:])
    [warn] = _only(result, "identifying")
    assert warn["file"] == sidecar.relative_to(arc_tree).as_posix()
    assert warn["keys"] == ["PatientID", "PatientName"]
    assert result["failures"] == []
    assert "DOE" not in dumps(result) and "X7" not in dumps(result)


def test_identifying_keys_in_json_and_tsv() -> None:
    assert identifying_keys({"AcquisitionDateTime": "x", "AcquisitionTime": "10:00"}) == [
        "AcquisitionDateTime"
    ]
    assert identifying_keys([{"a": [{"InstitutionAddress": 1}]}]) == ["InstitutionAddress"]
    assert tsv_identifying_columns("filename\tacq_time\tpatient_birth_date\n1\t2\t3\n") == [
        "PatientBirthDate"
    ]


def test_invalid_json_sidecar_is_a_hard_failure_that_keeps_the_shard(
    arc_tree: Path, tmp_path: Path
) -> None:
    sidecar = sorted(arc_tree.glob("sub-M2039/ses-*/anat/*.json"))[0]
    sidecar.write_text("{not json")
    result = _session(arc_tree, tmp_path, "M2039", sidecar.parent.parent.name[4:])
    [fail] = result["failures"]
    assert fail["check"] == "sidecar" and "not valid JSON" in fail["message"]
    assert is_intact(result)  # the shard is written, with null in that sidecar's cell


def test_missing_bval_is_a_hard_failure_that_keeps_the_shard(
    arc_tree: Path, tmp_path: Path
) -> None:
    bval = sorted(arc_tree.glob("sub-M2215/ses-*/dwi/*_dwi.bval"))[0]
    bval.unlink()
    result = _session(arc_tree, tmp_path, "M2215", bval.parent.parent.name[4:])
    rel = bval.relative_to(arc_tree).as_posix()
    [fail] = [f for f in result["failures"] if f["check"] == "companion"]
    assert fail["file"] == rel and fail["column"] == "dwi_bvals"
    assert fail["message"].startswith(f"{rel}: missing (column 'dwi_bvals' holds null for ")
    assert is_intact(result)


def _soop_tree(root: Path) -> Path:
    """A ds004889-shaped tree: no sessions, inherited dwi.bval, masks in space-TRACE."""
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "soop", "BIDSVersion": "1.6.0"}')
    (root / "participants.tsv").write_text("participant_id\tsex\tage\nsub-1\tM\t89+\n")
    (root / "dwi.bval").write_text("0\n")
    (root / "dwi.bvec").write_text("0\n0\n0\n")
    for i, sub in enumerate(("1", "2")):
        for rel in ("anat/sub-{s}_T1w", "anat/sub-{s}_FLAIR"):
            write_nifti(root / f"sub-{sub}" / f"{rel.format(s=sub)}.nii.gz", (6, 6, 4), seed=i)
        for rec in ("TRACE", "ADC"):
            write_nifti(root / f"sub-{sub}/dwi/sub-{sub}_rec-{rec}_dwi.nii.gz", (5, 5, 3), seed=i)
        deriv = root / "derivatives/lesion_masks" / f"sub-{sub}" / "dwi"
        for desc in ("lesion", "lesionAcute"):
            write_nifti(deriv / f"sub-{sub}_space-TRACE_desc-{desc}_mask.nii.gz", (5, 5, 3))
    return root


def test_soop_layout_inherits_gradients_and_finds_mask_references(tmp_path: Path) -> None:
    root = _soop_tree(tmp_path / "soop")
    result = _session(root, tmp_path, "1", "", SOOP_MAP)
    assert result["failures"] == [] and result["warnings"] == []
    assert result["checked"]["dwi"] == 2 and result["checked"]["masks"] == 2
    assert result["shard"] == "sub-1" and result["session"] is None
    # a mask on a grid other than the trace's fails against the rec-TRACE image
    write_nifti(
        root / "derivatives/lesion_masks/sub-2/dwi/sub-2_space-TRACE_desc-lesion_mask.nii.gz",
        (6, 6, 4),
    )
    [fail] = _session(root, tmp_path / "b", "2", "", SOOP_MAP)["failures"]
    assert (
        fail["check"] == "mask_grid" and fail["reference"] == "sub-2/dwi/sub-2_rec-TRACE_dwi.nii.gz"
    )

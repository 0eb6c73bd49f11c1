"""Tests of the synthetic ARC-like demo dataset (bids2hub.demo.data)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.demo.data import write_demo_dataset
from scipy import ndimage

N_SUBJECTS = 4
MAX_TOTAL_BYTES = 6_000_000
MAX_SECONDS = 60.0  # the target is ~10 s on 2 cores; this only catches gross regressions
ADC_THRESHOLD = 620e-6  # mm^2/s, what the CPU segmenter thresholds
B0_MAX = 50.0
ARC_ANAT = re.compile(
    r"sub-(M9\d{3})_ses-(\d+)_acq-(tfl3|spc3|tse3|tir2)_run-(\d+)_(T1w|T2w|FLAIR)\.(nii\.gz|json)"
)
PARTICIPANT_COLUMNS = [
    "participant_id",
    "sex",
    "age_at_stroke",
    "race",
    "wab_days",
    "wab_aq",
    "wab_type",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The default demo dataset, alone in a fresh folder, and its generation time."""
    out = tmp_path_factory.mktemp("demo") / "ds"
    start = time.perf_counter()
    assert write_demo_dataset(out) == out
    return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def root(demo: tuple[Path, float]) -> Path:
    return demo[0]


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _validator() -> str:
    beside = Path(sys.executable).parent / "bids-validator-deno"
    if beside.exists():
        return str(beside)
    found = shutil.which("bids-validator-deno")
    if found is None:
        pytest.fail("bids-validator-deno is not installed (pip install bids-validator-deno)")
    return found


def _mask_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(lesion mask, raw T2w it was drawn on) for every mask."""
    masks = sorted((root / "derivatives" / "lesion_masks").rglob("*_desc-lesion_mask.nii.gz"))
    pairs = []
    for mask in masks:
        rel = mask.relative_to(root / "derivatives" / "lesion_masks")
        t2w = root / rel.parent / mask.name.replace("_desc-lesion_mask", "")
        pairs.append((mask, t2w))
    return pairs


def _dwi_of(t2w: Path) -> Path:
    return next((t2w.parent.parent / "dwi").glob("*_dwi.nii.gz"))


def _gradients(dwi: Path) -> tuple[np.ndarray, np.ndarray]:
    stem = dwi.name.removesuffix(".nii.gz")
    bvals = np.loadtxt(dwi.with_name(stem + ".bval"), ndmin=1)
    bvecs = np.loadtxt(dwi.with_name(stem + ".bvec"), ndmin=2)
    return bvals, bvecs


def _resample_nearest(
    src: nib.Nifti1Image, target: nib.Nifti1Image, world: np.ndarray | None = None
) -> np.ndarray:
    """``src`` sampled (nearest) on ``target``'s grid, optionally through a world transform."""
    world = np.eye(4) if world is None else world
    vox = np.linalg.inv(src.affine) @ world @ target.affine
    data = np.asarray(src.dataobj, dtype=np.float32)
    out = ndimage.affine_transform(
        data, vox[:3, :3], vox[:3, 3], output_shape=target.shape[:3], order=0
    )
    return out > 0.5


def _b0_b1000_adc(dwi: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bvals, _ = _gradients(dwi)
    data = np.asarray(nib.load(dwi).dataobj, dtype=np.float64)
    b0 = data[..., bvals < B0_MAX].mean(axis=-1)
    sb = data[..., bvals >= B0_MAX].mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        adc = -np.log(np.maximum(sb, 1.0) / np.maximum(b0, 1.0)) / bvals[bvals >= B0_MAX].mean()
    return b0, sb, adc


def test_same_seed_gives_identical_bytes(root: Path, tmp_path: Path) -> None:
    again = write_demo_dataset(tmp_path / "again")
    first, second = _files(root), _files(again)
    assert first.keys() == second.keys()
    different = [rel for rel in first if first[rel].read_bytes() != second[rel].read_bytes()]
    assert different == []


def test_writes_only_inside_out_dir(root: Path) -> None:
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_refuses_a_non_empty_out_dir(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        write_demo_dataset(tmp_path)


def test_size_and_time(demo: tuple[Path, float]) -> None:
    root, seconds = demo
    total = sum(p.stat().st_size for p in _files(root).values())
    assert total < MAX_TOTAL_BYTES, f"{total} bytes"
    assert seconds < MAX_SECONDS


def test_bids_validator_reports_no_errors(root: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [_validator(), "--format", "json", "-o", str(report), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.exists(), proc.stdout + proc.stderr
    issues = json.loads(report.read_text())["issues"]["issues"]
    errors = [(i["code"], i.get("location")) for i in issues if i["severity"] == "error"]
    assert errors == []
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_arc_layout(root: Path) -> None:
    subjects = sorted(p.name for p in root.glob("sub-*"))
    assert subjects == [f"sub-M{9001 + i}" for i in range(N_SUBJECTS)]
    sessions = {s: sorted(p.name for p in (root / s).glob("ses-*")) for s in subjects}
    assert [len(v) for v in sessions.values()] == [2, 1, 2, 1]
    assert all(re.fullmatch(r"ses-\d+", ses) for v in sessions.values() for ses in v)
    anat = [p.name for p in root.glob("sub-*/ses-*/anat/*")]
    assert anat and all(ARC_ANAT.fullmatch(name) for name in anat)
    t1w_runs = [len(list(d.glob("*_T1w.nii.gz"))) for d in root.glob("sub-*/ses-*/anat")]
    assert max(t1w_runs) == 2
    assert list(root.glob("sub-*/ses-*/anat/*_run-10_T1w.nii.gz"))
    assert list(root.glob("sub-*/ses-*/anat/*_acq-tse3_run-1_T2w.nii.gz"))
    assert list(root.glob("sub-*/ses-*/func/*_task-naming40_acq-epfid2_dir-AP_run-1_bold.nii.gz"))
    assert list(root.glob("sub-*/ses-*/func/*_task-rest_*_bold.nii.gz"))


def test_dwi_presence(root: Path) -> None:
    with_dwi = {p.parts[-4] for p in root.glob("sub-*/ses-*/dwi/*_dwi.nii.gz")}
    assert f"sub-M{9000 + N_SUBJECTS}" not in with_dwi
    assert len(with_dwi) == N_SUBJECTS - 1
    first = sorted((root / "sub-M9001").glob("ses-*"))
    assert [(s / "dwi").is_dir() for s in first].count(True) == 1
    names = [p.name for p in root.glob("sub-*/ses-*/dwi/*_dwi.nii.gz")]
    assert all(
        re.fullmatch(r"sub-M\d+_ses-\d+_acq-epb0p2_dir-AP_run-1_dwi\.nii\.gz", n) for n in names
    )


def test_dwi_volumes_match_bval_and_bvec(root: Path) -> None:
    dwis = sorted(root.glob("sub-*/ses-*/dwi/*_dwi.nii.gz"))
    assert dwis
    for dwi in dwis:
        img = nib.load(dwi)
        bvals, bvecs = _gradients(dwi)
        assert img.ndim == 4
        assert img.shape[3] == bvals.size == bvecs.shape[1], dwi.name
        assert bvecs.shape[0] == 3
        weighted = bvals >= B0_MAX
        assert (~weighted).sum() >= 1 and weighted.sum() >= 6
        np.testing.assert_allclose(np.linalg.norm(bvecs[:, weighted], axis=0), 1.0, atol=1e-5)
        assert np.all(bvecs[:, ~weighted] == 0)
        sidecar = json.loads(dwi.with_name(dwi.name.replace(".nii.gz", ".json")).read_text())
        for key in ("PhaseEncodingDirection", "TotalReadoutTime", "EchoTime", "RepetitionTime"):
            assert key in sidecar
    bval_text = {p.read_text().split()[0] for p in root.glob("sub-*/ses-*/dwi/*.bval")}
    assert "5" in bval_text  # one subject stores its b0 as b=5


def test_nifti_headers(root: Path) -> None:
    for path in sorted(root.rglob("*.nii.gz")):
        img = nib.load(path)
        hdr = img.header
        assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1, path.name
        assert hdr.get_xyzt_units() == ("mm", "sec"), path.name
        np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4)
        expected = np.uint8 if "desc-lesion_mask" in path.name else np.int16
        assert hdr.get_data_dtype() == expected, path.name


def test_lesion_masks_are_on_their_t2w_grid(root: Path) -> None:
    pairs = _mask_pairs(root)
    assert len(pairs) == N_SUBJECTS - 1
    assert (root / "derivatives" / "lesion_masks" / "dataset_description.json").exists()
    for mask_path, t2w_path in pairs:
        assert t2w_path.exists(), t2w_path
        mask, t2w = nib.load(mask_path), nib.load(t2w_path)
        assert mask.shape == t2w.shape
        np.testing.assert_allclose(mask.affine, t2w.affine)
        data = np.asarray(mask.dataobj)
        assert set(np.unique(data)) == {0, 1}
        volume_ml = data.sum() * np.prod(mask.header.get_zooms()[:3]) / 1000.0
        assert volume_ml >= 3.0, f"{mask_path.name}: {volume_ml:.1f} mL"
        assert (t2w_path.parent.parent / "dwi").is_dir()


def test_infarct_has_low_adc_and_bright_b1000(root: Path) -> None:
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    for mask_path, t2w_path in _mask_pairs(root):
        dwi_path = _dwi_of(t2w_path)
        dwi, mask = nib.load(dwi_path), nib.load(mask_path)
        b0, b1000, adc = _b0_b1000_adc(dwi_path)
        lesion = _resample_nearest(mask, dwi)
        mirror = _resample_nearest(mask, dwi, world=flip_x) & ~lesion
        brain = b0 > 0.15 * np.percentile(b0, 99)
        assert lesion.sum() > 100 and mirror.sum() > 100
        assert b1000[lesion].mean() > 1.3 * b1000[mirror].mean(), mask_path.name
        assert adc[lesion].mean() < ADC_THRESHOLD, mask_path.name
        assert np.median(adc[brain & ~lesion]) > ADC_THRESHOLD, mask_path.name
        # What the downstream ADC-threshold segmenter must achieve against this mask.
        segmentation = brain & (adc < ADC_THRESHOLD)
        dice = 2 * (segmentation & lesion).sum() / (segmentation.sum() + lesion.sum())
        assert dice >= 0.75, f"{mask_path.name}: Dice {dice:.2f}"


def test_anatomical_contrasts(root: Path) -> None:
    """T2w: lesion bright; FLAIR: lesion bright; T1w: lesion dark (vs the mirror region)."""
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    mask_path, t2w_path = _mask_pairs(root)[0]
    mask = nib.load(mask_path)
    anat = t2w_path.parent
    for suffix, brighter in (("T2w", True), ("FLAIR", True), ("T1w", False)):
        img = nib.load(next(anat.glob(f"*_{suffix}.nii.gz")))
        data = np.asarray(img.dataobj, dtype=np.float64)
        lesion = _resample_nearest(mask, img)
        mirror = _resample_nearest(mask, img, world=flip_x) & ~lesion
        assert (data[lesion].mean() > data[mirror].mean()) == brighter, suffix


def test_participants(root: Path) -> None:
    with (root / "participants.tsv").open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == PARTICIPANT_COLUMNS
    assert [r[0] for r in rows[1:]] == [f"sub-M{9001 + i}" for i in range(N_SUBJECTS)]
    assert sum(v == "n/a" for r in rows[1:] for v in r) == 1
    sidecar = json.loads((root / "participants.json").read_text())
    assert set(PARTICIPANT_COLUMNS) <= sidecar.keys()
    assert set(sidecar["wab_type"]["Levels"]) == {
        "Anomic",
        "Broca",
        "Conduction",
        "Global",
        "TranscorticalMotor",
        "Wernicke",
        "None",
    }
    for row in rows[1:]:
        assert row[1] in {"M", "F"}
        assert row[6] in sidecar["wab_type"]["Levels"]
        assert 0.0 <= float(row[5]) <= 100.0
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["Name"] == "bids2hub demo (synthetic ARC-like)"
    assert description["DatasetType"] == "raw"

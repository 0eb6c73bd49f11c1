"""The CPU threshold segmenter, the common mask check and the derivative dataset."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.cli import main
from bids2hub.errors import SegmentationError
from bids2hub.segment.run import (
    check_mask,
    description_json,
    mask_relpath,
    otsu_threshold,
    segment_subject,
    segment_threshold,
    threshold_lesion,
)

AFFINE = np.array([[-3.0, 0, 0, 70], [0, 2.9, 0.3, -90], [0, 0, 3.0, -50], [0, 0, 0, 1]])


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _phantom(shape: tuple[int, int, int] = (40, 44, 36), seed: int = 0):
    """A head: ellipsoid brain (ADC 0.75e-3), CSF rim, a low-ADC infarct and a tiny speck."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(float)
    centre = (np.asarray(shape) - 1) / 2.0
    r = np.sqrt(sum(((idx[i] - centre[i]) / (0.42 * shape[i])) ** 2 for i in range(3)))
    brain, csf = r < 0.85, (r >= 0.85) & (r < 1.0)
    infarct = sum((idx[i] - c) ** 2 for i, c in enumerate((14, 16, 18))) <= 5.0**2
    speck = np.zeros(shape, bool)
    speck[26, 30, 18] = True  # one voxel: below the minimum size
    adc = np.where(brain, 0.75e-3, np.where(csf, 3.0e-3, 0.0))
    adc[infarct | speck] = 0.35e-3
    s0 = np.where(brain | csf, np.where(csf, 600.0, 300.0), 0.0)
    signal = s0 * np.exp(-1000 * adc)
    trace = np.hypot(signal + rng.normal(0, 2, shape), rng.normal(0, 2, shape))  # Rician
    trace = trace.astype(np.float32)
    adc = np.clip(adc + rng.normal(0, 2e-5, shape) * (brain | csf), 0, 5e-3).astype(np.float32)
    adc[~(brain | csf)] = rng.uniform(0, 3e-3, (~(brain | csf)).sum())  # noise outside the head
    return trace, adc, infarct


def test_otsu_separates_two_modes() -> None:
    values = np.concatenate([np.full(1000, 10.0), np.full(500, 100.0)])
    assert 10 < otsu_threshold(values) < 100


def test_threshold_finds_the_infarct_only() -> None:
    trace, adc, infarct = _phantom()
    mask = threshold_lesion(trace, adc, voxel_ml=0.027, min_lesion_ml=0.1)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    dice = 2 * (mask.astype(bool) & infarct).sum() / (mask.sum() + infarct.sum())
    assert dice > 0.9
    assert mask[26, 30, 18] == 0  # the one-voxel speck is removed
    # Outside the head the ADC is noise: never lesion.
    assert not (mask.astype(bool) & (trace < 5)).any()
    # A threshold below the infarct's ADC finds nothing.
    assert threshold_lesion(trace, adc, 0.027, adc_threshold=0.2e-3).sum() == 0
    assert threshold_lesion(np.zeros_like(trace), adc, 0.027).sum() == 0


def test_segment_threshold_writes_a_uint8_mask_on_the_dwi_grid(tmp_path: Path) -> None:
    trace, adc, _infarct = _phantom()
    dwi, adc_path = _save(tmp_path / "dwi.nii.gz", trace), _save(tmp_path / "adc.nii.gz", adc)
    out = tmp_path / "m" / "mask.nii.gz"
    segment_threshold(dwi, adc_path, None, out)
    img = nib.load(out)
    assert img.get_data_dtype() == np.uint8 and img.shape == trace.shape
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-5)
    assert np.asanyarray(img.dataobj).sum() > 0
    assert [p.name for p in out.parent.iterdir()] == ["mask.nii.gz"]
    first = out.read_bytes()
    segment_threshold(dwi, adc_path, None, out)
    assert out.read_bytes() == first  # deterministic bytes
    # ADC on another grid: refused, naming the file.
    other = _save(tmp_path / "adc2.nii.gz", adc, np.eye(4))
    with pytest.raises(SegmentationError, match=r"adc2\.nii\.gz: not on the grid of"):
        segment_threshold(dwi, other, None, tmp_path / "x.nii.gz")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "the segmentation wrote no mask"),
        (lambda p: p.write_bytes(b""), "the mask file is empty"),
        (lambda p: p.write_bytes(gzip.compress(b"garbage" * 100)), "not a readable NIfTI image"),
        (lambda p: _save(p, np.zeros((4, 5, 6, 2), np.uint8)), "expected a 3D mask"),
        (lambda p: _save(p, np.full((4, 5, 6), 0.5, np.float32)), "not a binary mask"),
        (lambda p: _save(p, np.zeros((4, 5, 7), np.uint8)), "shape (4, 5, 7) differs from the DWI"),
        (lambda p: _save(p, np.zeros((4, 5, 6), np.uint8), np.eye(4)), "affine differs"),
    ],
)  # fmt: skip
def test_check_mask_rejects_unusable_results(tmp_path: Path, make, message: str) -> None:
    ref = _save(tmp_path / "dwi.nii.gz", np.ones((4, 5, 6), np.float32))
    mask = tmp_path / "lesion_msk.nii.gz"
    make(mask)
    with pytest.raises(SegmentationError) as info:
        check_mask(mask, ref)
    assert message in str(info.value) and "lesion_msk.nii.gz" in str(info.value)
    assert "\n" not in str(info.value)


def test_check_mask_accepts_float_and_singleton_4d(tmp_path: Path) -> None:
    ref = _save(tmp_path / "dwi.nii.gz", np.ones((4, 5, 6), np.float32))
    data = np.zeros((4, 5, 6, 1), np.float32)
    data[1, 2, 3] = 1.0
    out = check_mask(_save(tmp_path / "m.nii.gz", data), ref)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 6) and out.sum() == 1


def test_segment_subject_keeps_failures_out_of_the_derivatives(tmp_path: Path) -> None:
    trace, adc, _ = _phantom()
    dwi, adc_path = _save(tmp_path / "dwi.nii.gz", trace), _save(tmp_path / "adc.nii.gz", adc)
    image = tmp_path / "deepisles.sif"
    image.write_bytes(b"sif")
    deriv = tmp_path / "derivatives" / "sub-1" / "dwi"
    out = deriv / "sub-1_desc-lesion_mask.nii.gz"
    calls = []

    def container_writes(data: np.ndarray | None):
        def run(img, d, a, f, result, *, fast, skull_strip, brain_extract, log):
            calls.append((img, d, a, f, fast, skull_strip))
            if data is not None:
                _save(result, data)

        return run

    # A container that writes nothing, or a non-binary map: clear error, nothing left behind.
    for data, message in ((None, "wrote no mask"), (trace, "not a binary mask")):
        with pytest.raises(SegmentationError, match=message):
            segment_subject("deepisles", dwi, adc_path, None, out, image=image,
                            run_deepisles=container_writes(data))  # fmt: skip
        assert list(deriv.iterdir()) == []

    def fails(*args, **kwargs):
        raise SegmentationError("DeepISLES exited with status 1: CUDA error")

    with pytest.raises(SegmentationError, match="exited with status 1"):
        segment_subject("deepisles", dwi, adc_path, None, out, image=image, run_deepisles=fails)
    assert list(deriv.iterdir()) == []

    # A float 0/1 result is stored as uint8 with the DWI's header.
    result = (adc < 0.5e-3).astype(np.float32)
    segment_subject("deepisles", dwi, adc_path, tmp_path / "flair.nii.gz", out, image=image,
                    fast=True, skull_strip=True, run_deepisles=container_writes(result))  # fmt: skip
    assert calls[-1] == (image, dwi, adc_path, tmp_path / "flair.nii.gz", True, True)
    stored = nib.load(out)
    assert stored.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(stored.dataobj), result.astype(np.uint8))
    assert [p.name for p in deriv.iterdir()] == [out.name]
    with pytest.raises(SegmentationError, match="needs the container image"):
        segment_subject("deepisles", dwi, adc_path, None, out)


def test_segment_subject_works_in_the_scratch_dir_and_clears_a_killed_runs_leftovers(
    tmp_path: Path,
) -> None:
    trace, adc, _ = _phantom()
    work = tmp_path / "work" / "sub-1"
    dwi, adc_path = _save(work / "dwi.nii.gz", trace), _save(work / "adc.nii.gz", adc)
    deriv = tmp_path / "derivatives" / "sub-1" / "dwi"
    out = deriv / "sub-1_desc-lesion_mask.nii.gz"
    stale = work / f".{out.name}.scratch-killed"  # what a SIGKILL mid-run leaves
    stale.mkdir()
    (stale / "lesion_msk.nii.gz").write_bytes(b"half")
    seen = []

    def container(img, d, a, f, result, *, fast, skull_strip, brain_extract, log):
        seen.append(Path(result).parent)
        assert not stale.exists()
        _save(result, (adc < 0.5e-3).astype(np.uint8))

    image = tmp_path / "deepisles.sif"
    image.write_bytes(b"sif")
    segment_subject("deepisles", dwi, adc_path, None, out, image=image,
                    run_deepisles=container, scratch_dir=work)  # fmt: skip
    assert seen[0].parent == work and seen[0].name.startswith(f".{out.name}.scratch-")
    assert [p.name for p in deriv.iterdir()] == [out.name]  # nothing else in the derivatives
    assert sorted(p.name for p in work.iterdir()) == ["adc.nii.gz", "dwi.nii.gz"]


def test_cli_run_fails_in_one_line_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    trace, adc, _ = _phantom()
    dwi = _save(tmp_path / "dwi.nii.gz", trace)
    adc_path = _save(tmp_path / "adc.nii.gz", adc[:-1])
    out = tmp_path / "d" / "mask.nii.gz"
    code = main(["segment", "run", "--backend", "threshold", "--dwi", str(dwi),
                 "--adc", str(adc_path), "--output", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "adc.nii.gz: not on the grid of" in err[0]
    assert list(out.parent.iterdir()) == []
    adc_path = _save(tmp_path / "adc.nii.gz", adc)
    assert main(["segment", "run", "--backend", "threshold", "--dwi", str(dwi),
                 "--adc", str(adc_path), "--output", str(out)]) == 0  # fmt: skip
    assert out.is_file()


def test_derivative_paths_and_description() -> None:
    assert mask_relpath("M1", "2") == "sub-M1/ses-2/dwi/sub-M1_ses-2_desc-lesion_mask.nii.gz"
    assert mask_relpath("01", "") == "sub-01/dwi/sub-01_desc-lesion_mask.nii.gz"
    desc = json.loads(description_json("threshold", {"Name": "ARC", "DatasetDOI": "10.18112/x"}))
    assert desc["DatasetType"] == "derivative" and desc["Name"] == "Lesion masks of ARC"
    assert desc["GeneratedBy"][0]["Name"] == "bids2hub-threshold"
    assert desc["GeneratedBy"][0]["Version"]
    assert desc["SourceDatasets"] == [{"DOI": "doi:10.18112/x"}]
    uri = "docker://isleschallenge/deepisles@sha256:" + "a" * 64
    deep = json.loads(description_json("deepisles", {"Name": "ARC"}, container_uri=uri))
    assert deep["GeneratedBy"][0] == {
        "Name": "DeepISLES",
        "Version": "sha256:" + "a" * 64,
        "CodeURL": "https://github.com/ezequieldlrosa/DeepIsles",
        "Container": {"Type": "apptainer", "URI": uri},
    }
    with pytest.raises(SegmentationError, match="container reference is unknown"):
        description_json("deepisles", {})

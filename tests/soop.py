"""SOOP-shaped BIDS trees (OpenNeuro ds004889) with tiny synthetic images, for tests.

The metadata are real, an excerpt of the published dataset (v1.1.2) kept in
``tests/data/ds004889``: the file names of eight subjects (``files.txt``), their JSON
sidecars, the dataset-level ``dwi.bval``/``dwi.bvec`` ("0"), ``dataset_description.json``,
``participants.json`` and the ``participants.tsv`` rows of those subjects as published
(CRLF line ends, no final newline, CSV-quoted etiology cells with commas, ``89+`` ages;
sub-1 is imaged but has no row). sub-235 has acute and chronic masks but no combined
one, sub-1002 no mask at all, sub-127 and sub-1033 rec-ADC sidecars whose ImageType
does not say ADC (Siemens, GE), as in the real tree.

The images are synthetic phantoms on a small 3-D grid: an ellipsoid brain with
ventricles, an acute lesion (bright on the b=1000 trace, ADC 0.4e-3 mm^2/s) where a
subject has an acute mask, a chronic cavity (ADC 2e-3) where it has a chronic one.
The masks are the phantom's truth on the trace grid (``space-TRACE``). The ADC maps
come in the three units SOOP has after the NIfTI scaling (:data:`ADC_UNITS`): int16
with the Philips RWV slope as ``scl_slope`` (mm^2/s), int16 without scaling
(1e-6 mm^2/s), float32 (1e-3 mm^2/s). ``fov_mm=256`` gives a grid whose in-plane
field of view is 256 mm, which wraps DeepISLES' uint8 1 mm grid.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["ADC_UNITS", "LESION_ADC", "SUBJECTS", "soop_truth", "write_soop_like_tree"]

_DATA = Path(__file__).with_name("data") / "ds004889"
_COPIED = ("dataset_description.json", "participants.json", "participants.tsv", "dwi.bval")

#: ADC unit of each subject's rec-ADC map (after the header scaling).
ADC_UNITS = {
    "1": "mm2/s",
    "2": "1e-6 mm2/s",
    "38": "1e-3 mm2/s",
    "127": "1e-6 mm2/s",
    "235": "mm2/s",
    "1002": "mm2/s",
    "1033": "1e-6 mm2/s",
    "1737": "1e-3 mm2/s",
}
SUBJECTS = tuple(ADC_UNITS)
#: The Philips RWV slope dcm2niix stored as scl_slope (sub-1's sidecar: 1.05995), in mm^2/s.
_RWV_SLOPE_MM2 = 1.05995e-6
TISSUE_ADC, CSF_ADC, LESION_ADC, CHRONIC_ADC = 0.8e-3, 3.0e-3, 0.4e-3, 2.0e-3
_S0, _B = 400.0, 1000.0
_NOISE = 3.0


def _listing() -> list[str]:
    return (_DATA / "files.txt").read_text(encoding="utf-8").split()


def _grid(fov_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the trace grid: in-plane field of view ``fov_mm``, 12 slices of 6 mm."""
    shape = (24, 24, 12)
    vx = fov_mm / shape[0]
    affine = np.diag([vx, vx, 6.0, 1.0])
    affine[:3, 3] = [-(shape[0] - 1) * vx / 2, -(shape[1] - 1) * vx / 2, -(shape[2] - 1) * 3.0]
    return shape, affine


def _points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    ijk = np.indices(shape).reshape(3, -1)
    return (affine[:3, :3] @ ijk + affine[:3, 3:4]).T.reshape(*shape, 3)


def _ellipsoid(xyz: np.ndarray, center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    return (((xyz - np.array(center)) / np.array(radii)) ** 2).sum(-1) <= 1.0


def soop_truth(sub: str, fov_mm: float = 72.0) -> dict[str, np.ndarray]:
    """The phantom's regions on the trace grid: brain, csf, acute, chronic (bool arrays)."""
    shape, affine = _grid(fov_mm)
    xyz = _points(shape, affine)
    scale = fov_mm / 72.0  # the head fills the same fraction of a larger field of view
    brain = _ellipsoid(xyz, (0, 0, 0), (30 * scale, 32 * scale, 33))
    csf = _ellipsoid(xyz, (0, 0, 0), (6 * scale, 9 * scale, 8))
    files = _listing()
    has = {
        desc: any(f"sub-{sub}_space-TRACE_desc-{desc}_mask" in f for f in files)
        for desc in ("lesionAcute", "lesionChronic")
    }
    acute = has["lesionAcute"] & _ellipsoid(
        xyz, (14 * scale, 8 * scale, 6), (9 * scale, 9 * scale, 13)
    )
    chronic = has["lesionChronic"] & _ellipsoid(
        xyz, (-15 * scale, -14 * scale, -6), (6 * scale, 6 * scale, 9)
    )
    return {"brain": brain, "csf": csf & brain, "acute": acute & brain, "chronic": chronic & brain}


def _images(sub: str, fov_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trace (float), ADC (mm^2/s) and the affine of one subject."""
    shape, affine = _grid(fov_mm)
    truth = soop_truth(sub, fov_mm)
    adc = np.zeros(shape)
    adc[truth["brain"]] = TISSUE_ADC
    adc[truth["csf"]] = CSF_ADC
    adc[truth["chronic"]] = CHRONIC_ADC
    adc[truth["acute"]] = LESION_ADC
    rng = np.random.default_rng(int(sub))
    trace = np.where(truth["brain"], _S0 * np.exp(-_B * adc), 0.0)
    trace = np.abs(trace + rng.normal(0, _NOISE, shape))
    adc = np.where(truth["brain"], np.clip(adc + rng.normal(0, 2e-5, shape), 1e-5, None), 0.0)
    return trace, adc, affine


def _save(
    data: np.ndarray, affine: np.ndarray, dest: Path, dtype: type, slope: float = 1.0
) -> None:
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    if slope != 1.0:
        img.header.set_slope_inter(slope, 0.0)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, dest)


def _adc_image(adc_mm2: np.ndarray, affine: np.ndarray, unit: str, dest: Path) -> None:
    if unit == "mm2/s":  # int16 with the RWV slope as scl_slope: scaled values in mm^2/s
        _save(np.rint(adc_mm2 / _RWV_SLOPE_MM2), affine, dest, np.int16, _RWV_SLOPE_MM2)
    elif unit == "1e-6 mm2/s":
        _save(np.rint(adc_mm2 * 1e6), affine, dest, np.int16)
    elif unit == "1e-3 mm2/s":
        _save(adc_mm2 * 1e3, affine, dest, np.float32)
    else:
        raise ValueError(f"unknown ADC unit {unit}")


def write_soop_like_tree(
    root: Path, *, subjects: list[str] | None = None, fov_mm: float = 72.0
) -> Path:
    """Write a SOOP-shaped tree (see the module docstring) under ``root``.

    Parameters
    ----------
    root
        Destination (created).
    subjects
        Labels to write (default: all eight of the excerpt).
    fov_mm
        In-plane field of view of the trace/ADC grid (256 makes DeepISLES' grid wrap).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    wanted = set(subjects or SUBJECTS)
    for name in _COPIED:
        shutil.copyfile(_DATA / name, root / name)
    shutil.copyfile(_DATA / "dwi.bvec", root / "dwi.bvec")
    for sidecar in sorted(_DATA.glob("sub-*/*/*.json")):
        sub = sidecar.parts[-3][4:]
        if sub in wanted:
            dest = root / sidecar.relative_to(_DATA)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sidecar, dest)
    for rel in _listing():
        sub = next(p for p in rel.split("/") if p.startswith("sub-"))[4:]
        if sub not in wanted:
            continue
        dest = root / rel
        trace, adc, affine = _images(sub, fov_mm)
        truth = soop_truth(sub, fov_mm)
        if rel.endswith("_rec-TRACE_dwi.nii.gz"):
            _save(trace, affine, dest, np.float32)
        elif rel.endswith("_rec-ADC_dwi.nii.gz"):
            _adc_image(adc, affine, ADC_UNITS[sub], dest)
        elif "_desc-" in rel:
            region = {
                "lesionAcute": truth["acute"],
                "lesionChronic": truth["chronic"],
                "lesion": truth["acute"] | truth["chronic"],
            }[rel.split("_desc-")[1].split("_")[0]]
            _save(region, affine, dest, np.uint8)
        else:  # T1w, FLAIR: tiny anatomical images of their own grid
            anat = np.indices((8, 8, 8)).sum(0) + int(sub) % 7
            _save(anat, np.diag([24.0, 24.0, 24.0, 1.0]), dest, np.int16)
    return root

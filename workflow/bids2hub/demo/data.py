"""Small, synthetic, ARC-like BIDS dataset for demos and CI.

The anatomy is the MNI152 2009a symmetric template that nilearn ships as
package data (no download). Its grey/white matter probability maps are block
averaged to 2 mm, CSF is what is left of the brain mask, and every image is
resampled from these maps onto its own scanner grid through the affines, after
a small per-subject affine "head" transform. Contrasts (T1w, T2w, FLAIR, DWI,
BOLD) are mixtures of tissue intensities plus Rician noise.

Every subject but the last has a left-hemisphere infarct: a smooth blob
defined in template millimetres, so it is the same physical region in every
image of the subject. On DWI it has a low ADC (bright on b=1000, dark on ADC);
its ground truth is written on the grid of the reference T2w, as ARC does, in
``derivatives/lesion_masks``.

Everything is seeded: the same ``seed`` gives byte-identical files (gzip
streams are written with ``mtime=0``).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage, special

__all__ = ["write_demo_dataset"]

_TEMPLATE_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
_TEMPLATE_BLOCK = 2  # block-average the 1 mm template to 2 mm once
_FOV_CENTER_MM = (0.0, -18.0, 10.0)  # roughly the centre of the head in MNI space

_TISSUES = ("gm", "wm", "csf", "lesion")
# Relative signal of (gm, wm, csf, lesion) per contrast.
_ANAT_CONTRASTS: dict[str, tuple[float, float, float, float]] = {
    "T1w": (0.60, 1.00, 0.20, 0.35),
    "T2w": (0.55, 0.40, 1.00, 0.85),
    "FLAIR": (0.62, 0.48, 0.06, 1.00),
}
_ANAT_BASE = 250.0  # intensity of the brightest tissue
_ANAT_NOISE = 2.5
_ANAT_VOXEL_MM = 4.0
_ANAT_SHAPE = (44, 54, 44)

# DWI: b=0 signal (relative) and apparent diffusion coefficient (mm^2/s).
_DWI_S0 = (0.50, 0.40, 1.00, 0.60)
_DWI_ADC = (0.82e-3, 0.72e-3, 3.0e-3, 0.35e-3)
_DWI_BASE = 400.0
_DWI_NOISE = 3.0
_DWI_VOXEL_MM = 3.0
_DWI_SHAPE = (50, 62, 48)
_DWI_TR = 5.0
_DWI_BVALS = (0, 1000, 1000, 1000, 1000, 1000, 1000)
_DWI_BVALS_JITTERED = (5, 995, 1000, 1005, 1000, 995, 1005)
# Six non-collinear directions (Jones 6), used for every b>0 volume in turn.
_DWI_DIRECTIONS = np.array(
    [[1, 0, 1], [-1, 0, 1], [0, 1, 1], [0, 1, -1], [1, 1, 0], [-1, 1, 0]], dtype=float
) / np.sqrt(2.0)

_BOLD_CONTRAST = (0.75, 0.60, 1.00, 0.90)
_BOLD_BASE = 300.0
_BOLD_NOISE = 3.0
_BOLD_VOXEL_MM = 6.0
_BOLD_SHAPE = (28, 34, 26)
_BOLD_TR = 2.5
_BOLD_VOLUMES = 8

# Infarct centres in template millimetres: left hemisphere, deep MCA territory
# (corona radiata, frontal and parietal white matter), away from sulcal CSF.
_LESION_CENTERS_MM = (
    (-30.0, -4.0, 26.0),
    (-30.0, 16.0, 20.0),
    (-36.0, -48.0, 26.0),
    (-30.0, 0.0, 32.0),
)
_LESION_RADII_MM = (14.0, 17.0, 14.0)
_LESION_EDGE_MM = 0.4

# Sidecar keys shared by every image, then per-sequence keys by ARC "acq" label.
_SCANNER: dict[str, Any] = {
    "Modality": "MR",
    "MagneticFieldStrength": 3,
    "Manufacturer": "Siemens",
    "ManufacturersModelName": "Prisma_fit",
    "SoftwareVersions": "syngo MR XA30",
    "DeviceSerialNumber": "00000",
    "StationName": "SYNTHETIC",
    "InstitutionName": "bids2hub synthetic data",
    "InstitutionAddress": "n/a",
    "InstitutionalDepartmentName": "n/a",
    "ReceiveCoilName": "Head_32",
    "ReceiveCoilActiveElements": "HEA;HEP",
    "CoilCombinationMethod": "Adaptive Combine",
    "MatrixCoilMode": "SENSE",
    "NonlinearGradientCorrection": False,
    "PulseSequenceDetails": "Synthetic image simulated by bids2hub from the MNI152 2009a "
    "template; no scanner was involved",
}
_SEQUENCES: dict[str, dict[str, Any]] = {
    "tfl3": {
        "SeriesDescription": "T1_MPRAGE",
        "PulseSequenceType": "MPRAGE",
        "ScanningSequence": "GR\\IR",
        "SequenceVariant": "SK\\SP\\MP",
        "SequenceName": "*tfl3d1_16ns",
        "MRAcquisitionType": "3D",
        "EchoTime": 0.00224,
        "RepetitionTime": 2.4,
        "InversionTime": 1.06,
        "FlipAngle": 8,
        "DwellTime": 7.1e-06,
    },
    "spc3": {
        "SeriesDescription": "T2_SPACE",
        "PulseSequenceType": "SPACE",
        "ScanningSequence": "SE",
        "SequenceVariant": "SK\\SP\\OSP",
        "SequenceName": "*spc_314ns",
        "MRAcquisitionType": "3D",
        "EchoTime": 0.564,
        "RepetitionTime": 3.2,
        "FlipAngle": 120,
        "DwellTime": 3.9e-06,
    },
    "tse3": {
        "SeriesDescription": "T2_TSE",
        "PulseSequenceType": "Turbo spin echo",
        "ScanningSequence": "SE",
        "SequenceVariant": "SK\\SP\\OSP",
        "SequenceName": "*tse2d1_11",
        "MRAcquisitionType": "2D",
        "EchoTime": 0.094,
        "RepetitionTime": 6.0,
        "FlipAngle": 150,
        "DwellTime": 8.0e-06,
    },
    "tir2": {
        "SeriesDescription": "T2_FLAIR",
        "PulseSequenceType": "FLAIR",
        "ScanningSequence": "SE\\IR",
        "SequenceVariant": "SK\\SP\\MP\\OSP",
        "SequenceName": "*tir2d1_16",
        "MRAcquisitionType": "2D",
        "EchoTime": 0.081,
        "RepetitionTime": 9.0,
        "InversionTime": 2.5,
        "FlipAngle": 150,
        "DwellTime": 1.0e-05,
    },
    "epb0p2": {
        "SeriesDescription": "DTI_b1000",
        "PulseSequenceType": "Diffusion EPI",
        "ScanningSequence": "EP",
        "SequenceVariant": "SK\\SP",
        "SequenceName": "*ep_b1000",
        "MRAcquisitionType": "2D",
        "EchoTime": 0.08,
        "RepetitionTime": _DWI_TR,
        "FlipAngle": 90,
        "DwellTime": 2.6e-06,
        "PhaseEncodingDirection": "j-",
        "EffectiveEchoSpacing": 0.0007,
    },
    "epfid2": {
        "SeriesDescription": "fMRI_EPI",
        "PulseSequenceType": "Gradient echo EPI",
        "ScanningSequence": "EP",
        "SequenceVariant": "SK\\SS",
        "SequenceName": "epfid2d1_34",
        "MRAcquisitionType": "2D",
        "EchoTime": 0.03,
        "RepetitionTime": _BOLD_TR,
        "FlipAngle": 80,
        "DwellTime": 2.8e-06,
        "PhaseEncodingDirection": "j-",
        "EffectiveEchoSpacing": 0.0009,
    },
}
_NAMING40_EVENTS = (
    (2.0, 2.0, "picture"),
    (7.0, 2.0, "scrambled"),
    (12.0, 2.0, "picture"),
    (17.0, 2.0, "scrambled"),
)
_WAB_TYPES = ("Anomic", "Broca", "Conduction", "Global", "TranscorticalMotor", "Wernicke")


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Anat:
    """One anatomical acquisition: ``acq-<acq>_run-<run>_<suffix>``."""

    suffix: str
    acq: str
    run: int


@dataclass(frozen=True)
class _SessionPlan:
    """What one session holds; ``bvals`` is None when it has no DWI."""

    anat: tuple[_Anat, ...]
    bvals: tuple[int, ...] | None = None
    task: str | None = None
    lesion_mask: bool = False  # ground truth on the session's first T2w


def _t1(run: int = 1) -> _Anat:
    return _Anat("T1w", "tfl3", run)


def _t2(acq: str = "spc3", run: int = 1) -> _Anat:
    return _Anat("T2w", acq, run)


def _flair(run: int = 1) -> _Anat:
    return _Anat("FLAIR", "tir2", run)


# Subject i follows _ROLES[i % 4]; the last subject loses its DWI and infarct.
_ROLES: tuple[tuple[_SessionPlan, ...], ...] = (
    (  # two sessions, two T1w runs, task fMRI; the follow-up has no DWI
        _SessionPlan((_t1(1), _t1(2), _t2(), _flair()), _DWI_BVALS, "naming40", True),
        _SessionPlan((_t1(), _t2()), None, "rest"),
    ),
    (  # turbo spin echo T2w, b0 stored as 5, b1000 as 995/1000/1005
        _SessionPlan((_t1(), _t2("tse3"), _flair()), _DWI_BVALS_JITTERED, None, True),
    ),
    (  # two sessions with DWI; run-2 and run-10 in the first (natural sort trap)
        _SessionPlan((_t1(2), _t1(10), _t2(run=2)), _DWI_BVALS, None, True),
        _SessionPlan((_t1(), _t2()), _DWI_BVALS),
    ),
    (_SessionPlan((_t1(), _t2(), _flair()), _DWI_BVALS, None, True),),
)


@dataclass(frozen=True)
class _Lesion:
    """A smooth, slightly irregular ellipsoid in template millimetres."""

    center: np.ndarray  # (3,)
    axes: np.ndarray  # (3, 3) rotation, columns are the principal axes
    radii: np.ndarray  # (3,)
    waves: np.ndarray  # (4, 3) spatial frequencies of the border wobble, rad/mm
    phases: np.ndarray  # (4,)

    def fraction(self, points: np.ndarray) -> np.ndarray:
        """Lesion fraction in [0, 1] at ``points`` (..., 3), template mm."""
        rel = points - self.center
        rho = np.linalg.norm((rel @ self.axes) / self.radii, axis=-1)
        wobble = 1.0 + 0.2 * np.sin(rel @ self.waves.T + self.phases).mean(axis=-1)
        distance_mm = (rho / wobble - 1.0) * float(self.radii.mean())
        return special.expit(-distance_mm / _LESION_EDGE_MM)


@dataclass(frozen=True)
class _Subject:
    label: str
    to_template: np.ndarray  # (4, 4) subject world mm -> template mm
    lesion: _Lesion | None
    sessions: tuple[tuple[str, _SessionPlan], ...]
    phenotype: dict[str, str]


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, ...]
    affine: np.ndarray
    voxel_mm: float


# ---------------------------------------------------------------------- template


@dataclass(frozen=True)
class _Template:
    maps: tuple[np.ndarray, np.ndarray, np.ndarray]  # gm, wm, csf fractions
    affine: np.ndarray


def _read_template_map(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one MNI152 map from nilearn's package data as float32 in [0, 1]."""
    resource = importlib.resources.files("nilearn.datasets").joinpath(
        "data", _TEMPLATE_FILE.format(kind)
    )
    img = nib.Nifti1Image.from_bytes(gzip.decompress(resource.read_bytes()))
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data / 255.0, img.affine


def _block_average(
    data: np.ndarray, affine: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Average ``factor``-wide blocks and return the matching affine."""
    shape = tuple(n // factor for n in data.shape)
    cropped = data[tuple(slice(0, n * factor) for n in shape)]
    blocks = cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    out_affine = affine.copy()
    out_affine[:3, :3] = affine[:3, :3] * factor
    out_affine[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2.0) + affine[:3, 3]
    return blocks.mean(axis=(1, 3, 5)), out_affine


@lru_cache(maxsize=1)
def _template() -> _Template:
    """GM, WM and CSF fractions of the MNI152 2009a template at 2 mm."""
    brain, affine = _read_template_map("t1")
    gm, _ = _read_template_map("gm")
    wm, _ = _read_template_map("wm")
    csf = np.clip((brain > 0) - gm - wm, 0.0, 1.0)
    (gm2, out_affine), (wm2, _), (csf2, _) = (
        _block_average(m, affine, _TEMPLATE_BLOCK) for m in (gm, wm, csf)
    )
    return _Template((gm2, wm2, csf2), out_affine)


@lru_cache(maxsize=4)
def _template_for(voxel_mm: float) -> _Template:
    """The template smoothed to the partial-volume blur of a ``voxel_mm`` grid."""
    base = _template()
    step = float(base.affine[0, 0])
    sigma = np.sqrt(max(voxel_mm**2 - step**2, 0.0)) / 2.355 / step
    maps = tuple(ndimage.gaussian_filter(m, sigma) for m in base.maps)
    return _Template((maps[0], maps[1], maps[2]), base.affine)


# ------------------------------------------------------------------ simulation


def _rotation(angles_rad: Sequence[float]) -> np.ndarray:
    """Rotation matrix from angles about x, y and z."""
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _grid(
    rng: np.random.Generator, shape: tuple[int, ...], voxel_mm: float, tilt_deg: float
) -> _Grid:
    """A scanner grid around the head with a random offset and pitch."""
    rotation = _rotation((np.deg2rad(rng.uniform(-tilt_deg, tilt_deg)), 0.0, 0.0))
    center = np.asarray(_FOV_CENTER_MM) + rng.uniform(-3.0, 3.0, size=3)
    affine = np.eye(4)
    affine[:3, :3] = rotation * voxel_mm
    affine[:3, 3] = center - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return _Grid(shape, affine, voxel_mm)


def _world_points(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Millimetre coordinates (shape + (3,)) of every voxel centre under ``affine``."""
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (affine[:3, :3] @ ijk + affine[:3, 3:]).T.reshape(*shape, 3)


def _tissues(subject: _Subject, grid: _Grid) -> np.ndarray:
    """Fractions of gm, wm, csf and lesion on ``grid``, stacked on the last axis."""
    template = _template_for(grid.voxel_mm)
    grid_to_template = subject.to_template @ grid.affine
    to_voxels = np.linalg.inv(template.affine) @ grid_to_template
    gm, wm, csf = (
        ndimage.affine_transform(
            m, to_voxels[:3, :3], to_voxels[:3, 3], output_shape=grid.shape, order=1
        )
        for m in template.maps
    )
    lesion = np.zeros_like(gm)
    if subject.lesion is not None:
        blob = subject.lesion.fraction(_world_points(grid_to_template, grid.shape))
        lesion = (blob * (gm + wm)).astype(np.float32)
        gm, wm = gm * (1.0 - blob), wm * (1.0 - blob)
    return np.stack([gm, wm, csf, lesion], axis=-1)


def _mix(tissues: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    return tissues @ np.asarray(weights, dtype=np.float64)


def _rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise."""
    real = signal + rng.normal(0.0, sigma, signal.shape)
    imag = rng.normal(0.0, sigma, signal.shape)
    return np.hypot(real, imag)


def _bias_field(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative receive-coil bias (about +-5 % across the head)."""
    gradient = rng.uniform(-0.0005, 0.0005, size=3)
    rel = _world_points(grid.affine, grid.shape) - np.asarray(_FOV_CENTER_MM)
    return 1.0 + rel @ gradient


def _to_int16(data: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(data), 0, np.iinfo(np.int16).max).astype(np.int16)


def _simulate_anat(
    subject: _Subject, anat: _Anat, rng: np.random.Generator
) -> tuple[np.ndarray, _Grid, np.ndarray]:
    """Return int16 image, its grid and the tissue fractions on that grid."""
    grid = _grid(rng, _ANAT_SHAPE, _ANAT_VOXEL_MM, tilt_deg=0.0)
    tissues = _tissues(subject, grid)
    scale = _ANAT_BASE * rng.uniform(0.9, 1.1)
    signal = scale * _mix(tissues, _ANAT_CONTRASTS[anat.suffix]) * _bias_field(grid, rng)
    return _to_int16(_rician(signal, _ANAT_NOISE, rng)), grid, tissues


def _dwi_shape(fov_mm: float | None) -> tuple[int, int, int]:
    """The DWI grid: the default, or an in-plane field of view of ``fov_mm`` (3 mm voxels)."""
    if fov_mm is None:
        return _DWI_SHAPE
    n = int(np.ceil(fov_mm / _DWI_VOXEL_MM))
    return (n, n, _DWI_SHAPE[2])


def _simulate_dwi(
    subject: _Subject, bvals: Sequence[int], rng: np.random.Generator, fov_mm: float | None = None
) -> tuple[np.ndarray, _Grid]:
    """Return a 4D int16 DWI, S = S0 exp(-b ADC) per tissue, and its grid."""
    grid = _grid(rng, _dwi_shape(fov_mm), _DWI_VOXEL_MM, tilt_deg=6.0)
    tissues = _tissues(subject, grid)
    s0 = tissues * (_DWI_BASE * rng.uniform(0.9, 1.1) * np.asarray(_DWI_S0))
    volumes = [_rician(s0 @ np.exp(-b * np.asarray(_DWI_ADC)), _DWI_NOISE, rng) for b in bvals]
    return _to_int16(np.stack(volumes, axis=-1)), grid


def _simulate_bold(subject: _Subject, rng: np.random.Generator) -> tuple[np.ndarray, _Grid]:
    """Return a short 4D int16 EPI run with a slow drift, and its grid."""
    grid = _grid(rng, _BOLD_SHAPE, _BOLD_VOXEL_MM, tilt_deg=6.0)
    mean = _BOLD_BASE * rng.uniform(0.9, 1.1) * _mix(_tissues(subject, grid), _BOLD_CONTRAST)
    drift = 1.0 + np.cumsum(rng.normal(0.0, 0.002, _BOLD_VOLUMES))
    volumes = [_rician(mean * d, _BOLD_NOISE, rng) for d in drift]
    return _to_int16(np.stack(volumes, axis=-1)), grid


def _bvecs(bvals: Sequence[int]) -> np.ndarray:
    """(3, N) unit vectors for the b>0 volumes, zeros for the b~0 ones."""
    vectors = np.zeros((3, len(bvals)))
    weighted = [i for i, b in enumerate(bvals) if b > 50]
    for n, i in enumerate(weighted):
        vectors[:, i] = _DWI_DIRECTIONS[n % len(_DWI_DIRECTIONS)]
    return vectors


# ---------------------------------------------------------------------- writing


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    lines = ["\t".join(header), *("\t".join(str(v) for v in row) for row in rows)]
    _write_text(path, "\n".join(lines) + "\n")


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> None:
    """Write ``data`` as .nii.gz with qform = sform (code 1), mm/sec units, gzip mtime 0."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((*img.header.get_zooms()[:3], tr))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


def _slice_timing(n_slices: int, tr: float) -> list[float]:
    """Interleaved (odd then even) ascending slice acquisition times."""
    order = [*range(0, n_slices, 2), *range(1, n_slices, 2)]
    times = [0.0] * n_slices
    for position, index in enumerate(order):
        times[index] = round(position * tr / n_slices, 4)
    return times


def _sidecar(acq: str, grid: _Grid) -> dict[str, Any]:
    """JSON sidecar of a sequence on ``grid``.

    EPI gets a TotalReadoutTime along the grid's j (phase-encoding) axis and 2D
    sequences get SliceTiming over the grid's k axis.
    """
    sidecar = {**_SCANNER, **_SEQUENCES[acq]}
    if "EffectiveEchoSpacing" in sidecar:
        lines = grid.shape[1] - 1
        sidecar["TotalReadoutTime"] = round(sidecar["EffectiveEchoSpacing"] * lines, 6)
    if sidecar["MRAcquisitionType"] == "2D":
        sidecar["SliceTiming"] = _slice_timing(grid.shape[2], sidecar["RepetitionTime"])
    return sidecar


def _stem(subject: str, session: str, *entities: tuple[str, object]) -> str:
    """``sub-X_ses-Y_key-value...`` (suffix added by the caller)."""
    return "_".join([f"sub-{subject}", f"ses-{session}", *(f"{k}-{v}" for k, v in entities)])


def _write_anat(
    root: Path, subject: _Subject, session: str, plan: _SessionPlan, rng: np.random.Generator
) -> None:
    """Write the session's anatomical images and, if planned, the lesion mask."""
    mask_written = False
    for anat in plan.anat:
        image, grid, tissues = _simulate_anat(subject, anat, rng)
        stem = _stem(subject.label, session, ("acq", anat.acq), ("run", anat.run))
        rel = Path(f"sub-{subject.label}", f"ses-{session}", "anat", f"{stem}_{anat.suffix}")
        _write_nifti(root / rel.with_suffix(".nii.gz"), image, grid.affine)
        _write_json(root / rel.with_suffix(".json"), _sidecar(anat.acq, grid))
        if plan.lesion_mask and anat.suffix == "T2w" and not mask_written:
            _write_lesion_mask(root, rel, tissues, grid)
            mask_written = True


def _write_lesion_mask(root: Path, t2w_rel: Path, tissues: np.ndarray, grid: _Grid) -> None:
    """Ground truth (lesion fraction > 0.5) on the T2w grid, ARC naming."""
    mask = (tissues[..., _TISSUES.index("lesion")] > 0.5).astype(np.uint8)
    rel = Path("derivatives", "lesion_masks", t2w_rel.parent, f"{t2w_rel.name}_desc-lesion_mask")
    _write_nifti(root / rel.with_suffix(".nii.gz"), mask, grid.affine)
    _write_json(
        root / rel.with_suffix(".json"),
        {
            "Description": "Simulated infarct (ground truth of the synthetic demo), "
            "on the grid of the source T2w.",
            "Sources": [f"bids:raw:{t2w_rel.as_posix()}.nii.gz"],
            "Type": "Lesion",
        },
    )


def _write_dwi(
    root: Path,
    subject: _Subject,
    session: str,
    bvals: Sequence[int],
    rng: np.random.Generator,
    fov_mm: float | None = None,
) -> None:
    image, grid = _simulate_dwi(subject, bvals, rng, fov_mm)
    stem = _stem(subject.label, session, ("acq", "epb0p2"), ("dir", "AP"), ("run", 1))
    base = root / f"sub-{subject.label}" / f"ses-{session}" / "dwi" / f"{stem}_dwi"
    _write_nifti(base.with_suffix(".nii.gz"), image, grid.affine, tr=_DWI_TR)
    _write_text(base.with_suffix(".bval"), " ".join(str(b) for b in bvals) + "\n")
    rows = (" ".join(f"{v:.6f}" if v else "0" for v in row) for row in _bvecs(bvals))
    _write_text(base.with_suffix(".bvec"), "\n".join(rows) + "\n")
    _write_json(base.with_suffix(".json"), _sidecar("epb0p2", grid))


def _write_bold(
    root: Path, subject: _Subject, session: str, task: str, rng: np.random.Generator
) -> None:
    image, grid = _simulate_bold(subject, rng)
    stem = _stem(
        subject.label, session, ("task", task), ("acq", "epfid2"), ("dir", "AP"), ("run", 1)
    )
    base = root / f"sub-{subject.label}" / f"ses-{session}" / "func" / f"{stem}_bold"
    _write_nifti(base.with_suffix(".nii.gz"), image, grid.affine, tr=_BOLD_TR)
    _write_json(
        base.with_suffix(".json"),
        {"TaskName": task, **_sidecar("epfid2", grid)},
    )


def _write_session(
    root: Path,
    subject: _Subject,
    session: str,
    plan: _SessionPlan,
    rng: np.random.Generator,
    dwi_fov_mm: float | None = None,
) -> None:
    _write_anat(root, subject, session, plan, rng)
    if plan.bvals is not None:
        _write_dwi(root, subject, session, plan.bvals, rng, dwi_fov_mm)
    if plan.task is not None:
        _write_bold(root, subject, session, plan.task, rng)


# ------------------------------------------------------------------- subjects


def _make_lesion(rng: np.random.Generator, index: int) -> _Lesion:
    center = np.asarray(_LESION_CENTERS_MM[index % len(_LESION_CENTERS_MM)])
    return _Lesion(
        center=center + rng.uniform(-3.0, 3.0, size=3),
        axes=_rotation(np.deg2rad(rng.uniform(-20.0, 20.0, size=3))),
        radii=np.asarray(_LESION_RADII_MM) * rng.uniform(0.9, 1.15, size=3),
        waves=rng.normal(0.0, 2 * np.pi / 25.0, size=(4, 3)),
        phases=rng.uniform(0.0, 2 * np.pi, size=4),
    )


def _head_transform(rng: np.random.Generator) -> np.ndarray:
    """Small affine from a subject's head to the template: scale, rotation, shift."""
    transform = np.eye(4)
    scale = np.diag(rng.uniform(0.95, 1.05, size=3))
    transform[:3, :3] = _rotation(np.deg2rad(rng.uniform(-3.0, 3.0, size=3))) @ scale
    transform[:3, 3] = rng.uniform(-3.0, 3.0, size=3)
    return transform


def _phenotype(rng: np.random.Generator, index: int, first_session_day: int) -> dict[str, str]:
    """ARC's participants.tsv columns with plausible values (one race is n/a)."""
    aq = round(float(rng.uniform(15.0, 99.0)), 1)
    if aq >= 93.8:
        wab_type = "None"
    elif aq < 25.0:
        wab_type = "Global"
    else:
        wab_type = _WAB_TYPES[int(rng.integers(len(_WAB_TYPES)))]
    return {
        "sex": "M" if rng.random() < 0.6 else "F",
        "age_at_stroke": str(int(rng.integers(35, 80))),
        "race": "n/a" if index == 1 else ("w" if rng.random() < 0.8 else "b"),
        "wab_days": str(first_session_day + int(rng.integers(0, 15))),
        "wab_aq": f"{aq:.1f}",
        "wab_type": wab_type,
    }


def _make_subject(seed: int, index: int, n_subjects: int) -> tuple[_Subject, np.random.Generator]:
    """Plan subject ``index``; return it with the generator for its images."""
    rng = np.random.default_rng([seed, index])
    plans = _ROLES[index % len(_ROLES)]
    is_last = index == n_subjects - 1
    if is_last:  # the last subject has no DWI, hence nothing to segment
        plans = tuple(dataclasses.replace(p, bvals=None, lesion_mask=False) for p in plans)
    days = [int(rng.integers(150, 2500))]
    for _ in plans[1:]:
        days.append(days[-1] + int(rng.integers(30, 400)))
    return _Subject(
        label=f"M{9001 + index}",
        to_template=_head_transform(rng),
        lesion=None if is_last else _make_lesion(rng, index),
        sessions=tuple((str(day), plan) for day, plan in zip(days, plans, strict=True)),
        phenotype=_phenotype(rng, index, days[0]),
    ), rng


# ---------------------------------------------------------------- top level


_README = """\
# bids2hub demo (synthetic ARC-like)

A small synthetic dataset that mimics the layout of the Aphasia Recovery
Cohort (ARC, OpenNeuro ds004884): subjects `sub-M9001`..., numeric sessions,
ARC acquisition labels (`acq-tfl3`, `acq-spc3`, `acq-tse3`, `acq-tir2`,
`acq-epb0p2`, `acq-epfid2`), several runs per session, and lesion masks named
and placed like ARC's in `derivatives/lesion_masks`, on the grid of the T2w
they were drawn on.

No data in this dataset come from a person. All images are simulated from the
MNI152 2009a symmetric template (ICBM 2009a nonlinear symmetric; grey/white
matter probability maps as shipped with nilearn), resampled to coarse grids
(4 mm anatomy, 3 mm DWI, 6 mm BOLD) after a small random per-subject affine.
T1w, T2w, FLAIR, DWI and BOLD contrasts are tissue-fraction mixtures with
Rician noise. Every subject except the last has a left-hemisphere infarct with
a low apparent diffusion coefficient (bright on b=1000); the last subject has
no DWI. Participant phenotypes are random but plausible.

Generated by `bids2hub.demo.data.write_demo_dataset`; the same seed gives
byte-identical files.

Template copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging
Centre, Montreal Neurological Institute, McGill University; see
https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009 for its terms.
"""

_CHANGES = """\
1.0.0 2025-01-01
  - Initial synthetic release generated by bids2hub.
"""

_PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Unique participant identifier"},
    "sex": {"Description": "Sex of the participant", "Levels": {"M": "male", "F": "female"}},
    "age_at_stroke": {
        "Description": "Age of the participant at the time of the stroke",
        "Units": "years",
    },
    "race": {
        "Description": "Self-reported race",
        "Levels": {"w": "white", "b": "black or African American"},
    },
    "wab_days": {
        "Description": "Days between the stroke and the Western Aphasia Battery assessment",
        "Units": "days",
    },
    "wab_aq": {
        "Description": "Western Aphasia Battery aphasia quotient (0-100, higher is milder aphasia)"
    },
    "wab_type": {
        "Description": "Aphasia classification from the Western Aphasia Battery",
        "Levels": {
            "Anomic": "anomic aphasia",
            "Broca": "Broca's aphasia",
            "Conduction": "conduction aphasia",
            "Global": "global aphasia",
            "TranscorticalMotor": "transcortical motor aphasia",
            "Wernicke": "Wernicke's aphasia",
            "None": "aphasia quotient above the cut-off (93.8)",
        },
    },
}

_PARTICIPANT_COLUMNS = ("sex", "age_at_stroke", "race", "wab_days", "wab_aq", "wab_type")


def _write_top_level(root: Path, subjects: Sequence[_Subject], seed: int) -> None:
    _write_json(
        root / "dataset_description.json",
        {
            "Name": "bids2hub demo (synthetic ARC-like)",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bids2hub contributors"],
            "GeneratedBy": [
                {
                    "Name": "bids2hub",
                    "Description": f"bids2hub.demo.data.write_demo_dataset(n_subjects={len(subjects)}, "
                    f"seed={seed}); synthetic images from the MNI152 2009a template",
                }
            ],
            "SourceDatasets": [
                {"URL": "https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009"}
            ],
            "ReferencesAndLinks": [
                "https://openneuro.org/datasets/ds004884",
                "https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009",
            ],
        },
    )
    _write_text(root / "README", _README)
    _write_text(root / "CHANGES", _CHANGES)
    _write_tsv(
        root / "participants.tsv",
        ("participant_id", *_PARTICIPANT_COLUMNS),
        [(f"sub-{s.label}", *(s.phenotype[c] for c in _PARTICIPANT_COLUMNS)) for s in subjects],
    )
    _write_json(root / "participants.json", _PARTICIPANTS_JSON)
    _write_json(
        root / "task-naming40_bold.json",
        {
            "TaskName": "naming40",
            "TaskDescription": "Overt naming of pictures interleaved with scrambled images.",
            "Instructions": "Name each picture aloud; stay quiet for scrambled images.",
        },
    )
    _write_tsv(
        root / "task-naming40_events.tsv", ("onset", "duration", "trial_type"), _NAMING40_EVENTS
    )
    _write_json(
        root / "task-naming40_events.json",
        {
            "trial_type": {
                "Description": "Stimulus shown",
                "Levels": {
                    "picture": "line drawing to name aloud",
                    "scrambled": "scrambled drawing, no response",
                },
            },
            "StimulusPresentation": {"SoftwareName": "n/a (synthetic events)"},
        },
    )
    _write_json(
        root / "task-rest_bold.json",
        {
            "TaskName": "rest",
            "TaskDescription": "Eyes open resting state.",
            "Instructions": "Keep your eyes open and do not think of anything in particular.",
        },
    )
    if any(plan.lesion_mask for s in subjects for _, plan in s.sessions):
        _write_json(
            root / "derivatives" / "lesion_masks" / "dataset_description.json",
            {
                "Name": "bids2hub demo lesion masks",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [
                    {
                        "Name": "bids2hub",
                        "Description": "Ground truth of the simulated infarcts (ARC's masks "
                        "are drawn manually)",
                    }
                ],
                "DatasetLinks": {"raw": "../../"},
            },
        )


def write_demo_dataset(
    out_dir: Path, n_subjects: int = 4, seed: int = 0, dwi_fov_mm: float | None = None
) -> Path:
    """Write a small realistic BIDS dataset into ``out_dir``.

    Parameters
    ----------
    out_dir
        Destination; created if absent, and must be empty if present.
    n_subjects
        Number of subjects (``sub-M9001`` ...). Subjects 1 and 3 (and every
        fourth after them) have two sessions; the last subject has no DWI and
        no infarct, every other subject has a lesion mask.
    seed
        Seed of every random choice; the same seed gives byte-identical files.
    dwi_fov_mm
        In-plane field of view of the DWI (3 mm voxels); None: 150 x 186 mm. 256 or
        more is the variant whose grid wraps DeepISLES' uint8 1 mm grid (SEALS).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        ``n_subjects`` is smaller than 1.
    FileExistsError
        ``out_dir`` exists and is not an empty directory.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    subjects = []
    for index in range(n_subjects):
        subject, rng = _make_subject(seed, index, n_subjects)
        for session, plan in subject.sessions:
            _write_session(out_dir, subject, session, plan, rng, dwi_fov_mm)
        subjects.append(subject)
    _write_top_level(out_dir, subjects, seed)
    return out_dir

"""Lesion masks: the CPU threshold segmenter, the common output check, the derivative dataset.

Two backends write a mask per subject: DeepISLES in its container
(:mod:`bids2hub.segment.deepisles`) and :func:`segment_threshold`, a real CPU
segmenter for the demo and CI. Whatever wrote it, :func:`check_mask` decides
whether the result is a usable mask on the DWI's grid, and :func:`write_mask`
stores it (uint8, the DWI's affine, atomically) in the BIDS derivatives
dataset ``hub/derivatives/deepisles``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bids2hub import __version__
from bids2hub.config import schema_defaults
from bids2hub.errors import SegmentationError
from bids2hub.fsutil import atomic_path, write_if_changed
from bids2hub.layout import DERIVATIVE as DERIVATIVE  # re-exported: the stage's layout
from bids2hub.layout import mask_relpath as mask_relpath

#: Acute infarcts have ADC below about 620e-6 mm^2/s (e.g. RAPID's threshold): the
#: schema's default of ``segment.adc_threshold``.
ADC_THRESHOLD: float = schema_defaults("segment", "adc_threshold")
#: Connected components smaller than this (mL) are dropped (``segment.min_lesion_ml``).
MIN_LESION_ML: float = schema_defaults("segment", "min_lesion_ml")
#: DeepISLES's options when not given (``segment.deepisles.fast``, ``skull_strip``).
_DEEPISLES = schema_defaults("segment", "deepisles")
BACKENDS = ("deepisles", "threshold")


# ------------------------------------------------------------------ threshold


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D array (maximises the between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2.0
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * centers)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(centers[int(np.argmax(between))])


#: Iterations of the brain mask's morphological closing.
_CLOSING = 2


def brain_mask(trace: np.ndarray) -> np.ndarray:
    """Brain mask of a b~1000 trace: Otsu on the signal, largest component, holes filled,
    then one erosion (brain-edge voxels sit on the noise floor, where the ADC is biased low).

    The closing runs on a zero-padded copy and the erosion treats outside the volume
    as brain: real DWI often has brain in its first and last slice, which a closing
    or an erosion at the volume's border would drop.
    """
    from scipy import ndimage

    positive = trace[trace > 0]
    if positive.size == 0:
        return np.zeros(trace.shape, bool)
    mask = trace > otsu_threshold(positive)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    pad = _CLOSING + 1
    padded = ndimage.binary_closing(np.pad(mask, pad), iterations=_CLOSING)
    mask = padded[pad:-pad, pad:-pad, pad:-pad]
    mask = ndimage.binary_fill_holes(mask)
    return ndimage.binary_erosion(mask, border_value=1)


def threshold_lesion(
    trace: np.ndarray,
    adc: np.ndarray,
    voxel_ml: float,
    *,
    adc_threshold: float = ADC_THRESHOLD,
    min_lesion_ml: float = MIN_LESION_ML,
) -> np.ndarray:
    """Lesion mask: ADC below ``adc_threshold`` inside the brain, DWI not hypointense,
    components smaller than ``min_lesion_ml`` removed.

    The trace condition (at least the brain's median trace) keeps out voxels
    with a low ADC from noise (CSF partial volume, the noise floor): an acute
    infarct is bright on DWI and dark on ADC.
    """
    from scipy import ndimage

    brain = brain_mask(trace)
    if not brain.any():
        return np.zeros(trace.shape, np.uint8)
    bright = trace >= np.median(trace[brain])
    lesion = brain & bright & (adc > 0) & (adc < adc_threshold)
    labels, n = ndimage.label(lesion)
    if n:
        sizes = ndimage.sum_labels(lesion, labels, index=np.arange(1, n + 1)) * voxel_ml
        keep = np.concatenate([[False], sizes >= min_lesion_ml])
        lesion = keep[labels]
    return lesion.astype(np.uint8)


def segment_threshold(
    dwi: Path,
    adc: Path,
    flair: Path | None,
    out: Path,
    *,
    adc_threshold: float = ADC_THRESHOLD,
    min_lesion_ml: float = MIN_LESION_ML,
) -> None:
    """The CPU backend: write a binary uint8 lesion mask on the DWI grid to ``out``, atomically.

    Parameters
    ----------
    dwi, adc
        3D b~1000 trace and ADC (mm^2/s) on one grid, as :func:`bids2hub.segment.plan.prepare_dwi`
        writes them.
    flair
        Unused (accepted so that both backends share one signature).
    out
        Destination ``.nii.gz``.
    """
    from bids2hub.segment.prepare import read_image

    del flair
    ref, trace = read_image(Path(dwi), str(dwi), np.float32)
    adc_img, adc_data = read_image(Path(adc), str(adc), np.float32)
    if trace.shape != adc_data.shape or not np.allclose(ref.affine, adc_img.affine, atol=1e-4):
        raise SegmentationError(f"{adc}: not on the grid of {dwi}")
    voxel_ml = float(np.prod(ref.header.get_zooms()[:3])) / 1000.0
    mask = threshold_lesion(
        trace, adc_data, voxel_ml, adc_threshold=adc_threshold, min_lesion_ml=min_lesion_ml
    )
    write_mask(mask, ref, Path(out))


# ------------------------------------------------------------ output checks


def check_mask(mask: Path, reference: Path) -> np.ndarray:
    """Check a segmentation result and return it as uint8 0/1.

    Parameters
    ----------
    mask
        What the backend wrote.
    reference
        The prepared DWI (trace) it must share a grid with.

    Raises
    ------
    SegmentationError
        Naming ``mask``: missing, empty file, unreadable, not 3D, not binary,
        or not on the reference grid (shape or affine).
    """
    import nibabel as nib

    mask = Path(mask)
    if not mask.is_file():
        raise SegmentationError(f"{mask}: the segmentation wrote no mask")
    if mask.stat().st_size == 0:
        raise SegmentationError(f"{mask}: the mask file is empty (0 bytes)")
    try:
        img = nib.load(mask)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises several unrelated types
        raise SegmentationError(f"{mask}: not a readable NIfTI image ({exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise SegmentationError(f"{mask}: expected a 3D mask, got shape {data.shape}")
    values = np.unique(data)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:5])
        raise SegmentationError(f"{mask}: not a binary mask (values {shown}...)")
    ref = nib.load(reference)
    if data.shape != tuple(ref.shape[:3]):
        raise SegmentationError(
            f"{mask}: shape {data.shape} differs from the DWI {tuple(ref.shape[:3])} ({reference})"
        )
    if not np.allclose(img.affine, ref.affine, atol=1e-3):
        raise SegmentationError(f"{mask}: affine differs from the DWI's ({reference})")
    return data.astype(np.uint8)


def write_mask(mask: np.ndarray, ref: Any, dest: Path) -> None:
    """Write a uint8 mask with the qform/sform of nibabel image ``ref``, atomically.

    Deterministic bytes (gzip mtime 0): the same mask gives the same file.
    """
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), ref.affine)
    img.set_qform(ref.get_qform(), code=int(ref.header["qform_code"]) or 1)
    img.set_sform(ref.get_sform(), code=int(ref.header["sform_code"]) or 1)
    img.header.set_xyzt_units(ref.header.get_xyzt_units()[0])
    img.header.set_data_dtype(np.uint8)
    with atomic_path(Path(dest)) as tmp:
        tmp.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


def segment_subject(
    backend: str,
    dwi: Path,
    adc: Path,
    flair: Path | None,
    out: Path,
    *,
    image: Path | None = None,
    fast: bool = _DEEPISLES["fast"],
    skull_strip: bool = _DEEPISLES["skull_strip"],
    brain_extract: bool = _DEEPISLES["brain_extract"],
    log: TextIO | None = None,
    threshold_options: dict[str, float] | None = None,
    run_deepisles: Callable[..., None] | None = None,
    scratch_dir: Path | None = None,
) -> np.ndarray:
    """Run a backend, check its result and write the derivative mask to ``out``.

    The backend writes into a scratch folder under ``scratch_dir`` (the
    subject's work folder in the workflow; next to ``out`` when not given);
    only a mask that passes :func:`check_mask` is renamed onto ``out``, so a
    failure leaves nothing in the derivatives dataset. Scratch folders that a
    killed run of the same subject left behind are removed first.

    Raises
    ------
    SegmentationError
        The backend failed or its mask is unusable.
    """
    import nibabel as nib

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch_dir = Path(scratch_dir) if scratch_dir is not None else out.parent
    scratch_dir.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.scratch-"
    for stale in scratch_dir.glob(f"{prefix}*"):  # left by a SIGKILLed run of this subject
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_dir))
    try:
        raw = scratch / "lesion_msk.nii.gz"
        if backend == "threshold":
            segment_threshold(dwi, adc, flair, raw, **(threshold_options or {}))
        elif backend == "deepisles":
            if image is None:
                raise SegmentationError("backend deepisles needs the container image")
            if run_deepisles is None:
                from bids2hub.segment.deepisles import run_deepisles  # the container stage's module
            run_deepisles(
                image,
                dwi,
                adc,
                flair,
                raw,
                fast=fast,
                skull_strip=skull_strip,
                brain_extract=brain_extract,
                log=log,
            )
        else:
            raise SegmentationError(f"unknown segmentation backend '{backend}'")
        mask = check_mask(raw, dwi)
        write_mask(mask, nib.load(dwi), out)
        return mask
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)


# ------------------------------------------------------- derivatives dataset


def generated_by(
    backend: str,
    *,
    container_uri: str | None = None,
    version: str | None = None,
    brain_extract: bool = _DEEPISLES["brain_extract"],
    adc_threshold: float = ADC_THRESHOLD,
    min_lesion_ml: float = MIN_LESION_ML,
) -> list[dict[str, Any]]:
    """``GeneratedBy`` of the derivative dataset for a backend (with the threshold
    backend's actual parameters)."""
    if backend == "threshold":
        return [
            {
                "Name": "bids2hub-threshold",
                "Version": __version__,
                "Description": f"ADC below {adc_threshold * 1e6:g}e-6 mm^2/s inside the brain, "
                "hyperintense on the b~1000 trace, components smaller than "
                f"{min_lesion_ml:g} mL removed",
            }
        ]
    if backend == "deepisles":
        if not container_uri:
            raise SegmentationError("backend deepisles: the container reference is unknown")
        from bids2hub.segment.deepisles import generated_by_uri

        entry = generated_by_uri(container_uri)
        if version:
            entry["Version"] = version
        staging = (
            "trace and ADC staged as .nii.gz, cropped to the brain where an axis reaches "
            "256 mm (SEALS' uint8 grid), masks pasted back onto the DWI grid; "
            + (
                "brain-extracted (zero outside the trace's brain mask)"
                if brain_extract
                else "not brain-extracted"
            )
        )
        return [
            entry,
            {
                "Name": "bids2hub",
                "Version": __version__,
                "Description": staging,
                "BrainExtraction": brain_extract,
            },
        ]
    raise SegmentationError(f"unknown segmentation backend '{backend}'")


def description_json(
    backend: str,
    source: dict[str, Any],
    *,
    container_uri: str | None = None,
    version: str | None = None,
    brain_extract: bool = _DEEPISLES["brain_extract"],
    adc_threshold: float = ADC_THRESHOLD,
    min_lesion_ml: float = MIN_LESION_ML,
) -> str:
    """Text of the derivative's ``dataset_description.json`` (deterministic).

    ``source`` is the raw dataset's own description: its name, and its DOI as
    ``SourceDatasets`` when it has one.
    """
    desc: dict[str, Any] = {
        "Name": f"Lesion masks of {source.get('Name') or 'a BIDS dataset'}",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": generated_by(
            backend,
            container_uri=container_uri,
            version=version,
            brain_extract=brain_extract,
            adc_threshold=adc_threshold,
            min_lesion_ml=min_lesion_ml,
        ),
    }
    doi = source.get("DatasetDOI")
    if doi:
        desc["SourceDatasets"] = [{"DOI": doi if doi.startswith("doi:") else f"doi:{doi}"}]
    return json.dumps(desc, indent=2) + "\n"


def write_description(dest: Path, text: str) -> None:
    """Write the description (keeps the mtime when unchanged)."""
    write_if_changed(Path(dest), text)

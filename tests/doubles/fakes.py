"""Fake Apptainer images (SIF files, sandboxes) and a tiny segmenter for the ``singularity`` double.

A fake SIF has the real SIF launch line and magic (bytes 32-41), then one JSON
line with the labels that ``inspect`` reports, and is padded (sparsely) to the
requested size, so a multi-GB "image" costs no disk space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PINNED_URI = (
    "docker://isleschallenge/deepisles"
    "@sha256:52f7ec71c60d50b94710f04b5e4558966060a68068fed463f665880664a783a8"
)
SIF_LAUNCH = b"#!/usr/bin/env run-singularity\n"
SIF_MAGIC = b"SIF_MAGIC\x00"


def docker_labels(uri: str) -> dict[str, Any]:
    """Labels Apptainer writes when it builds a SIF from ``docker://REF``."""
    return {
        "org.label-schema.build-arch": "amd64",
        "org.label-schema.schema-version": "1.0",
        "org.label-schema.usage.singularity.deffile.bootstrap": "docker",
        "org.label-schema.usage.singularity.deffile.from": uri.split("://", 1)[1],
    }


def write_fake_sif(path: Path, *, labels: dict[str, Any], size: int) -> Path:
    """Write a fake SIF of ``size`` bytes (truncated header when smaller than it)."""
    head = SIF_LAUNCH.ljust(32, b"\0") + SIF_MAGIC + json.dumps(labels).encode() + b"\n"
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(head[:size])
        fh.truncate(size)
    return path


def read_fake_sif_labels(path: Path) -> dict[str, Any] | None:
    """Labels of a fake SIF, or None when ``path`` is not one."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head[32:42] != SIF_MAGIC:
        return None
    line = head[42:].split(b"\n", 1)[0]
    try:
        return json.loads(line)
    except ValueError:
        return None


def write_fake_sandbox(path: Path, *, labels: dict[str, Any]) -> Path:
    """Write an Apptainer sandbox folder of DeepISLES (metadata and /app/main.py only)."""
    path = Path(path)
    (path / ".singularity.d").mkdir(parents=True)
    (path / ".singularity.d" / "labels.json").write_text(json.dumps(labels))
    (path / "app").mkdir()
    (path / "app" / "main.py").write_text("# DeepISLES entry point\n")
    return path


def adc_threshold(dwi: Path, adc: Path, flair: Path | None, out: Path) -> None:
    """Minimal stand-in segmenter: ADC < 620e-6 mm^2/s, uint8 on the DWI grid."""
    import nibabel as nib
    import numpy as np

    ref = nib.load(dwi)
    data = np.asarray(nib.load(adc).dataobj, dtype=np.float64)
    mask = ((data > 0) & (data < 620e-6)).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, ref.affine), out)

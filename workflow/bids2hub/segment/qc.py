"""Quality control of the lesion masks: volume, and Dice against an expert mask.

The expert mask (ARC's ``derivatives/lesion_masks``, the demo's true masks)
is drawn on another grid (the reference T2w). It is resampled into the grid
of the predicted mask (the DWI's) through the two affines, nearest
neighbour, and compared there. Only a mask of the same session is compared:
sessions are separate scanner visits, whose coordinates do not line up.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import natural_key

COLUMNS = (
    "subject_id",
    "session_id",
    "backend",
    "volume_ml",
    "expert_volume_ml",
    "dice",
    "abs_volume_diff_ml",
)


def voxel_ml(img: Any) -> float:
    """Volume of one voxel of a nibabel image in mL (from the affine, so any shear counts)."""
    return abs(float(np.linalg.det(img.affine[:3, :3]))) / 1000.0


def resample_nearest(src: Any, ref: Any) -> np.ndarray:
    """Data of nibabel image ``src`` on the grid of ``ref``: nearest neighbour, 0 outside."""
    from scipy import ndimage

    data = np.asanyarray(src.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    vox = np.linalg.inv(src.affine) @ ref.affine  # ref voxel -> src voxel
    return ndimage.affine_transform(
        (data > 0).astype(np.uint8),
        vox[:3, :3],
        vox[:3, 3],
        output_shape=tuple(ref.shape[:3]),
        order=0,
        mode="constant",
        cval=0,
    )


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two binary arrays (1.0 when both are empty)."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@dataclass(frozen=True)
class QcRow:
    """One row of ``qc/segmentation.tsv``."""

    subject: str
    session: str
    backend: str
    volume_ml: float
    expert_volume_ml: float | None = None
    dice: float | None = None

    def cells(self) -> list[str]:
        expert = self.expert_volume_ml
        diff = None if expert is None else abs(self.volume_ml - expert)
        return [
            f"sub-{self.subject}",
            f"ses-{self.session}" if self.session else "",
            self.backend,
            _fmt(self.volume_ml),
            _fmt(expert),
            _fmt(self.dice, 4),
            _fmt(diff),
        ]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def qc_subject(subject: str, session: str, backend: str, mask: Path, expert: Path | None) -> QcRow:
    """Volume of ``mask`` and, with an expert mask, its volume and the Dice in the mask's grid."""
    from bids2hub.segment.prepare import read_image

    img, data = read_image(Path(mask), str(mask))
    data = data > 0
    volume = float(data.sum()) * voxel_ml(img)
    if expert is None:
        return QcRow(subject, session, backend, volume)
    ex_img, ex_data = read_image(Path(expert), str(expert))
    ex_volume = float((ex_data > 0).sum()) * voxel_ml(ex_img)
    on_grid = resample_nearest(ex_img, img)
    return QcRow(subject, session, backend, volume, ex_volume, dice(data, on_grid))


def qc_table(rows: Iterable[QcRow]) -> str:
    """TSV text (interface 3), rows ordered by subject."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: natural_key(r.subject)):
        writer.writerow(row.cells())
    return buf.getvalue()


def write_qc(
    plan: dict[str, Any], root: Path, masks_dir: Path, backend: str, dest: Path
) -> list[QcRow]:
    """QC of every target of the segmentation plan, written to ``dest`` atomically."""
    from bids2hub.segment.run import mask_relpath

    rows = []
    for sub, target in plan["targets"].items():
        expert = target.get("expert_mask")
        rows.append(
            qc_subject(
                sub,
                target["session"],
                backend,
                masks_dir / mask_relpath(sub, target["session"]),
                root / expert if expert else None,
            )
        )
    with atomic_path(dest) as tmp:
        tmp.write_text(qc_table(rows), encoding="utf-8")
    return rows

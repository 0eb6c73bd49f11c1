"""Quality control of the lesion masks: volume, status, and Dice against expert masks.

Each mask gets a ``status``: ``lesion`` or ``empty``. Empty is not always an error
(an acute subject may have no visible lesion; SOOP has 259 subjects without an
expert mask), but it is never silent: DeepISLES exits 0 with an all-zero mask
when SEALS fails (wrong GPU architecture, out of memory, an unwritable folder),
so an empty DeepISLES mask is flagged, as is an empty mask where the expert
drew a lesion. The dataset map's ``expert_masks`` say which expert masks are
compared (SOOP: ``desc-lesionAcute`` first, then ``desc-lesion``; ARC: ``desc-lesion``).

The expert mask (ARC's ``derivatives/lesion_masks``, the demo's true masks)
is drawn on another grid (the reference T2w). It is resampled into the grid
of the predicted mask (the DWI's) through the two affines, nearest
neighbour, and compared there. Only a mask of the same session is compared:
sessions are separate scanner visits, whose coordinates do not line up.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
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
    "status",
    "flag",
    "expert_desc",
    "other_dice",
    "adc_unit",
)
#: The flag of an empty DeepISLES mask (its SEALS failures look exactly like this).
FLAG_EMPTY_DEEPISLES = (
    "empty DeepISLES mask: SEALS failures also give one with exit 0; check the segment_lesion log"
)
FLAG_MISSED = "empty mask, but the expert mask has a lesion"


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
    expert_desc: str = ""
    other_dice: tuple[tuple[str, float], ...] = ()
    adc_unit: str = ""

    @property
    def status(self) -> str:
        """``lesion`` or ``empty``."""
        return "lesion" if self.volume_ml > 0 else "empty"

    @property
    def flag(self) -> str:
        """Why an empty mask needs a look ('' when it does not)."""
        if self.status != "empty":
            return ""
        if self.backend == "deepisles":
            return FLAG_EMPTY_DEEPISLES
        if self.expert_volume_ml:
            return FLAG_MISSED
        return ""

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
            self.status,
            self.flag,
            self.expert_desc if expert is not None else "",
            " ".join(f"{d}={v:.4f}" for d, v in self.other_dice),
            self.adc_unit,
        ]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def qc_subject(
    subject: str,
    session: str,
    backend: str,
    mask: Path,
    expert: Path | None,
    *,
    expert_desc: str = "lesion",
    others: dict[str, Path] | None = None,
    adc_unit: str = "",
) -> QcRow:
    """Volume of ``mask`` and, with an expert mask, its volume and the Dice in the mask's grid.

    ``others`` are further expert masks (desc -> file) whose Dice is listed too.
    """
    from bids2hub.segment.prepare import read_image

    img, data = read_image(Path(mask), str(mask))
    data = data > 0
    volume = float(data.sum()) * voxel_ml(img)
    other = tuple(
        (desc, _dice_with(img, data, path)[1]) for desc, path in sorted((others or {}).items())
    )
    if expert is None:
        return QcRow(subject, session, backend, volume, other_dice=other, adc_unit=adc_unit)
    ex_volume, score = _dice_with(img, data, expert)
    return QcRow(subject, session, backend, volume, ex_volume, score, expert_desc, other, adc_unit)


def _dice_with(img: Any, data: np.ndarray, expert: Path) -> tuple[float, float]:
    """(volume in mL, Dice against ``data`` in its grid) of an expert mask."""
    from bids2hub.segment.prepare import read_image

    ex_img, ex_data = read_image(Path(expert), str(expert))
    ex_volume = float((ex_data > 0).sum()) * voxel_ml(ex_img)
    return ex_volume, dice(data, resample_nearest(ex_img, img))


def summarize_qc(lines: Sequence[dict[str, str]]) -> dict[str, Any]:
    """What a reader of the card or paper needs of the QC table (rows as read from the TSV).

    Returns
    -------
    dict
        ``n`` masks, ``empty``, ``flagged``, and per expert ``desc`` compared
        (the primary and the others): ``n`` compared, Dice ``median``, ``q1``, ``q3``.
    """
    per_desc: dict[str, list[float]] = {}
    for line in lines:
        if line.get("dice"):
            per_desc.setdefault(line.get("expert_desc") or "lesion", []).append(float(line["dice"]))
        for item in (line.get("other_dice") or "").split():
            desc, _, value = item.partition("=")
            per_desc.setdefault(desc, []).append(float(value))
    agreement = {}
    for desc, values in per_desc.items():
        q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
        agreement[desc] = {"n": len(values), "median": median, "q1": q1, "q3": q3}
    return {
        "n": len(lines),
        "empty": sum(line.get("status") == "empty" for line in lines),
        "flagged": sum(bool(line.get("flag")) for line in lines),
        "agreement": agreement,
    }


def qc_table(rows: Iterable[QcRow]) -> str:
    """TSV text of ``qc/segmentation.tsv``, rows ordered by subject."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: natural_key(r.subject)):
        writer.writerow(row.cells())
    return buf.getvalue()


def write_qc(
    plan: dict[str, Any],
    root: Path,
    masks_dir: Path,
    backend: str,
    dest: Path,
    prepared: dict[str, Path] | None = None,
) -> list[QcRow]:
    """QC of every target of the segmentation plan, written to ``dest`` atomically.

    ``prepared`` maps a subject to its ``prepared.json`` (for the ADC unit it recorded).
    """
    import json

    from bids2hub.segment.run import mask_relpath

    rows = []
    for sub, target in plan["targets"].items():
        expert = target.get("expert_mask")
        desc = target.get("expert_desc") or "lesion"
        others = {d: root / p for d, p in (target.get("expert_masks") or {}).items() if p != expert}
        unit = ""
        info = (prepared or {}).get(sub)
        if info is not None and info.is_file():
            unit = str(json.loads(info.read_text(encoding="utf-8")).get("adc_unit") or "")
        rows.append(
            qc_subject(
                sub,
                target["session"],
                backend,
                masks_dir / mask_relpath(sub, target["session"]),
                root / expert if expert else None,
                expert_desc=desc,
                others=others,
                adc_unit=unit,
            )
        )
    with atomic_path(dest) as tmp:
        tmp.write_text(qc_table(rows), encoding="utf-8")
    return rows

"""The lesion masks as one parquet table, ``{out_dir}/hub/masks/masks.parquet``.

One row per segmented session: ``subject_id``, ``session_id``, ``lesion_mask``
(the mask's ``.nii.gz`` bytes, decoded as ``Nifti`` by ``datasets``),
``volume_ml``, ``backend`` and ``image_digest`` (the container image digest
for DeepISLES, null for the CPU threshold backend). The masks come from the
BIDS derivative dataset ``hub/derivatives/deepisles/`` (its
``dataset_description.json`` names the generator); which sessions have one
comes from the segmentation plan ``index/segmentation.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bids2hub.errors import BidsError, SegmentationError
from bids2hub.fsutil import atomic_path
from bids2hub.layout import TABLE as TABLE  # re-exported
from bids2hub.layout import hub_mask_relpath
from bids2hub.layout import mask_relpath as in_derivative
from bids2hub.nifti import check_nifti

NIFTI_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
SCHEMA = pa.schema(
    [
        pa.field("subject_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("lesion_mask", NIFTI_TYPE),
        pa.field("volume_ml", pa.float64()),
        pa.field("backend", pa.string()),
        pa.field("image_digest", pa.string()),
    ]
)
FEATURES: dict[str, Any] = {
    "subject_id": {"dtype": "string", "_type": "Value"},
    "session_id": {"dtype": "string", "_type": "Value"},
    "lesion_mask": {"_type": "Nifti"},
    "volume_ml": {"dtype": "float64", "_type": "Value"},
    "backend": {"dtype": "string", "_type": "Value"},
    "image_digest": {"dtype": "string", "_type": "Value"},
}
DESCRIPTIONS = {
    "subject_id": "subject label, `sub-<label>`",
    "session_id": "session label, `ses-<label>` (null without sessions)",
    "lesion_mask": "binary lesion mask on the DWI grid (`.nii.gz` bytes, decoded as Nifti)",
    "volume_ml": "lesion volume in millilitres (mask voxels x voxel volume)",
    "backend": "segmentation backend (`deepisles` or `threshold`)",
    "image_digest": "digest of the DeepISLES container image (null for `threshold`)",
}


def mask_relpath(sub: str, ses: str) -> str:
    """Path of a mask relative to ``hub/`` (the Hub repository), labels without prefixes."""
    return hub_mask_relpath(sub, ses)


def planned_masks(plan_path: Path) -> list[tuple[str, str]]:
    """(subject, session) of every segmentation target of ``index/segmentation.json``.

    The workflow writes the plan whenever it parses the Snakefile, so an absent
    plan is an error, not "no masks".
    """
    try:
        plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegmentationError(
            f"{plan_path}: segmentation plan not found (the workflow writes it when it starts)"
        ) from None
    except ValueError as exc:
        raise SegmentationError(f"{plan_path}: not valid JSON ({exc})") from None
    targets = plan.get("targets", {})
    return sorted((sub, (t or {}).get("session") or "") for sub, t in targets.items())


@dataclass(frozen=True)
class Generator:
    """Who made the masks, from the derivative's dataset_description.json."""

    name: str
    version: str
    backend: str
    container_uri: str | None
    image_digest: str | None
    #: ``GeneratedBy[0].Description``: how the masks were made (the threshold backend's
    #: parameters as they were set), empty when the description has none.
    description: str = ""


def read_generator(description: Path) -> Generator:
    """Read ``GeneratedBy[0]`` of the masks' derivative dataset (its dataset_description.json)."""
    try:
        desc = json.loads(Path(description).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegmentationError(f"{description}: missing") from None
    except ValueError as exc:
        raise SegmentationError(f"{description}: not valid JSON ({exc})") from None
    gen = (desc.get("GeneratedBy") or [{}])[0]
    name = gen.get("Name") or ""
    if not name:
        raise SegmentationError(f"{description}: GeneratedBy[0].Name is missing")
    uri = (gen.get("Container") or {}).get("URI")
    match = re.search(r"@(sha256:[0-9a-f]{64})", uri or "")
    backend = "deepisles" if name.lower() == "deepisles" else name.lower().removeprefix("bids2hub-")
    return Generator(
        name,
        str(gen.get("Version") or ""),
        backend,
        uri,
        match and match.group(1),
        str(gen.get("Description") or ""),
    )


def mask_volume_ml(data: bytes, rel: str) -> float:
    """Lesion volume of a mask in ml: voxels > 0 times the voxel volume (mm^3 / 1000)."""
    import nibabel as nib
    import numpy as np

    try:
        img = nib.Nifti1Image.from_bytes(_gunzip(data, rel))
    except Exception as exc:
        raise SegmentationError(f"{rel}: not a readable NIfTI mask ({exc})") from None
    voxel = float(np.prod(img.header.get_zooms()[:3]))
    return round(int(np.count_nonzero(np.asanyarray(img.dataobj))) * voxel / 1000.0, 6)


def _gunzip(data: bytes, rel: str) -> bytes:
    import gzip

    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise SegmentationError(f"{rel}: corrupt gzip ({exc})") from None


def build_masks_table(
    masks_dir: Path, sessions: list[tuple[str, str]], description: Path, dest: Path
) -> list[dict[str, Any]]:
    """Write the masks table of ``sessions`` (labels without prefixes) to ``dest``.

    Returns the rows without the mask bytes (for logging). Deterministic bytes:
    rows in subject/session order, fixed writer options, no timestamps.

    Raises
    ------
    SegmentationError
        A planned mask is missing or unreadable, or the description is unusable.
    """
    gen = read_generator(description)
    rows: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    for sub, ses in sorted(sessions):
        rel = mask_relpath(sub, ses)
        path = Path(masks_dir) / in_derivative(sub, ses)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SegmentationError(f"{path}: planned lesion mask is missing") from None
        try:
            check_nifti(memoryview(data), rel)
        except BidsError as exc:
            raise SegmentationError(str(exc)) from None
        row = {
            "subject_id": f"sub-{sub}",
            "session_id": f"ses-{ses}" if ses else None,
            "volume_ml": mask_volume_ml(data, rel),
            "backend": gen.backend,
            "image_digest": gen.image_digest,
        }
        rows.append({**row, "path": rel, "sha256": hashlib.sha256(data).hexdigest()})
        cells.append({**row, "lesion_mask": {"bytes": data, "path": path.name}})
    table = pa.Table.from_pylist(cells, schema=SCHEMA)
    meta = {
        "huggingface": json.dumps({"info": {"features": FEATURES}}, sort_keys=True),
        "bids2hub": json.dumps(
            {
                "generator": gen.__dict__,
                "masks": [{k: r[k] for k in ("path", "sha256")} for r in rows],
            },
            sort_keys=True,
        ),
    }
    table = table.replace_schema_metadata(meta)
    with atomic_path(Path(dest)) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="none",
            use_dictionary=False,
            write_statistics=False,
            write_page_index=False,
            store_schema=True,
        )
    return rows

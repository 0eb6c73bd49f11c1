"""Where the segmentation stage puts its masks (no numpy: the Snakefile's parse imports it).

``bids2hub.segment.run`` re-exports both names; every cluster job's parse reads them, so
they live apart from the segmenter and its numpy import.
"""

from __future__ import annotations

from pathlib import Path

#: The masks table, relative to the published ``hub/`` folder.
TABLE = Path("masks") / "masks.parquet"
#: The masks' BIDS derivatives dataset, relative to the published ``hub/`` folder.
DERIVATIVE = Path("derivatives") / "deepisles"


def mask_relpath(sub: str, ses: str) -> str:
    """Path of a subject's mask inside the derivatives dataset (no ses- without sessions)."""
    if ses:
        return f"sub-{sub}/ses-{ses}/dwi/sub-{sub}_ses-{ses}_desc-lesion_mask.nii.gz"
    return f"sub-{sub}/dwi/sub-{sub}_desc-lesion_mask.nii.gz"


#: The source dataset's dataset-level files (dataset_description.json, participants.tsv,
#: README, ...), relative to the published ``hub/`` folder: what ``bids2hub restore`` needs
#: besides the shards.
BIDS_FILES = Path("bids")
#: The ``preview`` configuration's table and the card's thumbnail, relative to ``hub/``.
PREVIEW_TABLE = Path("preview") / "preview.parquet"
PREVIEW_THUMBNAIL = Path("preview") / "thumbnail.png"


def preview_part(out_dir: str | Path, sub: str, shard: str) -> str:
    """One session's preview row, ``work/preview/sub-<label>/<shard>.parquet``."""
    return f"{out_dir}/work/preview/sub-{sub}/{shard}.parquet"

# Helpers of rules/preview.smk: whether the preview stage runs (preview.enabled) and the
# paths of its per-session parts (bids2hub.layout), as input functions.
from bids2hub.layout import PREVIEW_TABLE, PREVIEW_THUMBNAIL, preview_part

PREVIEW_ENABLED = bool(SETUP.config["preview"]["enabled"]) and bool(SETUP.shards)


def preview_targets():
    """hub/preview/preview.parquet and its thumbnail (nothing when disabled)."""
    if not PREVIEW_ENABLED:
        return []
    return [f"{OUT}/hub/{PREVIEW_TABLE}", f"{OUT}/hub/{PREVIEW_THUMBNAIL}"]


def preview_parts(wildcards):
    """Every session's preview row, in shard order."""
    return [
        preview_part(OUT, sub, shard) for shard, (sub, _ses) in SETUP.shards.items()
    ]

"""participants.tsv: per-subject phenotype values for the shard rows."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from bids2hub.errors import BidsError

NA_VALUES = {"n/a", "", "NA", "nan", "NaN"}


def read_participants(path: Path | None) -> dict[str, dict[str, str]]:
    """Read participants.tsv into ``{label: {field: raw value}}`` (label without ``sub-``).

    Missing file -> empty mapping (every phenotype cell becomes null).
    """
    if path is None or not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BidsError(f"{path}: cannot read participants table ({exc})") from None
    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows, start=2):
        pid = (row.get("participant_id") or "").strip()
        if not pid.startswith("sub-"):
            raise BidsError(f"{path}: line {i}: participant_id '{pid}' does not start with 'sub-'")
        out[pid[4:]] = {k: (v or "").strip() for k, v in row.items() if k is not None}
    return out


def participants_fields(tsv: Path | None) -> list[tuple[str, str]]:
    """Field names of participants.tsv (except participant_id) with a dtype.

    A field described with ``Units`` in participants.json is numeric
    (``float32``), everything else is a string.
    """
    if tsv is None or not tsv.is_file():
        return []
    with open(tsv, encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh, delimiter="\t"), [])
    sidecar = tsv.with_suffix(".json")
    described: dict[str, dict] = {}
    if sidecar.is_file():
        try:
            described = json.loads(sidecar.read_text(encoding="utf-8-sig"))
        except ValueError as exc:
            raise BidsError(f"{sidecar}: not valid JSON ({exc})") from None
    return [
        (
            h,
            "float32"
            if isinstance(described.get(h), dict) and "Units" in described[h]
            else "string",
        )
        for h in header
        if h != "participant_id"
    ]


def convert(raw: str | None, dtype: str, where: str) -> str | float | int | None:
    """Convert a participants.tsv cell to ``dtype``; ``n/a`` and empty become None."""
    if raw is None or raw in NA_VALUES:
        return None
    if dtype == "string":
        return raw
    try:
        value = float(raw) if dtype.startswith("float") else int(raw)
    except ValueError:
        raise BidsError(f"{where}: value '{raw}' is not a number ({dtype})") from None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

"""The companion of an image: its ``.bval``, ``.bvec`` or ``.json``, by BIDS inheritance.

One function, :func:`find_companion`, answers "which file is the ``.bval`` of this
DWI image" for every stage that asks (the segmentation plan, validation), from the
index alone (no file system access). By the BIDS inheritance principle a file
beside the image wins; otherwise a file higher up applies when its suffix is the
image's and its entities are a subset of the image's: the subject or session folder
(``sub-1/sub-1_dwi.bval``), then the dataset root (``dwi.bval``, as SOOP, OpenNeuro
ds004889, ships for its scanner-derived trace and ADC). The nearest folder wins,
then the file with the most entities.
"""

from __future__ import annotations

import json

from bids2hub.index.bidsname import split_extension
from bids2hub.index.manifest import FileRecord, Manifest


def name_entities(name: str) -> tuple[dict[str, str], str, str] | None:
    """(entities, suffix, extension) of a BIDS-like name, also one without ``sub-`` (``dwi.bval``).

    None when a token before the suffix is not ``key-value``.
    """
    stem, ext = split_extension(name)
    if not ext:
        return None
    tokens = stem.split("_")
    ents = dict(t.split("-", 1) for t in tokens[:-1] if "-" in t)
    if len(ents) != len(tokens) - 1:
        return None
    return ents, tokens[-1], ext


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _scope_root(rec: FileRecord) -> str:
    return "" if rec.scope == "raw" else rec.scope


def find_companion(manifest: Manifest, rec: FileRecord, extension: str) -> FileRecord | None:
    """The file of ``extension`` (``.bval``, ``.bvec``, ``.json``) that applies to image ``rec``.

    Parameters
    ----------
    manifest
        The indexed dataset (its records are the only files considered).
    rec
        An image record.
    extension
        The companion's extension, with its dot.

    Returns
    -------
    FileRecord or None
        The file beside the image (same name, other extension), else the nearest
        inherited one, else None.
    """
    beside = rec.path[: -len(rec.extension)] + extension
    ents = json.loads(rec.entities)
    folder, root = _folder(rec.path), _scope_root(rec)
    candidates = list(manifest.files_for(rec.sub, rec.ses))
    if rec.ses:
        candidates += manifest.files_for(rec.sub, "")
    if rec.scope == "raw":
        candidates += manifest.top_files()
    best: tuple[int, int, str] | None = None
    found: FileRecord | None = None
    for cand in candidates:
        if cand.scope != rec.scope or not cand.path.endswith(extension):
            continue
        if cand.path == beside:
            return cand
        where = _folder(cand.path)
        if not (folder == where or folder.startswith(where + "/") or where == root):
            continue
        parts = name_entities(cand.name)
        if parts is None or parts[1] != rec.suffix or parts[2] != extension:
            continue
        if any(ents.get(k) != v for k, v in parts[0].items()):
            continue
        # nearest folder (deepest), then most entities, then name (deterministic)
        rank = (-where.count("/") - (1 if where else 0), -len(parts[0]), cand.path)
        if best is None or rank < best:
            best, found = rank, cand
    return found

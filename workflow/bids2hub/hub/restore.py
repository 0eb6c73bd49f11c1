"""Restore a BIDS dataset from the Hub: ``bids2hub restore REPO OUT [--subjects ...]``.

What the Hub carries of the source dataset, and where it comes back from:

* every NIfTI image, JSON sidecar and ``.bval``/``.bvec`` file of a session is in
  its shard ``data/sub-X/sub-X[_ses-Y].parquet``; the shard's key-value metadata
  ``bids2hub`` lists each of them (``sources``: column, path relative to the
  dataset root, size, sha256). An image is its cell's bytes (the cell's ``path``
  is the file's base name), a sidecar its column's text verbatim; a gradient
  file is stored with its surrounding whitespace stripped, which is put back
  as the size and sha256 of the provenance require;
* the dataset-level files (every file at the root of the source dataset:
  ``dataset_description.json``, ``participants.tsv``/``.json``, ``README``,
  inherited sidecars such as ``task-rest_bold.json``) and each derivative
  pipeline's ``dataset_description.json`` are pushed as they are under
  ``bids/`` (:data:`bids2hub.layout.BIDS_FILES`), written beside the shards by
  :func:`copy_dataset_files`.

Every file is written atomically, only after its bytes were checked against the
sha256 of the provenance (shards) or of the Hub's listing (``bids/``). The
restore streams: one shard is downloaded at a time, read one row group (one
session) at a time and deleted, so memory and scratch stay bounded by one
session.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bids2hub.errors import BidsError, HubError
from bids2hub.fsutil import atomic_path
from bids2hub.layout import BIDS_FILES, SHARDS

log = logging.getLogger(__name__)

#: Where the shards are in the repository.
DATA_DIR = SHARDS
# At most this many whitespace bytes are put back around a stripped gradient file.
_MAX_WHITESPACE = 4
_WHITESPACE = (b"\n", b" ", b"\r", b"\t")


# --- push side: the dataset-level files --------------------------------------------------------


def dataset_level_files(bids_dir: Path) -> list[str]:
    """The files of the source dataset the shards do not carry, relative to its root.

    Every regular file at the root (hidden ones left out) and the
    ``dataset_description.json`` of each ``derivatives/<pipeline>/``; sorted.
    One directory listing (plus one per pipeline): cheap enough for every parse.
    """
    root = Path(bids_dir)
    out = [
        e.name
        for e in os.scandir(root)
        if not e.name.startswith(".") and e.is_file(follow_symlinks=True)
    ]
    deriv = root / "derivatives"
    if deriv.is_dir():
        out += [
            f"derivatives/{e.name}/dataset_description.json"
            for e in os.scandir(deriv)
            if e.is_dir() and (Path(e.path) / "dataset_description.json").is_file()
        ]
    return sorted(out)


def copy_dataset_files(sources: Sequence[Path], dests: Sequence[Path]) -> list[Path]:
    """Copy each of ``sources`` byte for byte onto the matching one of ``dests``, atomically.

    Raises
    ------
    BidsError
        A file is missing or unreadable (named).
    """
    if len(sources) != len(dests):
        raise ValueError(f"{len(sources)} sources for {len(dests)} destinations")
    for src, dest in zip(sources, dests, strict=True):
        try:
            with atomic_path(Path(dest)) as tmp:
                shutil.copyfile(src, tmp)
        except FileNotFoundError:
            raise BidsError(f"{src}: missing (a dataset-level file pushed under bids/)") from None
        except OSError as exc:
            raise BidsError(f"{src}: cannot copy ({exc})") from None
    return [Path(d) for d in dests]


# --- reading a shard back into files ------------------------------------------------------------


def _safe_relpath(path: str, where: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts:
        raise BidsError(f"{where}: unsafe path {path!r} in the provenance")
    return rel


def _restore_whitespace(text: str, size: int, sha256: str) -> bytes | None:
    """The bytes of a file stored as ``text.strip()``, found from its size and sha256.

    The stripped bytes are the file's minus at most :data:`_MAX_WHITESPACE`
    whitespace bytes at either end; every such combination of the missing
    length is tried and the one whose sha256 matches returned (None if none).
    """
    core = text.encode("utf-8")
    missing = size - len(core)
    if missing < 0 or missing > _MAX_WHITESPACE:
        return None
    for lead in range(missing + 1):
        for combo in itertools.product(_WHITESPACE, repeat=missing):
            data = b"".join(combo[:lead]) + core + b"".join(combo[lead:])
            if hashlib.sha256(data).hexdigest() == sha256:
                return data
    return None


def _cells(value: Any) -> list[Any]:
    """The non-null cells of a column value (a list column or a single cell)."""
    if value is None:
        return []
    return [v for v in value if v is not None] if isinstance(value, list) else [value]


@dataclass(frozen=True)
class RestoredFile:
    """One file written by the restore."""

    path: str  # relative to the output folder
    size: int
    sha256: str


def _source_bytes(source: dict[str, Any], row: dict[str, Any], shard: str) -> bytes:
    """The bytes of one provenance entry, taken from the shard's row and checked."""
    column, path = source["column"], source["path"]
    if column not in row:
        raise BidsError(f"{shard}: provenance names column '{column}', which the shard lacks")
    name = PurePosixPath(path).name
    found: bytes | None = None
    for cell in _cells(row[column]):
        if isinstance(cell, dict):  # a Nifti cell: {"bytes", "path"}
            if cell.get("path") == name and cell.get("bytes") is not None:
                found = cell["bytes"]
                break
        elif isinstance(cell, str):
            data = cell.encode("utf-8")
            if len(data) == source["size"] and hashlib.sha256(data).hexdigest() == source["sha256"]:
                found = data
                break
            found = found or _restore_whitespace(cell, source["size"], source["sha256"])
    if found is None:
        raise BidsError(f"{shard}: no cell of column '{column}' holds {path}")
    digest = hashlib.sha256(found).hexdigest()
    if len(found) != source["size"] or digest != source["sha256"]:
        raise BidsError(
            f"{shard}: {path} from column '{column}' has sha256 {digest[:12]}..., "
            f"the provenance says {source['sha256'][:12]}...; the shard is corrupt"
        )
    return found


def _provenance(schema: Any, shard: str) -> dict[str, Any]:
    meta = schema.metadata or {}
    try:
        prov = json.loads(meta[b"bids2hub"])
        sources = prov["sources"]
    except (KeyError, ValueError, TypeError):
        raise BidsError(f"{shard}: no bids2hub provenance in the parquet metadata") from None
    if not isinstance(sources, list):
        raise BidsError(f"{shard}: the provenance's sources are not a list")
    return prov


def restore_shard(shard: Path, out_dir: Path, *, name: str | None = None) -> list[RestoredFile]:
    """Write every source file of one shard under ``out_dir`` at its original path.

    Reads one row group at a time (a shard holds one session per row). Each file
    is written atomically after its size and sha256 matched the provenance.

    Raises
    ------
    BidsError
        The shard has no provenance, or a file's bytes do not match it.
    """
    import pyarrow.parquet as pq

    where = name or str(shard)
    pf = pq.ParquetFile(shard)
    sources = _provenance(pf.schema_arrow, where)["sources"]
    written: list[RestoredFile] = []
    for i in range(pf.num_row_groups):
        table = pf.read_row_group(i)
        for row in table.to_pylist():
            for source in sources:
                rel = _safe_relpath(source["path"], where)
                data = _source_bytes(source, row, where)
                with atomic_path(Path(out_dir) / rel) as tmp:
                    tmp.write_bytes(data)
                written.append(RestoredFile(rel.as_posix(), len(data), source["sha256"]))
        del table
    return written


# --- the Hub side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteEntry:
    """A file of the repository with the hash the Hub reports for it."""

    path: str
    size: int
    sha256: str | None  # LFS files
    git_oid: str


def _shard_subject(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == DATA_DIR and parts[2].endswith(".parquet"):
        return parts[1].removeprefix("sub-")
    return None


def plan_restore(
    entries: Sequence[RemoteEntry], subjects: Sequence[str] | None
) -> tuple[list[RemoteEntry], list[RemoteEntry]]:
    """The shards of the chosen subjects and the dataset-level files, in path order.

    Raises
    ------
    HubError
        A chosen subject has no shard, or the repository has no shards at all.
    """
    shards = [e for e in entries if _shard_subject(e.path) is not None]
    if not shards:
        raise HubError(f"no shards under {DATA_DIR}/ in the repository: nothing to restore")
    if subjects:
        wanted = {s.removeprefix("sub-") for s in subjects}
        present = {_shard_subject(e.path) for e in shards}
        missing = sorted(wanted - present)
        if missing:
            raise HubError(
                f"subject(s) {', '.join('sub-' + s for s in missing)} have no shard in the "
                f"repository (it has {len(present)} subjects)"
            )
        shards = [e for e in shards if _shard_subject(e.path) in wanted]
    prefix = BIDS_FILES.as_posix() + "/"
    top = [e for e in entries if e.path.startswith(prefix)]
    return sorted(shards, key=lambda e: e.path), sorted(top, key=lambda e: e.path)


def _check_download(path: Path, entry: RemoteEntry) -> None:
    from bids2hub.fsutil import sha256_file
    from bids2hub.hub.push import git_blob_id

    size = path.stat().st_size
    if entry.sha256 is not None:
        ok = size == entry.size and sha256_file(path) == entry.sha256
    else:
        ok = size == entry.size and git_blob_id(path) == entry.git_oid
    if not ok:
        raise HubError(f"{entry.path}: the downloaded bytes do not match the Hub's hash; rerun")


@dataclass
class RestoreResult:
    """What a restore wrote."""

    head: str
    files: list[RestoredFile]
    shards: int


def _participants_subset(data: bytes, subjects: set[str]) -> bytes:
    """``participants.tsv`` with the header and the rows of ``subjects`` only."""
    lines = data.splitlines(keepends=True)
    keep = lines[:1] + [
        ln for ln in lines[1:] if ln.split(b"\t", 1)[0].strip().decode() in subjects
    ]
    return b"".join(keep)


def _download(api: Any, repo_id: str, head: str, path: str, tmp: Path) -> Path:
    from bids2hub.hub.push import PushOptions, with_retries

    options = PushOptions(repo_id=repo_id)
    return Path(
        with_retries(
            f"downloading {path} from {repo_id}",
            lambda _a: api.hf_hub_download(
                repo_id, path, repo_type="dataset", revision=head, local_dir=tmp
            ),
            options,
        )
    )


def _remote_entries(api: Any, repo_id: str, revision: str) -> tuple[str, list[RemoteEntry]]:
    from huggingface_hub.hf_api import RepoFile

    from bids2hub.hub.push import PushOptions, with_retries

    options = PushOptions(repo_id=repo_id, revision=revision)
    head = with_retries(
        f"reading {repo_id}@{revision}",
        lambda _a: api.dataset_info(repo_id, revision=revision).sha,
        options,
    )
    listing = with_retries(
        f"listing {repo_id}@{head}",
        lambda _a: [
            RemoteEntry(e.path, e.size, e.lfs.sha256 if e.lfs is not None else None, e.blob_id)
            for e in api.list_repo_tree(repo_id, repo_type="dataset", revision=head, recursive=True)
            if isinstance(e, RepoFile)
        ],
        options,
    )
    return head, listing


def restore(
    repo_id: str,
    out_dir: Path,
    *,
    subjects: Sequence[str] | None = None,
    revision: str = "main",
    token: str | None = None,
    endpoint: str | None = None,
) -> RestoreResult:
    """Write the chosen subjects' BIDS files (all subjects by default) from ``repo_id``.

    Parameters
    ----------
    repo_id
        The dataset repository (``owner/name``) a bids2hub push wrote.
    out_dir
        The BIDS root to write (created; files already there are replaced).
    subjects
        Subject labels (with or without ``sub-``); None: every subject. With a
        subset, ``participants.tsv`` keeps the header and those subjects' rows.
    revision
        Branch, tag or commit; the restore reads one commit throughout.
    token, endpoint
        Hub token and endpoint (default ``HF_TOKEN``/cached login, ``HF_ENDPOINT``).

    Raises
    ------
    HubError
        The repository, a subject or a download is missing or wrong.
    BidsError
        A shard's bytes do not match its provenance.
    """
    from huggingface_hub import HfApi

    from bids2hub import __version__

    out_dir = Path(out_dir)
    api = HfApi(
        endpoint=endpoint, token=token, library_name="bids2hub", library_version=__version__
    )
    head, entries = _remote_entries(api, repo_id, revision)
    shards, top = plan_restore(entries, subjects)
    total = sum(e.size for e in shards)
    log.info(
        "%s@%s: %d shard(s), %d bytes, and %d dataset-level file(s) -> %s",
        repo_id,
        head[:12],
        len(shards),
        total,
        len(top),
        out_dir,
    )
    chosen = {f"sub-{_shard_subject(e.path)}" for e in shards}
    files: list[RestoredFile] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=out_dir) as scratch:
        tmp = Path(scratch)
        for entry in top:
            rel = _safe_relpath(entry.path[len(BIDS_FILES.as_posix()) + 1 :], entry.path)
            got = _download(api, repo_id, head, entry.path, tmp)
            _check_download(got, entry)
            data = got.read_bytes()
            if subjects and rel.as_posix() == "participants.tsv":
                data = _participants_subset(data, chosen)
            with atomic_path(out_dir / rel) as dest:
                dest.write_bytes(data)
            files.append(RestoredFile(rel.as_posix(), len(data), hashlib.sha256(data).hexdigest()))
            got.unlink()
        done = 0
        for n, entry in enumerate(shards, 1):
            got = _download(api, repo_id, head, entry.path, tmp)
            _check_download(got, entry)
            files += restore_shard(got, out_dir, name=entry.path)
            got.unlink()  # one shard on disk at a time
            done += entry.size
            log.info("%d/%d shards, %d/%d bytes: %s", n, len(shards), done, total, entry.path)
    return RestoreResult(head, files, len(shards))

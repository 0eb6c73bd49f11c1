"""Index of a BIDS tree: one row per file, cached as ``{out_dir}/index/manifest.parquet``.

The Snakefile is parsed by the main Snakemake process and again by every
cluster job. The main process walks the tree with :func:`os.scandir` (stat
only, no file is opened), compares the listing signature (paths, sizes,
mtimes) with the cached manifest and rewrites the manifest only when a file
was added, removed or changed. Jobs load the cached manifest without walking.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from bids2hub.errors import BidsError
from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import is_valid_label, natural_key, parse_name

MANIFEST_VERSION = "1"
_META_KEY = b"bids2hub.index.manifest"
_IMAGE_EXTENSIONS = (".nii", ".nii.gz")
#: Sessions looked up one row at a time before a cached manifest builds all records
#: (a job asks for one session; the main process for all of them).
_FEW_SESSIONS = 8
#: Folders at the dataset root that never hold data files for shards.
_SKIP_ROOT_DIRS = {"sourcedata", "code", "stimuli", "phenotype"}
_COLUMNS = (
    "path",
    "scope",
    "sub",
    "ses",
    "datatype",
    "suffix",
    "extension",
    "entities",
    "size",
    "mtime_ns",
)


class FileRecord(NamedTuple):
    """One file of the BIDS tree (a named tuple: every job builds one per file).

    Attributes
    ----------
    path
        Path relative to the dataset root, POSIX separators.
    scope
        ``raw`` or ``derivatives/<pipeline>``.
    sub, ses
        Subject and session labels (``ses`` empty when the dataset has none).
    datatype
        ``anat``, ``dwi``, ``func``... (empty for files above the datatype level).
    suffix, extension
        From the file name (``T1w``, ``.nii.gz``).
    entities
        All ``key-value`` entities of the name, as a JSON object string.
    size, mtime_ns
        From ``stat`` (following symlinks); ``size`` is -1 when a symlink
        points at content that is not present (git-annex without ``get``).
    """

    path: str
    scope: str
    sub: str
    ses: str
    datatype: str
    suffix: str
    extension: str
    entities: str
    size: int
    mtime_ns: int

    def entity(self, key: str) -> str:
        """Return the value of entity ``key`` ('' when absent)."""
        return str(json.loads(self.entities).get(key, ""))

    @property
    def name(self) -> str:
        """Base name of the file."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def is_image(self) -> bool:
        """True for NIfTI files."""
        return self.extension in _IMAGE_EXTENSIONS


class Manifest:
    """The indexed BIDS tree and the lookups the Snakefile needs.

    Attributes
    ----------
    root
        Absolute path of the BIDS dataset.
    records
        Every indexed file, sorted by path.
    signature
        sha256 over (path, size, mtime_ns) of every file: changes whenever a
        file is added, removed or modified.

    A manifest read from the cache (:func:`read_manifest`) keeps the parquet table
    and converts a column, or builds records, only when asked: a cluster job needs
    the shard keys and its own session's files, not a record for each of the
    dataset's files (160k at 10k sessions, ~0.5 s to build).
    """

    def __init__(
        self,
        root: Path,
        records: list[FileRecord] | None,
        signature: str,
        *,
        table: Any = None,
    ) -> None:
        if records is None and table is None:
            raise ValueError("a manifest needs records or a table")
        self.root = root
        self.signature = signature
        self._records = records
        self._table = table  # pyarrow.Table with the _COLUMNS, when read from the cache
        self._columns: dict[str, list[Any]] = {}
        self._rows: dict[tuple[str, str], list[int]] | None = None
        self._by_shard: dict[tuple[str, str], list[FileRecord]] = {}
        self._top: dict[str, FileRecord] | None = None

    def __repr__(self) -> str:
        return f"Manifest(root={self.root!r}, signature={self.signature[:12]!r}...)"

    @property
    def records(self) -> list[FileRecord]:
        """Every indexed file, sorted by path (built on first use from the table)."""
        if self._records is None:
            rows = zip(*(self._column(c) for c in _COLUMNS), strict=True)
            self._records = list(map(FileRecord._make, rows))
        return self._records

    def _column(self, name: str) -> list[Any]:
        if name not in self._columns:
            if self._table is not None:
                self._columns[name] = self._table.column(name).to_pylist()
            else:
                self._columns[name] = [getattr(r, name) for r in self.records]
        return self._columns[name]

    def _record(self, row: int) -> FileRecord:
        if self._records is not None:
            return self._records[row]
        cols, table = self._columns, self._table
        return FileRecord._make(
            cols[c][row] if c in cols else table.column(c)[row].as_py() for c in _COLUMNS
        )

    def _group(self) -> dict[tuple[str, str], list[int]]:
        """Row numbers of each (subject, session) and of the top-level files, once."""
        if self._rows is None:
            rows: dict[tuple[str, str], list[int]] = {}
            top: dict[str, int] = {}
            for i, (sub, ses, path) in enumerate(
                zip(self._column("sub"), self._column("ses"), self._column("path"), strict=True)
            ):
                if sub:
                    rows.setdefault((sub, ses), []).append(i)
                elif "/" not in path:
                    top[path] = i
            self._rows = rows
            self._top = {path: self._record(i) for path, i in top.items()}
        return self._rows

    def missing_content(self) -> list[str]:
        """Paths of files whose content is absent (git-annex symlinks not fetched)."""
        return [
            p
            for p, size in zip(self._column("path"), self._column("size"), strict=True)
            if size < 0
        ]

    def shard_keys(self) -> list[tuple[str, str]]:
        """(subject, session) pairs that have raw imaging data, naturally sorted."""
        keys = {
            (sub, ses)
            for scope, sub, ses, ext in zip(
                self._column("scope"),
                self._column("sub"),
                self._column("ses"),
                self._column("extension"),
                strict=True,
            )
            if scope == "raw" and sub and ext in _IMAGE_EXTENSIONS
        }
        return sorted(keys, key=lambda k: (natural_key(k[0]), natural_key(k[1])))

    def files_for(self, sub: str, ses: str) -> list[FileRecord]:
        """All files (raw and derivatives) of one subject/session."""
        key = (sub, ses)
        if key not in self._by_shard:
            if self._records is None and len(self._by_shard) >= _FEW_SESSIONS:
                self.records  # noqa: B018 - the main process asks for every session: build all
            self._by_shard[key] = [self._record(i) for i in self._group().get(key, ())]
        return self._by_shard[key]

    def top_level(self, name: str) -> FileRecord | None:
        """A file at the dataset root (``participants.tsv``), or None."""
        self._group()
        assert self._top is not None
        return self._top.get(name)

    def top_files(self) -> list[FileRecord]:
        """Every file at the dataset root (``participants.tsv``, ``dwi.bval``...), by path."""
        self._group()
        assert self._top is not None
        return [self._top[p] for p in sorted(self._top)]

    def absolute(self, rec: FileRecord) -> Path:
        """Absolute path of a record."""
        return self.root / rec.path


def shard_id(sub: str, ses: str) -> str:
    """File stem of a shard: ``sub-X_ses-Y`` or ``sub-X`` without sessions."""
    return f"sub-{sub}_ses-{ses}" if ses else f"sub-{sub}"


def check_bids_root(root: Path) -> None:
    """Raise :class:`BidsError` unless ``root`` looks like a BIDS dataset."""
    if not root.is_dir():
        raise BidsError(f"bids_dir '{root}' does not exist or is not a folder")
    desc = root / "dataset_description.json"
    if not desc.is_file():
        raise BidsError(
            f"bids_dir '{root}' is not a BIDS dataset: it has no dataset_description.json"
        )
    try:
        json.loads(desc.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BidsError(f"{desc}: not valid JSON ({exc})") from None
    if not any(p.name.startswith("sub-") and p.is_dir() for p in root.iterdir()):
        raise BidsError(f"bids_dir '{root}' is not a BIDS dataset: it has no sub-<label> folders")


def _stat(entry: os.DirEntry[str]) -> tuple[int, int]:
    try:
        st = entry.stat()  # follows symlinks: annex objects
    except FileNotFoundError:
        return -1, 0
    return st.st_size, st.st_mtime_ns


def _walk(top: str, rel: str, skip: set[str]) -> Iterator[tuple[str, int, int]]:
    with os.scandir(top) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        rel_path = f"{rel}{entry.name}"
        if entry.is_dir():
            if entry.path in skip:
                continue
            yield from _walk(entry.path, rel_path + "/", skip)
        else:
            size, mtime = _stat(entry)
            yield rel_path, size, mtime


def bidsignore_patterns(root: Path) -> list[str]:
    """Patterns of the dataset's ``.bidsignore`` (gitignore-like globs), if any."""
    try:
        text = (root / ".bidsignore").read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def is_ignored(rel: str, patterns: list[str]) -> bool:
    """True when ``rel`` matches a ``.bidsignore`` pattern (as the validator reads them).

    A pattern with a slash matches the path from the root (``/`` prefix
    optional), one without matches any path component; a trailing slash
    means a folder and everything below it.
    """
    parts = rel.split("/")
    for pat in patterns:
        folder = pat.endswith("/")
        pat = pat.strip("/")
        if "/" in pat:
            n = pat.count("/") + 1
            if fnmatch.fnmatchcase("/".join(parts[:n]), pat) and (not folder or len(parts) > n):
                return True
        else:
            candidates = parts[:-1] if folder else parts
            if any(fnmatch.fnmatchcase(p, pat) for p in candidates):
                return True
    return False


def list_tree(root: Path, exclude: list[Path] | None = None) -> list[tuple[str, int, int]]:
    """List every relevant file of the tree: (relative path, size, mtime_ns).

    Hidden entries (``.git``, ``.datalad``), ``sourcedata``/``code`` and what
    ``.bidsignore`` lists are skipped, as are the folders in ``exclude`` (an
    output folder inside the dataset).
    """
    skip = {os.path.abspath(p) for p in (exclude or [])}
    skip |= {str(root / d) for d in _SKIP_ROOT_DIRS}
    listing = list(_walk(str(root), "", skip))
    patterns = bidsignore_patterns(root)
    if patterns:
        listing = [item for item in listing if not is_ignored(item[0], patterns)]
    return listing


def signature_of(listing: list[tuple[str, int, int]]) -> str:
    """sha256 over the listing; equal listings give equal signatures."""
    h = hashlib.sha256(MANIFEST_VERSION.encode())
    for path, size, mtime in listing:
        h.update(f"{path}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def _record(path: str, size: int, mtime: int) -> FileRecord | None:
    parts = path.split("/")
    scope = "raw"
    if parts[0] == "derivatives":
        if len(parts) < 3:
            return None
        scope = f"derivatives/{parts[1]}"
        parts = parts[2:]
    name = parts[-1]
    parsed = parse_name(name)
    if parsed is None:
        if scope == "raw" and len(parts) == 1:  # top-level file (participants.tsv ...)
            return FileRecord(path, scope, "", "", "", "", "", "{}", size, mtime)
        return None
    sub = parsed.get("sub")
    ses = parsed.get("ses")
    if not (sub and is_valid_label(sub)) or (ses and not is_valid_label(ses)):
        return None
    if parts[0] != f"sub-{sub}":
        return None
    datatype = parts[-2] if len(parts) >= 3 else ""
    if datatype.startswith(("sub-", "ses-")):
        datatype = ""
    entities = _entities_json(parsed.entities)
    return FileRecord(
        path, scope, sub, ses, datatype, parsed.suffix, parsed.extension, entities, size, mtime
    )


def _entities_json(entities: tuple[tuple[str, str], ...]) -> str:
    """``json.dumps(dict(entities), separators=(",", ":"))``, formatted directly.

    Keys and values of parsed names are ASCII letters, digits and ``+``: nothing to
    escape. A repeated key (the dict keeps the first position, the last value) goes
    through ``json``.
    """
    if len({k for k, _ in entities}) != len(entities):
        return json.dumps(dict(entities), separators=(",", ":"))
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in entities) + "}"


def build_manifest(
    root: Path, listing: list[tuple[str, int, int]], signature: str | None = None
) -> Manifest:
    """Parse every listed file name into a :class:`Manifest` (``signature``: if known)."""
    records = [r for r in (_record(*item) for item in listing) if r is not None]
    records.sort(key=lambda r: r.path)
    return Manifest(root, records, signature or signature_of(listing))


def write_manifest(manifest: Manifest, dest: Path) -> None:
    """Write the manifest as parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {c: [getattr(r, c) for r in manifest.records] for c in _COLUMNS}
    types = {"size": pa.int64(), "mtime_ns": pa.int64()}
    table = pa.table({c: pa.array(v, type=types.get(c, pa.string())) for c, v in columns.items()})
    meta = {
        "version": MANIFEST_VERSION,
        "root": str(manifest.root),
        "signature": manifest.signature,
    }
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_manifest(src: Path) -> Manifest:
    """Load a manifest written by :func:`write_manifest`."""
    import pyarrow.parquet as pq

    # ParquetFile.read, not read_table: it does not import pyarrow.dataset and
    # pandas, which every cluster job would pay for (~0.15 s).
    table = pq.ParquetFile(src).read()
    meta = json.loads(table.schema.metadata[_META_KEY])
    if meta.get("version") != MANIFEST_VERSION:
        raise BidsError(f"{src}: manifest version {meta.get('version')} is not supported")
    return Manifest(Path(meta["root"]), None, meta["signature"], table=table.select(_COLUMNS))


def _cached_signature(src: Path) -> tuple[str, str] | None:
    import pyarrow.parquet as pq

    try:
        meta = json.loads(pq.read_schema(src).metadata[_META_KEY])
    except (OSError, KeyError, ValueError, TypeError):
        return None
    if meta.get("version") != MANIFEST_VERSION:
        return None
    return meta.get("root", ""), meta.get("signature", "")


def load_index(
    root: Path,
    cache: Path,
    *,
    refresh: bool = True,
    exclude: list[Path] | None = None,
) -> tuple[Manifest, bool]:
    """Return the manifest of ``root``, reusing ``cache`` when it is still valid.

    Parameters
    ----------
    root
        BIDS dataset root.
    cache
        ``{out_dir}/index/manifest.parquet``.
    refresh
        True in the main Snakemake process: walk the tree and rebuild the
        cache when anything changed. False in cluster jobs: trust the cache
        the main process wrote (it is rebuilt when missing).
    exclude
        Folders inside ``root`` to leave out (the output folder).

    Returns
    -------
    (Manifest, bool)
        The manifest and whether the cache was (re)written.
    """
    root = root.resolve()
    if not refresh and cache.is_file():
        return read_manifest(cache), False
    check_bids_root(root)
    listing = list_tree(root, exclude)
    signature = signature_of(listing)
    if cache.is_file() and _cached_signature(cache) == (str(root), signature):
        return read_manifest(cache), False
    manifest = build_manifest(root, listing, signature)
    write_manifest(manifest, cache)
    return manifest, True

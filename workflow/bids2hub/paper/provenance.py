"""paper/provenance.json: what produced the outputs, from what, and their hashes.

Everything that depends on when or where the workflow ran (the timestamp,
absolute paths, the index signature, which includes file mtimes, the
container image's local path, the hashes of outputs that embed absolute
paths such as validation/report.json) is in the one field ``run``; everything else is
byte-identical between two runs of the same code on the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bids2hub import __version__
from bids2hub.config import with_defaults
from bids2hub.errors import BidsError
from bids2hub.fsutil import atomic_path, cached_sha256

#: Packages whose versions are recorded (distribution names).
PACKAGES = (
    "snakemake",
    "pyarrow",
    "nibabel",
    "numpy",
    "scipy",
    "datasets",
    "huggingface_hub",
    "spython",
    "nilearn",
    "matplotlib",
    "bids-validator-deno",
    "pyyaml",
    "jsonschema",
)
#: Config keys never written (none holds a secret today; a future one must not leak).
_SECRET = re.compile(r"token|secret|password|passwd|credential", re.I)
#: Config keys that are machine paths (recorded in ``run``, not in ``config``).
PATH_KEYS = ("bids_dir", "out_dir")
SCHEMA_VERSION = 1


def git_commit(path: Path) -> str | None:
    """The commit checked out at ``path`` (None outside a git checkout or without git)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def scrub(value: Any) -> Any:
    """A copy of a config without keys that look like secrets."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not _SECRET.search(str(k))}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def package_versions() -> dict[str, str | None]:
    """Python and the recorded packages' versions (None when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "bids2hub": __version__,
    }
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def listing_hash(manifest: Any) -> str:
    """sha256 over (path, size) of every indexed file: the dataset's file listing.

    Unlike the index signature it leaves mtimes out, so two copies of a dataset
    have the same hash.
    """
    h = hashlib.sha256()
    for rec in sorted(manifest.records, key=lambda r: r.path):
        h.update(f"{rec.path}\0{rec.size}\n".encode())
    return h.hexdigest()


def hash_outputs(
    out_dir: Path, paths: Iterable[Path], cache_path: Path | None = None
) -> dict[str, dict[str, Any]]:
    """``{path relative to out_dir: {size, sha256}}``, sorted.

    With ``cache_path`` a file whose :func:`~bids2hub.fsutil.stat_key` is unchanged since
    the last run is not read again (ARC's shards are ~273 GB).
    """
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8"))
        except ValueError:
            cache = {}
    out: dict[str, dict[str, Any]] = {}
    fresh: dict[str, Any] = {}
    for path in sorted({Path(p) for p in paths}):
        rel = os.path.relpath(path, out_dir)
        try:
            key, digest = cached_sha256(path, cache.get(rel))
        except OSError as exc:
            raise BidsError(f"{path}: output missing ({exc.strerror})") from None
        fresh[rel] = {"stat": list(key), "sha256": digest}
        out[rel] = {"size": key[0], "sha256": digest}
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_text(json.dumps(fresh, sort_keys=True), encoding="utf-8")
    return dict(sorted(out.items()))


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BidsError(f"{path}: not valid JSON ({exc})") from None


def dataset_identity(description: dict[str, Any] | None, manifest: Any) -> dict[str, Any]:
    """Name, BIDS version, DOI/version and the listing hash of the input dataset."""
    desc = description or {}
    doi = desc.get("DatasetDOI")
    version = None
    if doi:
        match = re.search(r"\.v(\d+(?:\.\d+)*)$", str(doi))
        version = match.group(1) if match else None
    return {
        "Name": desc.get("Name"),
        "BIDSVersion": desc.get("BIDSVersion"),
        "DatasetDOI": doi,
        "version": version,
        "License": desc.get("License"),
        "n_files": len(manifest.records),
        "listing_sha256": listing_hash(manifest),
    }


def container_identity(
    config: dict[str, Any], masks_description: Path | None, receipt: Path | None
) -> dict[str, Any]:
    """What segmented: the DeepISLES image (URI, digest, the pull receipt) or the threshold
    generator, with the masks' ``GeneratedBy``."""
    segment = with_defaults(config, "segment")
    backend = segment["backend"]
    desc = _read_json(masks_description) or {}
    out: dict[str, Any] = {"backend": backend, "GeneratedBy": desc.get("GeneratedBy")}
    if backend == "deepisles":
        uri = segment["deepisles"]["uri"]
        out["uri"] = uri
        out["digest"] = uri.rsplit("@", 1)[-1] if "@" in uri else None
        got = _read_json(receipt)
        out["receipt"] = {k: v for k, v in (got or {}).items() if k != "image"} or None
    else:
        out["digest"] = None
    return out


def build_provenance(
    *,
    config: dict[str, Any],
    manifest: Any,
    out_dir: Path,
    outputs: Iterable[Path],
    git: str | None,
    located: Iterable[Path] = (),
    masks_description: Path | None = None,
    receipt: Path | None = None,
    hash_cache: Path | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The provenance record (see the module docstring for what is where)."""
    out_dir = Path(out_dir)
    description = _read_json(Path(manifest.root) / "dataset_description.json")
    image = (_read_json(receipt) or {}).get("image")
    clean = scrub(config)
    outputs, located = list(outputs), list(located)
    hashes = hash_outputs(out_dir, [*outputs, *located], hash_cache)
    local = {os.path.relpath(p, out_dir) for p in located}
    return {
        "schema_version": SCHEMA_VERSION,
        "pipeline": {"name": "neuroimaging-go-brrrr", "version": __version__, "git_commit": git},
        "config": {k: v for k, v in clean.items() if k not in PATH_KEYS},
        "packages": package_versions(),
        "container": container_identity(config, masks_description, receipt),
        "input_dataset": dataset_identity(description, manifest),
        "outputs": {k: v for k, v in hashes.items() if k not in local},
        "run": {
            "generated_at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "bids_dir": str(Path(manifest.root)),
            "out_dir": str(out_dir.resolve()),
            "index_signature": manifest.signature,
            "container_image": image,
            "outputs_with_paths": {k: v for k, v in hashes.items() if k in local},
        },
    }


def write_provenance(record: dict[str, Any], dest: Path) -> None:
    """Write provenance.json atomically (sorted keys inside each section, 1-space indent)."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")

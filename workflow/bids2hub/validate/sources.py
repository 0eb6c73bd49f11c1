"""Per-session checks of the source files (``validation/sessions/sub-X/<shard>.json``).

Every file of the session is read once: NIfTI files are hashed and fully
decompressed (gzip CRC and length against the header), text files are hashed
(and, when small, hashed once more with surrounding white space removed, the
way companion cells are stored), JSON sidecars and TSV headers are scanned for
DICOM identifying keys. Then DWI images are compared with their ``.bval`` and
``.bvec`` files and lesion masks with the grid of their reference image.

The result is deterministic JSON: paths relative to the dataset root, sorted,
no timestamps. The shard round-trip (:mod:`.roundtrip`) compares the shard's
cells with the hashes recorded here, so it never reads the sources again.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from bids2hub.errors import BidsError, NiftiError
from bids2hub.index.companions import find_companion
from bids2hub.index.manifest import FileRecord, Manifest, shard_id
from bids2hub.nifti import CHUNK, gzip_stream_length, parse_header
from bids2hub.shards.colmap import ColumnMap
from bids2hub.validate import RESULT_VERSION
from bids2hub.validate.model import Finding

#: DICOM attributes that identify a person, a place or a date of care (PS3.15 basic
#: profile, as dcm2niix writes them with ``-ba n``). ``PatientPosition`` (HFS) is not one.
IDENTIFYING_KEYS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "PatientSize",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientNames",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StationName",
    "DeviceSerialNumber",
    "AcquisitionDateTime",
    "AcquisitionDate",
    "ContentDate",
    "SeriesDate",
    "StudyDate",
    "StudyTime",
)
_IDENT_NORMALISED = {re.sub(r"[^a-z0-9]", "", k.lower()): k for k in IDENTIFYING_KEYS}
#: Text files up to this size also get a hash of their stripped text (companion cells).
_SMALL_TEXT = 1 << 20
#: Two affines are the same grid when no element differs by more than this (mm).
AFFINE_ATOL = 1e-3


def finding(check: str, file: str, message: str, **extra: Any) -> Finding:
    """One entry of a ``failures`` or ``warnings`` list."""
    return {"check": check, "file": file, "message": message, **extra}  # type: ignore[typeddict-item]


def identifying_keys(obj: Any) -> list[str]:
    """DICOM identifying keys among the keys of ``obj`` (nested mappings included).

    Keys are matched without regard to case, underscores or dashes
    (``patient_name`` is ``PatientName``). Values are never returned.
    """
    found: set[str] = set()
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                canon = _IDENT_NORMALISED.get(re.sub(r"[^a-z0-9]", "", str(key).lower()))
                if canon:
                    found.add(canon)
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(found)


def tsv_identifying_columns(text: str) -> list[str]:
    """DICOM identifying keys among the header columns of a TSV file."""
    header = text.split("\n", 1)[0].rstrip("\r").split("\t")
    return identifying_keys(dict.fromkeys(header))


def scan_text(path: Path, rel: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Hash a non-image file and scan it for identifying keys.

    Returns
    -------
    (dict, list)
        ``{"sha256", "size"[, "strip_sha256"]}`` and findings: a sidecar that is
        not valid JSON is a hard failure (``check: sidecar``; the shard keeps the
        image and holds null in its sidecar cell), identifying keys are warnings
        (``check: identifying``).
    """
    data = path.read_bytes()
    entry: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    found: list[dict[str, Any]] = []
    text: str | None = None
    if len(data) <= _SMALL_TEXT:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            entry["strip_sha256"] = hashlib.sha256(text.strip().encode("utf-8")).hexdigest()
    keys: list[str] = []
    if rel.endswith(".json"):
        try:
            keys = identifying_keys(json.loads(data))
        except ValueError as exc:
            found.append(
                finding("sidecar", rel, f"{rel}: not valid JSON ({exc}); its shard cell is null")
            )
    elif rel.endswith(".tsv") and text is not None:
        keys = tsv_identifying_columns(text)
    if keys:
        found.append(
            finding(
                "identifying",
                rel,
                f"{rel}: DICOM identifying key(s) {', '.join(keys)}",
                keys=keys,
            )
        )
    return entry, found


def scan_nifti(path: Path, rel: str) -> dict[str, Any]:
    """Read a NIfTI file once: sha256, header sanity, full decompression with CRC.

    Returns
    -------
    dict
        ``{"sha256", "size", "shape", "dtype", "zooms"}``.

    Raises
    ------
    NiftiError
        The header is unusable, the gzip stream is corrupt or truncated, or the
        image data is shorter than the header says. The message names ``rel``.
    """
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        first = fh.read(1 << 16)
        fh.seek(0)

        def chunks() -> Any:
            nonlocal size
            for block in iter(lambda: fh.read(CHUNK), b""):
                h.update(block)
                size += len(block)
                yield block

        stream = chunks()
        try:
            info = parse_header(first, rel)
            if first[:2] == b"\x1f\x8b":
                length = gzip_stream_length(stream, rel)
            else:
                length = 0
                for block in stream:
                    length += len(block)
        finally:
            for _block in stream:  # hash what is left (trailing bytes, or after an error)
                pass
    if length < info.expected_bytes:
        raise NiftiError(f"{rel}: image data truncated ({length} of {info.expected_bytes} bytes)")
    return {
        "sha256": h.hexdigest(),
        "size": size,
        "shape": list(info.shape),
        "dtype": info.dtype,
        "zooms": [round(z, 6) for z in info.zooms],
    }


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def check_gradients(manifest: Manifest, rec: FileRecord, shape: list[int]) -> list[dict[str, Any]]:
    """Failures when a DWI image's volume count differs from its b-values or b-vectors.

    The ``.bval``/``.bvec`` are found by BIDS inheritance
    (:func:`bids2hub.index.companions.find_companion`, as the segmentation plan does).
    """
    root = manifest.root
    nvol = shape[3] if len(shape) > 3 else 1
    out: list[dict[str, Any]] = []
    found = {ext: find_companion(manifest, rec, ext) for ext in (".bval", ".bvec")}
    bval = manifest.absolute(found[".bval"]) if found[".bval"] else None
    bvec = manifest.absolute(found[".bvec"]) if found[".bvec"] else None
    if bval is None:
        out.append(finding("dwi_gradients", rec.path, f"{rec.path}: no .bval file"))
    else:
        try:
            values = [float(v) for v in bval.read_text(encoding="utf-8").split()]
        except (ValueError, UnicodeDecodeError):
            values = None
            out.append(
                finding("dwi_gradients", rec.path, f"{_rel(root, bval)}: not a list of numbers")
            )
        if values is not None and len(values) != nvol:
            out.append(
                finding(
                    "dwi_gradients",
                    rec.path,
                    f"{rec.path}: {nvol} volume(s) but {len(values)} b-value(s) "
                    f"in {_rel(root, bval)}",
                )
            )
    if bvec is None:
        out.append(finding("dwi_gradients", rec.path, f"{rec.path}: no .bvec file"))
    else:
        try:
            text = bvec.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = ""
        rows = [ln.split() for ln in text.splitlines() if ln.strip()]
        lengths = sorted({len(r) for r in rows})
        if len(rows) != 3 or lengths != [nvol]:
            got = f"{len(rows)} row(s) of {'/'.join(map(str, lengths)) or 0} value(s)"
            out.append(
                finding(
                    "dwi_gradients",
                    rec.path,
                    f"{rec.path}: {nvol} volume(s) but {_rel(root, bvec)} has {got} "
                    f"(expected 3 rows of {nvol})",
                )
            )
    return out


def mask_reference(manifest: Manifest, rec: FileRecord) -> FileRecord | None:
    """The raw image a derivative mask was drawn on, or None when it cannot be told.

    Tried in order: the mask's name without ``_desc-<label>_mask`` is a raw
    file of the same folder layout (ARC: ``..._T2w_desc-lesion_mask`` on
    ``..._T2w``); the sidecar's ``SpatialReference`` (ARC: ``bids:raw:sub-.../..._T2w.nii.gz``),
    ``RawSources`` or ``Sources`` names one image;
    ``space-<X>`` names the one image of the session with ``rec-<X>``,
    ``acq-<X>`` or suffix ``<X>`` (ds004889: ``space-TRACE`` on ``rec-TRACE_dwi``).
    """
    by_path = {r.path: r for r in manifest.files_for(rec.sub, rec.ses) if r.scope == "raw"}
    inner = rec.path.split("/", 2)[2] if rec.scope.startswith("derivatives/") else rec.path
    stem = re.sub(r"_desc-[A-Za-z0-9]+_mask$", "", inner[: -len(rec.extension)])
    for ext in (".nii.gz", ".nii"):
        if stem + ext in by_path:
            return by_path[stem + ext]
    sidecar = manifest.root / f"{rec.path[: -len(rec.extension)]}.json"
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    sources = None
    if isinstance(meta, dict):
        sources = meta.get("SpatialReference") or meta.get("RawSources") or meta.get("Sources")
    if isinstance(sources, str):
        sources = [sources]
    hits = [
        by_path.get(s.rsplit(":", 1)[-1].lstrip("/"))  # "bids:raw:sub-1/...", "sub-1/..."
        for s in (sources if isinstance(sources, list) else [])
        if isinstance(s, str)
    ]
    images = [h for h in hits if h is not None and h.is_image]
    if len(images) == 1:
        return images[0]
    space = rec.entity("space")
    if space:
        cands = [
            r
            for r in by_path.values()
            if r.is_image and (space in (r.entity("rec"), r.entity("acq")) or r.suffix == space)
        ]
        if len(cands) == 1:
            return cands[0]
    return None


def check_mask_grid(manifest: Manifest, rec: FileRecord) -> list[dict[str, Any]]:
    """Compare a mask's shape and affine with its reference image.

    A mask whose reference cannot be found is a warning (``mask_reference``);
    a different shape or affine is a failure (``mask_grid``).
    """
    import nibabel as nib

    ref = mask_reference(manifest, rec)
    if ref is None:
        return [
            finding(
                "mask_reference",
                rec.path,
                f"{rec.path}: no reference image found "
                "(by name, SpatialReference, RawSources or space-)",
            )
        ]
    try:
        mask = nib.load(manifest.absolute(rec))
        refimg = nib.load(manifest.absolute(ref))
    except Exception as exc:  # nibabel raises several kinds; integrity already names them
        return [
            finding("mask_grid", rec.path, f"{rec.path}: cannot compare with {ref.path} ({exc})")
        ]
    mshape, rshape = tuple(mask.shape), tuple(refimg.shape)
    out: list[dict[str, Any]] = []
    if mshape[:3] != rshape[:3] or any(d != 1 for d in mshape[3:]):
        out.append(
            finding(
                "mask_grid",
                rec.path,
                f"{rec.path}: shape {mshape} differs from its reference {ref.path} {rshape}",
                reference=ref.path,
            )
        )
    elif not np.allclose(mask.affine, refimg.affine, rtol=0, atol=AFFINE_ATOL):
        diff = float(np.max(np.abs(mask.affine - refimg.affine)))
        out.append(
            finding(
                "mask_grid",
                rec.path,
                f"{rec.path}: affine differs from its reference {ref.path} "
                f"(max difference {diff:.4g} mm)",
                reference=ref.path,
            )
        )
    return out


def session_records(manifest: Manifest, cmap: ColumnMap, sub: str, ses: str) -> list[FileRecord]:
    """The files of a session that its shard job reads (raw and the map's derivative scopes)."""
    scopes = cmap.scopes() | {"raw"}
    return [r for r in manifest.files_for(sub, ses) if r.scope in scopes]


def _is_mask(rec: FileRecord) -> bool:
    return rec.scope != "raw" and rec.is_image and rec.suffix == "mask"


def check_session(manifest: Manifest, cmap: ColumnMap, sub: str, ses: str) -> dict[str, Any]:
    """Check every source file of one session.

    Parameters
    ----------
    manifest
        Index of the dataset.
    cmap
        Column map (selects the derivative scopes that belong to the session).
    sub, ses
        Labels without prefix (``ses`` empty without sessions).

    Returns
    -------
    dict
        ``version``, ``shard``, ``subject``, ``session``; ``files`` (relative
        path -> ``sha256``, ``size`` and, for images, ``shape``/``dtype``/``zooms``,
        for small text files ``strip_sha256``); ``checked`` (how many images,
        DWI images, masks, JSON and TSV files were checked); ``failures`` and
        ``warnings`` (lists of ``{check, file, message}``).
    """
    files: dict[str, dict[str, Any]] = {}
    failures: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    checked = dict.fromkeys(("nifti", "dwi", "masks", "json", "tsv"), 0)
    records = session_records(manifest, cmap, sub, ses)
    for rec in records:
        path = manifest.absolute(rec)
        if rec.is_image:
            checked["nifti"] += 1
            try:
                files[rec.path] = scan_nifti(path, rec.path)
            except NiftiError as exc:
                failures.append(finding("integrity", rec.path, str(exc)))
            except OSError as exc:
                failures.append(
                    finding("integrity", rec.path, f"{rec.path}: cannot read ({exc.strerror})")
                )
            continue
        try:
            entry, found = scan_text(path, rec.path)
        except OSError as exc:
            check = "sidecar" if rec.extension == ".json" else "integrity"
            failures.append(finding(check, rec.path, f"{rec.path}: cannot read ({exc.strerror})"))
            continue
        files[rec.path] = entry
        checked["json"] += rec.extension == ".json"
        checked["tsv"] += rec.extension == ".tsv"
        for item in found:
            (warnings if item["check"] == "identifying" else failures).append(item)
    failures.extend(_check_plan(manifest, cmap, sub, ses))
    for rec in records:
        info = files.get(rec.path)
        if info is None or not rec.is_image:
            continue  # unreadable: already a failure
        if rec.scope == "raw" and rec.suffix == "dwi":
            checked["dwi"] += 1
            failures.extend(check_gradients(manifest, rec, info["shape"]))
        elif _is_mask(rec):
            checked["masks"] += 1
            for item in check_mask_grid(manifest, rec):
                (warnings if item["check"] == "mask_reference" else failures).append(item)
    return {
        "version": RESULT_VERSION,
        "shard": shard_id(sub, ses),
        "subject": f"sub-{sub}",
        "session": f"ses-{ses}" if ses else None,
        "files": dict(sorted(files.items())),
        "checked": checked,
        "failures": sorted(failures, key=_order),
        "warnings": sorted(warnings, key=_order),
    }


def _check_plan(manifest: Manifest, cmap: ColumnMap, sub: str, ses: str) -> list[dict[str, Any]]:
    """What the shard writer cannot use: no column plan (blocking), or a companion
    file missing or unreadable (``check: companion``: a hard failure, but the shard
    is written with null in that cell)."""
    from bids2hub.shards.writer import cell_companion, plan_session

    try:
        plan = plan_session(manifest, cmap, sub, ses)
    except BidsError as exc:
        return [finding("shard_plan", shard_id(sub, ses), str(exc))]
    out = []
    for col in cmap.columns:
        if col.kind != "companion":
            continue
        for rec in plan.images.get(col.of, []):
            rel = cell_companion(rec, col.extension)
            problem = None
            if not (manifest.root / rel).is_file():
                problem = "missing"
            else:
                try:
                    (manifest.root / rel).read_text(encoding="utf-8")
                except OSError as exc:
                    problem = f"cannot read ({exc.strerror})"
                except UnicodeDecodeError:
                    problem = "not UTF-8 text"
            if problem:
                message = f"{rel}: {problem} (column '{col.name}' holds null for {rec.name})"
                out.append(finding("companion", rel, message, column=col.name, image=rec.path))
    return out


#: Failures that keep a session's shard from being written (its round-trip is skipped).
BLOCKING_CHECKS = ("integrity", "shard_plan")


def is_intact(result: dict[str, Any]) -> bool:
    """True when nothing in a session check keeps its shard from being written."""
    return not any(f["check"] in BLOCKING_CHECKS for f in result.get("failures", []))


def _order(item: dict[str, Any]) -> tuple[str, str, str]:
    return (item["file"], item["check"], item["message"])


def dumps(result: dict[str, Any]) -> str:
    """Deterministic JSON text of a check result."""
    return json.dumps(result, sort_keys=True, indent=1) + "\n"

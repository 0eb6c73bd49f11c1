"""ARC-shaped synthetic BIDS trees with tiny NIfTI images, for tests and benchmarks.

The file names come from the real listing of OpenNeuro ds004884 ("Aphasia Recovery
Cohort", ARC) kept in ``tests/data``: every path of the real tree, the real
b-values of every DWI run and the real ``participants.tsv``. The image contents are
synthetic: a small 3-D grid (``shape``) for every image, 4-D for DWI (one volume per real
b-value) and BOLD (3 volumes for ``task-naming40``, 2 for ``task-rest``), uint8 0/1 lesion
masks on the grid of the T2w they were drawn on.

Every file is deterministic (same arguments, same bytes) and every NIfTI differs from
every other one (a per-file id is written into the header ``descrip`` and, for int16
images, into the first two voxels), so content hashes are unique per file. The id only
depends on the file's position in the real listing and its replica number, so a subset
of subjects gives the same bytes as the same files of the full tree.

Typical use::

    from tests.synthetic import write_arc_like_tree, arc_expected_counts

    root = write_arc_like_tree(tmp_path / "arc", subjects=10)
    assert arc_expected_counts(10)["n_sessions"] == ...
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["arc_expected_counts", "arc_file_listing", "write_arc_like_tree"]

_DATA = Path(__file__).with_name("data")
_LISTING_FILE = _DATA / "ds004884_files.txt.gz"
_BVALS_FILE = _DATA / "ds004884_bvals.tsv.gz"
_PARTICIPANTS_FILE = _DATA / "ds004884_participants.tsv"
_PARTICIPANTS_JSON_FILE = _DATA / "ds004884_participants.json"

_DERIV_PREFIX = "derivatives/lesion_masks/"
_MASK_TAG = "_desc-lesion_mask"
_DIGITS = re.compile(r"(\d+)")
#: b-values at or below this are treated as b0 (zero gradient direction).
_B0_THRESHOLD = 50.0
#: Offset and length of the ``descrip`` field in a NIfTI-1 header.
_DESCRIP = slice(148, 228)
#: Volumes of the synthetic BOLD runs, by task label (other tasks: 2).
_BOLD_VOLUMES = {"naming40": 3, "rest": 2}
_BOLD_TR = {"naming40": 2.0, "rest": 1.65}
_IMAGE_EXTENSIONS = (".nii.gz", ".nii")


# --------------------------------------------------------------------------------------
# The packaged real metadata
# --------------------------------------------------------------------------------------


def _natural_key(text: str) -> tuple[object, ...]:
    """Sort key ordering embedded integers numerically (``ses-2`` before ``ses-10``)."""
    parts = _DIGITS.split(text)
    return (*(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), text)


def arc_file_listing() -> list[str]:
    """Return the real ds004884 relative file paths, sorted.

    Returns
    -------
    list of str
        POSIX paths relative to the dataset root (``sub-M2001/ses-1253/anat/...``,
        ``derivatives/lesion_masks/...`` and the top-level files), 14,512 entries.
    """
    return list(_listing())


@functools.cache
def _listing() -> tuple[str, ...]:
    with gzip.open(_LISTING_FILE, "rt", encoding="utf-8") as fh:
        paths = [line.strip() for line in fh]
    return tuple(sorted(p for p in paths if p))


@functools.cache
def _bvals() -> dict[str, tuple[str, ...]]:
    """Real b-values of every DWI run, keyed by the ``.bval`` path, as written."""
    out: dict[str, tuple[str, ...]] = {}
    with gzip.open(_BVALS_FILE, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if not line:
                continue
            path, _, values = line.partition("\t")
            out[path] = tuple(values.split())
    return out


@dataclass(frozen=True, slots=True)
class _Participants:
    newline: str
    trailing_newline: bool
    header: str
    rows: tuple[str, ...]  # raw lines, in file order

    def label(self, row: str) -> str:
        return row.split("\t", 1)[0].removeprefix("sub-")


@functools.cache
def _participants() -> _Participants:
    text = _PARTICIPANTS_FILE.read_bytes().decode("utf-8")
    newline = "\r\n" if "\r\n" in text else "\n"
    trailing = text.endswith(newline)
    lines = text.split(newline)
    if trailing:
        lines = lines[:-1]
    return _Participants(newline, trailing, lines[0], tuple(lines[1:]))


@dataclass(frozen=True, slots=True)
class _Entry:
    """One subject-level file of the real listing."""

    uid: int  # position in the full listing (stable per file)
    path: str  # relative path in the real tree
    session: str | None  # session label, None when the path has no ses level


@dataclass(frozen=True, slots=True)
class _Index:
    subjects: tuple[str, ...]  # imaging subject labels, natural order
    entries: dict[str, tuple[_Entry, ...]]  # subject label -> its files (raw + derivatives)
    sessions: dict[str, tuple[str, ...]]  # subject label -> session labels, natural order
    top_level: tuple[str, ...]  # files outside sub-*/ and derivatives/*/sub-*/


@functools.cache
def _index() -> _Index:
    entries: dict[str, list[_Entry]] = {}
    sessions: dict[str, set[str]] = {}
    top: list[str] = []
    for uid, path in enumerate(_listing()):
        rel = path.removeprefix(_DERIV_PREFIX)
        parts = rel.split("/")
        if not parts[0].startswith("sub-") or len(parts) < 2:
            top.append(path)
            continue
        label = parts[0][4:]
        ses = parts[1][4:] if parts[1].startswith("ses-") and len(parts) > 2 else None
        entries.setdefault(label, []).append(_Entry(uid, path, ses))
        if ses is not None:
            sessions.setdefault(label, set()).add(ses)
    subjects = tuple(sorted(entries, key=_natural_key))
    return _Index(
        subjects=subjects,
        entries={k: tuple(v) for k, v in entries.items()},
        sessions={k: tuple(sorted(sessions.get(k, ()), key=_natural_key)) for k in subjects},
        top_level=tuple(top),
    )


# --------------------------------------------------------------------------------------
# Selection, renaming
# --------------------------------------------------------------------------------------


def _resolve_subjects(subjects: int | Sequence[str] | None) -> list[str]:
    index = _index()
    if subjects is None:
        return list(index.subjects)
    if isinstance(subjects, bool):
        raise TypeError("subjects must be None, an int or a sequence of labels, not a bool")
    if isinstance(subjects, int):
        if not 0 <= subjects <= len(index.subjects):
            raise ValueError(f"subjects must be in 0..{len(index.subjects)}, got {subjects}")
        return list(index.subjects[:subjects])
    if isinstance(subjects, str):
        subjects = [subjects]
    labels = {str(s).removeprefix("sub-") for s in subjects}
    unknown = sorted(labels - set(index.entries), key=_natural_key)
    if unknown:
        raise ValueError(f"not an imaging subject of ds004884: {', '.join(unknown)}")
    return sorted(labels, key=_natural_key)


def _replica_label(label: str, replica: int) -> str:
    """Subject label of the ``replica``-th copy (1-based; the first keeps the real label)."""
    return label if replica == 1 else f"{label}R{replica}"


def _kept_sessions(label: str, sessions: bool) -> set[str] | None:
    """Session labels kept for a subject: None keeps all; flattening keeps the first."""
    if sessions:
        return None
    labels = _index().sessions[label]
    return set(labels[:1]) if labels else None


def _rename(path: str, label: str, new_label: str, drop_ses: str | None, compress: bool) -> str:
    """Rewrite a real path for a replica label, a flattened layout and the compression."""
    old_sub, new_sub = f"sub-{label}", f"sub-{new_label}"
    drop = f"ses-{drop_ses}" if drop_ses is not None else None
    parts = path.split("/")
    out: list[str] = []
    for i, part in enumerate(parts):
        if part == drop:
            continue
        if i == len(parts) - 1:
            tokens = part.split("_")
            tokens = [new_sub if t == old_sub else t for t in tokens if t != drop]
            part = "_".join(tokens)
            if not compress and part.endswith(".nii.gz"):
                part = part[: -len(".gz")]
        elif part == old_sub:
            part = new_sub
        out.append(part)
    return "/".join(out)


def _mask_reference(path: str) -> str:
    """Real raw T2w path a lesion mask was drawn on (from its entities)."""
    rel = path.removeprefix(_DERIV_PREFIX)
    ref = rel.replace(_MASK_TAG, "", 1)
    if ref not in _listing_set():
        raise ValueError(f"lesion mask {path} refers to {ref}, which is not in the listing")
    return ref


@functools.cache
def _listing_set() -> frozenset[str]:
    return frozenset(_listing())


# --------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------

_COUNT_SUFFIXES = {"T1w": "t1w", "T2w": "t2w", "FLAIR": "flair", "dwi": "dwi", "sbref": "sbref"}
_TASK = re.compile(r"_task-([A-Za-z0-9]+)_")


def _count_key(path: str) -> str | None:
    """Which count a real image path belongs to (``t1w``, ``bold_rest``, ``mask``...)."""
    if not path.endswith(".nii.gz"):
        return None
    if path.startswith(_DERIV_PREFIX):
        return "lesion_masks" if path.endswith("_mask.nii.gz") else None
    suffix = path[: -len(".nii.gz")].rsplit("_", 1)[-1]
    if suffix == "bold":
        task = _TASK.search(path)
        return f"bold_{task.group(1)}" if task else "bold"
    return _COUNT_SUFFIXES.get(suffix)


def arc_expected_counts(
    subjects: int | Sequence[str] | None = None,
    *,
    sessions: bool = True,
    scale: int = 1,
) -> dict[str, int]:
    """Counts of what :func:`write_arc_like_tree` writes for a selection, from the listing.

    Parameters
    ----------
    subjects
        Same meaning as in :func:`write_arc_like_tree`.
    sessions
        False counts the flattened layout (first session of each subject only).
    scale
        Replication factor, as in :func:`write_arc_like_tree`.

    Returns
    -------
    dict of str to int
        ``n_subjects``, ``n_sessions``; ``n_sessions_<kind>`` (sessions with at least one
        such image) and ``n_runs_<kind>`` (number of such images) for ``t1w``, ``t2w``,
        ``flair``, ``bold_naming40``, ``bold_rest``, ``dwi`` and ``sbref``;
        ``n_lesion_masks``; ``n_nifti`` (all images, masks included);
        ``n_participants_rows`` (data rows of participants.tsv); ``n_files`` (all files of
        the tree outside ``.git``). For the full listing: 230 subjects, 902 sessions,
        T1w 444 sessions (447 runs), T2w 440 (441), FLAIR 233 (235), naming40 750 (894),
        rest 498 (508), dwi 613 (2089), sbref 88 (322), 228 lesion masks.
    """
    _check_scale(scale)
    index = _index()
    labels = _resolve_subjects(subjects)
    kinds = ("t1w", "t2w", "flair", "bold_naming40", "bold_rest", "dwi", "sbref")
    sess: dict[str, set[tuple[str, str | None]]] = {k: set() for k in kinds}
    runs: dict[str, int] = dict.fromkeys(kinds, 0)
    all_sessions: set[tuple[str, str | None]] = set()
    n_masks = n_nifti = n_files = 0
    for label in labels:
        keep = _kept_sessions(label, sessions)
        for entry in index.entries[label]:
            if keep is not None and entry.session not in keep:
                continue
            n_files += 1
            all_sessions.add((label, entry.session))
            key = _count_key(entry.path)
            if entry.path.endswith(".nii.gz"):
                n_nifti += 1
            if key == "lesion_masks":
                n_masks += 1
            elif key is not None:
                sess.setdefault(key, set()).add((label, entry.session))
                runs[key] = runs.get(key, 0) + 1
    out: dict[str, int] = {
        "n_subjects": len(labels) * scale,
        "n_sessions": len(all_sessions) * scale,
    }
    for key in sess:
        out[f"n_sessions_{key}"] = len(sess[key]) * scale
        out[f"n_runs_{key}"] = runs[key] * scale
    out["n_lesion_masks"] = n_masks * scale
    out["n_nifti"] = n_nifti * scale
    out["n_participants_rows"] = len(_participant_rows(labels, scale, subjects is None))
    top = len(index.top_level) + (1 if n_masks else 0)  # + derivatives dataset_description
    out["n_files"] = n_files * scale + top
    return out


# --------------------------------------------------------------------------------------
# Contents
# --------------------------------------------------------------------------------------


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


def _entities(filename: str) -> dict[str, str]:
    stem = filename.split(".", 1)[0]
    return dict(t.split("-", 1) for t in stem.split("_") if "-" in t)


def _suffix(filename: str) -> str:
    return filename.split(".", 1)[0].rsplit("_", 1)[-1]


def _pe_direction(ents: dict[str, str]) -> str:
    return {"AP": "j-", "PA": "j", "LR": "i-", "RL": "i"}.get(ents.get("dir", ""), "j")


@dataclass(frozen=True, slots=True)
class _ImageSpec:
    dtype: str  # "int16" or "uint8"
    nvol: int  # 0 for 3-D images
    zoom: float  # isotropic voxel size (mm)
    tr: float  # seconds, for 4-D images (0 otherwise)


def _image_spec(real_path: str) -> _ImageSpec:
    """Synthetic image layout of a real image path."""
    name = real_path.rsplit("/", 1)[-1]
    if real_path.startswith(_DERIV_PREFIX) and _MASK_TAG in name:
        ref = _image_spec(_mask_reference(real_path))
        return _ImageSpec("uint8", ref.nvol, ref.zoom, ref.tr)
    suffix = _suffix(name)
    ents = _entities(name)
    if suffix == "dwi":
        bval = real_path[: -len(".nii.gz")] + ".bval"
        return _ImageSpec("int16", len(_bvals()[bval]), 2.0, 5.7)
    if suffix == "bold":
        task = ents.get("task", "")
        return _ImageSpec("int16", _BOLD_VOLUMES.get(task, 2), 2.0, _BOLD_TR.get(task, 2.0))
    if suffix == "sbref":
        return _ImageSpec("int16", 0, 2.0, 0.0)
    return _ImageSpec("int16", 0, 1.0, 0.0)


def _affine(shape: tuple[int, int, int], zoom: float) -> np.ndarray:
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = -zoom * (np.asarray(shape, dtype=float) - 1.0) / 2.0
    return affine


@functools.cache
def _template(shape: tuple[int, int, int], spec: _ImageSpec, seed: int) -> tuple[bytes, int]:
    """Encoded (uncompressed) NIfTI-1 bytes of a base image and the offset of its data."""
    full = (*shape, spec.nvol) if spec.nvol else shape
    if spec.dtype == "uint8":
        data = np.zeros(full, dtype=np.uint8)
    else:
        rng = np.random.default_rng([seed, spec.nvol, int(spec.zoom * 1000)])
        data = rng.integers(100, 1000, size=full, dtype=np.int16)
    affine = _affine(shape, spec.zoom)
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(spec.dtype)
    img.header.set_xyzt_units("mm", "sec")
    if spec.nvol:
        img.header.set_zooms((spec.zoom,) * 3 + (spec.tr,))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    raw = img.to_bytes()
    return raw, len(raw) - data.nbytes


def _image_bytes(
    shape: tuple[int, int, int], spec: _ImageSpec, uid: int, seed: int, compress: bool
) -> bytes:
    """One file's image: the cached template plus a per-file id (header and voxels)."""
    template, offset = _template(shape, spec, seed)
    buf = bytearray(template)
    buf[_DESCRIP] = f"bids2hub synthetic ARC-like seed={seed} id={uid}".encode().ljust(80, b"\0")
    if spec.dtype == "int16":
        struct.pack_into("=hh", buf, offset, uid & 0x7FFF, (uid >> 15) & 0x7FFF)
    else:  # a small lesion blob whose place depends on the id
        data = np.zeros(shape, dtype=np.uint8)
        grid = np.indices(shape).reshape(3, -1).T
        centre = grid[(uid * 7919 + seed) % len(grid)]
        inside = grid[((grid - centre) ** 2).sum(axis=1) <= 1]
        data[tuple(inside.T)] = 1
        buf[offset:] = data.tobytes(order="F")
    if compress:
        return gzip.compress(bytes(buf), compresslevel=1, mtime=0)
    return bytes(buf)


def _bvec_bytes(bvals: tuple[str, ...], uid: int, seed: int) -> bytes:
    rng = np.random.default_rng([seed, uid])
    vecs = rng.normal(size=(3, len(bvals)))
    vecs /= np.linalg.norm(vecs, axis=0, keepdims=True)
    b0 = [float(b) <= _B0_THRESHOLD for b in bvals]
    rows = (
        " ".join("0" if z else f"{x:.6f}" for x, z in zip(row, b0, strict=True)) for row in vecs
    )
    return ("\n".join(rows) + "\n").encode()


def _sidecar(real_path: str, raw_dst: str, shape: tuple[int, int, int]) -> dict[str, object]:
    """Plausible, non-identifying JSON sidecar of a real path."""
    name = real_path.rsplit("/", 1)[-1]
    ents = _entities(name)
    suffix = _suffix(name)
    common: dict[str, object] = {
        "Modality": "MR",
        "MagneticFieldStrength": 3,
        "Manufacturer": "Siemens",
        "ConversionSoftware": "tests.synthetic",
    }
    if real_path.startswith(_DERIV_PREFIX):
        return {
            "Description": "Synthetic binary lesion mask (1 = lesion) drawn on the T2w image",
            "Type": "Lesion",
            "RawSources": [raw_dst],
        }
    if suffix == "T1w":
        return {**common, "RepetitionTime": 2.25, "EchoTime": 0.00296, "InversionTime": 0.925,
                "FlipAngle": 9, "PhaseEncodingDirection": "j"}  # fmt: skip
    if suffix == "T2w":
        return {**common, "RepetitionTime": 3.2, "EchoTime": 0.567, "FlipAngle": 120,
                "PhaseEncodingDirection": "j"}  # fmt: skip
    if suffix == "FLAIR":
        return {**common, "RepetitionTime": 5.0, "EchoTime": 0.387, "InversionTime": 1.8,
                "FlipAngle": 120, "PhaseEncodingDirection": "j"}  # fmt: skip
    if suffix == "bold":
        task = ents.get("task", "")
        tr = _BOLD_TR.get(task, 2.0)
        nslices = shape[2]
        timing = [round(tr * i / nslices, 4) for i in range(nslices)]
        return {**common, "TaskName": task, "RepetitionTime": tr, "EchoTime": 0.035,
                "FlipAngle": 75, "PhaseEncodingDirection": _pe_direction(ents),
                "TotalReadoutTime": 0.0468, "SliceTiming": timing}  # fmt: skip
    if suffix in ("dwi", "sbref"):
        return {**common, "RepetitionTime": 5.7, "EchoTime": 0.08, "FlipAngle": 90,
                "PhaseEncodingDirection": _pe_direction(ents),
                "TotalReadoutTime": 0.0523}  # fmt: skip
    return dict(common)


def _events_bytes() -> bytes:
    lines = ["onset\tduration\ttrial_type"]
    lines += [f"{6.0 * i:.1f}\t3.0\t{'naming' if i % 2 else 'baseline'}" for i in range(40)]
    return ("\n".join(lines) + "\n").encode()


def _participant_rows(labels: list[str], scale: int, everyone: bool) -> list[str]:
    """Rows of participants.tsv: selected subjects in file order, then the replicas."""
    table = _participants()
    chosen = set(labels)
    first = [r for r in table.rows if everyone or table.label(r) in chosen]
    rows = list(first)
    imaging = [r for r in first if table.label(r) in chosen]
    for replica in range(2, scale + 1):
        for row in imaging:
            label, rest = row.split("\t", 1)
            new = _replica_label(label.removeprefix("sub-"), replica)
            rows.append(f"sub-{new}\t{rest}")
    return rows


def _participants_tsv(labels: list[str], scale: int, everyone: bool) -> bytes:
    table = _participants()
    lines = [table.header, *_participant_rows(labels, scale, everyone)]
    text = table.newline.join(lines) + (table.newline if table.trailing_newline else "")
    return text.encode("utf-8")


def _participants_json() -> bytes:
    """The real ds004884 participants.json (CC0), shipped with the package."""
    return _PARTICIPANTS_JSON_FILE.read_bytes()


def _top_level_bytes(path: str, labels: list[str], scale: int, everyone: bool) -> bytes:
    name = path.rsplit("/", 1)[-1]
    if path == "dataset_description.json":
        return _json_bytes({
            "Name": "ARC-shaped synthetic tree",
            "BIDSVersion": "1.6.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bids2hub synthetic generator"],
            "GeneratedBy": [{"Name": "tests.synthetic"}],
            "SourceDatasets": [{"URL": "https://openneuro.org/datasets/ds004884"}],
        })  # fmt: skip
    if path == "participants.tsv":
        return _participants_tsv(labels, scale, everyone)
    if path == "participants.json":
        return _participants_json()
    if name.endswith("_bold.json"):
        task = _entities(name).get("task", "")
        return _json_bytes({"TaskName": task, "RepetitionTime": _BOLD_TR.get(task, 2.0)})
    if name.endswith("_events.tsv"):
        return _events_bytes()
    if name.endswith(".json"):
        return _json_bytes({})
    return b""


_DERIV_DESCRIPTION = {
    "Name": "ARC lesion masks (synthetic)",
    "BIDSVersion": "1.6.0",
    "DatasetType": "derivative",
    "License": "CC0",
    "GeneratedBy": [{"Name": "tests.synthetic"}],
}


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _check_scale(scale: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")


_ANNEX_CHARS = "0123456789zqjxkmvwgpfZQJXKMVWGPF"


def _hashdirmixed(key: str) -> str:
    """git-annex ``hashdirmixed`` of a key: the ``xx/yy`` of ``.git/annex/objects/xx/yy/``."""
    words = struct.unpack("<4I", hashlib.md5(key.encode()).digest())
    out = ""
    for word in words:
        cs = [_ANNEX_CHARS[(word >> (6 * i)) & 31] for i in range(8)]
        out += "".join(cs[i + 1] + cs[i] for i in range(0, 8, 2))[:6]
    return f"{out[:2]}/{out[2:4]}"


def _annex_key(content: bytes, filename: str) -> str:
    ext = ".nii.gz" if filename.endswith(".nii.gz") else ".nii"
    return f"SHA256E-s{len(content)}--{hashlib.sha256(content).hexdigest()}{ext}"


def _plan(
    labels: list[str],
    *,
    shape: tuple[int, int, int],
    compress: bool,
    sessions: bool,
    scale: int,
    seed: int,
) -> Iterator[tuple[str, bytes]]:
    """Relative path and bytes of every subject-level file, in listing order per subject."""
    index = _index()
    bvals = _bvals()
    n_listing = len(_listing())
    for replica in range(1, scale + 1):
        for label in labels:
            new_label = _replica_label(label, replica)
            keep = _kept_sessions(label, sessions)
            for entry in index.entries[label]:
                if keep is not None and entry.session not in keep:
                    continue
                drop = None if sessions else entry.session
                dst = _rename(entry.path, label, new_label, drop, compress)
                uid = (replica - 1) * n_listing + entry.uid
                path = entry.path
                if path.endswith(_IMAGE_EXTENSIONS):
                    data = _image_bytes(shape, _image_spec(path), uid, seed, compress)
                elif path.endswith(".json"):
                    raw = ""
                    if path.startswith(_DERIV_PREFIX):
                        ref = _mask_reference(path.replace(".json", ".nii.gz"))
                        raw = _rename(ref, label, new_label, drop, compress)
                    data = _json_bytes(_sidecar(path, raw, shape))
                elif path.endswith(".bval"):
                    data = (" ".join(bvals[path]) + "\n").encode()
                elif path.endswith(".bvec"):
                    data = _bvec_bytes(bvals[path[: -len(".bvec")] + ".bval"], uid, seed)
                elif path.endswith("_events.tsv"):
                    data = _events_bytes()
                else:
                    data = b""
                yield dst, data


def write_arc_like_tree(
    root: Path,
    subjects: int | Sequence[str] | None = None,
    *,
    shape: tuple[int, int, int] = (4, 4, 3),
    compress: bool = True,
    sessions: bool = True,
    annex_symlinks: bool = False,
    scale: int = 1,
    seed: int = 0,
) -> Path:
    """Write an ARC-shaped synthetic BIDS tree with tiny images.

    The tree has exactly the paths of the real ds004884 listing for the selected
    subjects (raw files and ``derivatives/lesion_masks``), all top-level files of the
    listing, and a ``derivatives/lesion_masks/dataset_description.json`` (absent from
    the real listing) when at least one mask is written.

    Parameters
    ----------
    root
        Output directory; created if missing. It must be empty or not exist.
    subjects
        None for all 230 imaging subjects; an int for the first N imaging subjects in
        natural order; or explicit labels (``"M2001"`` or ``"sub-M2001"``).
    shape
        3-D grid of every image (4-D images add the volume axis).
    compress
        False writes uncompressed ``.nii`` files (named ``.nii``) instead of ``.nii.gz``.
    sessions
        False flattens the tree: only each subject's first session (natural order) is
        kept, written without the ``ses-`` directory and entity (masks included).
    annex_symlinks
        True mimics a git-annex/datalad checkout: NIfTI contents are stored under
        ``root/.git/annex/objects/<xx>/<yy>/<KEY>/<KEY>`` (``SHA256E`` keys,
        ``hashdirmixed`` directories) and the BIDS path is a relative symlink to them.
        Other files are written in place, as in OpenNeuro trees.
    scale
        Replication factor: replica ``r >= 2`` of subject ``M2001`` is ``M2001R<r>``
        (own files, own participants.tsv row). ``scale=11`` gives 2,530 subjects and
        9,922 sessions.
    seed
        Seed of the synthetic voxel values and b-vectors.

    Returns
    -------
    Path
        ``root``.

    Raises
    ------
    FileExistsError
        If ``root`` exists and is not an empty directory.
    ValueError
        For unknown subject labels, an out-of-range count or ``scale < 1``.
    """
    _check_scale(scale)
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive ints, got {shape!r}")
    labels = _resolve_subjects(subjects)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)

    made: set[str] = set()

    def write(rel: str, data: bytes) -> None:
        parent = rel.rpartition("/")[0]
        if parent and parent not in made:
            os.makedirs(os.path.join(root, parent), exist_ok=True)
            made.add(parent)
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)

    n_masks = 0
    for rel, data in _plan(
        labels, shape=shape, compress=compress, sessions=sessions, scale=scale, seed=seed
    ):
        if rel.startswith(_DERIV_PREFIX) and rel.endswith(_IMAGE_EXTENSIONS):
            n_masks += 1
        if annex_symlinks and rel.endswith(_IMAGE_EXTENSIONS):
            key = _annex_key(data, rel)
            obj = f".git/annex/objects/{_hashdirmixed(key)}/{key}/{key}"
            if not (root / obj).exists():
                write(obj, data)
            parent = rel.rpartition("/")[0]
            if parent and parent not in made:
                os.makedirs(os.path.join(root, parent), exist_ok=True)
                made.add(parent)
            os.symlink(os.path.relpath(obj, parent or "."), os.path.join(root, rel))
        else:
            write(rel, data)

    everyone = subjects is None
    for rel in _index().top_level:
        write(rel, _top_level_bytes(rel, labels, scale, everyone))
    if n_masks:
        write(_DERIV_PREFIX + "dataset_description.json", _json_bytes(_DERIV_DESCRIPTION))
    return root

"""Tests of the ARC-shaped synthetic BIDS tree generator (tests.synthetic)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.synthetic import arc_expected_counts, arc_file_listing, write_arc_like_tree

#: The real ds004884 numbers, asserted from the listing and from a written tree.
EXPECTED_FULL = {
    "n_subjects": 230,
    "n_sessions": 902,
    "n_sessions_t1w": 444,
    "n_runs_t1w": 447,
    "n_sessions_t2w": 440,
    "n_runs_t2w": 441,
    "n_sessions_flair": 233,
    "n_runs_flair": 235,
    "n_sessions_bold_naming40": 750,
    "n_runs_bold_naming40": 894,
    "n_sessions_bold_rest": 498,
    "n_runs_bold_rest": 508,
    "n_sessions_dwi": 613,
    "n_runs_dwi": 2089,
    "n_sessions_sbref": 88,
    "n_runs_sbref": 322,
    "n_lesion_masks": 228,
}
#: Small selection covering every modality, a session with two T2w (M2105) and the
#: only two-digit session label (M2294, ses-56).
SMALL = ["M2001", "M2105", "M2294"]
DATA = Path(__file__).resolve().parents[1] / "data"
LABEL = re.compile(r"^[A-Za-z0-9]+$")
IDENTIFYING = {"PatientName", "PatientID", "PatientBirthDate", "AcquisitionDateTime",
               "AcquisitionDate", "InstitutionName", "InstitutionAddress", "DeviceSerialNumber",
               "StationName", "ReferringPhysicianName"}  # fmt: skip


def _files(root: Path) -> dict[str, Path]:
    """Relative POSIX path -> absolute path of every file (or link) outside .git."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath) / name
            out[path.relative_to(root).as_posix()] = path
    return out


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in _files(root).items()}


def _walk_counts(root: Path) -> dict[str, int]:
    """Counts of a written tree, from its paths only (independent of the generator)."""
    subjects: set[str] = set()
    sessions: set[tuple[str, str]] = set()
    sess: dict[str, set[tuple[str, str]]] = {}
    runs: Counter[str] = Counter()
    masks = 0
    for rel in _files(root):
        parts = rel.split("/")
        if parts[0] == "derivatives":
            masks += rel.endswith("_desc-lesion_mask.nii.gz")
            continue
        if not parts[0].startswith("sub-"):
            continue
        subjects.add(parts[0])
        key_ses = (parts[0], parts[1] if parts[1].startswith("ses-") else "")
        sessions.add(key_ses)
        if not rel.endswith(".nii.gz"):
            continue
        stem = parts[-1][: -len(".nii.gz")]
        suffix = stem.rsplit("_", 1)[1]
        kind = {"T1w": "t1w", "T2w": "t2w", "FLAIR": "flair", "dwi": "dwi", "sbref": "sbref"}.get(
            suffix
        )
        if suffix == "bold":
            kind = "bold_" + re.search(r"_task-([^_]+)_", stem).group(1)
        assert kind is not None, rel
        sess.setdefault(kind, set()).add(key_ses)
        runs[kind] += 1
    out = {"n_subjects": len(subjects), "n_sessions": len(sessions)}
    for kind in ("t1w", "t2w", "flair", "bold_naming40", "bold_rest", "dwi", "sbref"):
        out[f"n_sessions_{kind}"] = len(sess.get(kind, ()))
        out[f"n_runs_{kind}"] = runs[kind]
    out["n_lesion_masks"] = masks
    return out


def _mask_reference(rel: str) -> str:
    """Raw T2w path (possibly flattened) a written mask path refers to."""
    return rel.removeprefix("derivatives/lesion_masks/").replace("_desc-lesion_mask", "")


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_arc_like_tree(tmp_path_factory.mktemp("arc") / "full")


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_arc_like_tree(tmp_path_factory.mktemp("arc") / "small", SMALL)


def test_listing_counts() -> None:
    listing = arc_file_listing()
    assert len(listing) == 14512
    assert listing == sorted(listing)
    counts = arc_expected_counts()
    assert {k: counts[k] for k in EXPECTED_FULL} == EXPECTED_FULL
    assert counts["n_participants_rows"] == 245


def test_full_tree_counts(full_tree: Path) -> None:
    files = _files(full_tree)
    expected = arc_expected_counts()
    assert _walk_counts(full_tree) == EXPECTED_FULL
    assert len(files) == expected["n_files"]
    # every listed path is written; the only extra is the derivative description
    listing = set(arc_file_listing())
    assert set(files) - listing == {"derivatives/lesion_masks/dataset_description.json"}
    assert listing <= set(files)
    # participants.tsv is the real file, byte for byte, when all subjects are written
    real = (DATA / "ds004884_participants.tsv").read_bytes()
    assert files["participants.tsv"].read_bytes() == real
    # every image has distinct content
    digests = [hashlib.sha256(p.read_bytes()).digest() for r, p in files.items() if ".nii" in r]
    assert len(digests) == expected["n_nifti"] == 5164
    assert len(set(digests)) == len(digests)
    description = json.loads(files["dataset_description.json"].read_text())
    assert description["Name"] == "ARC-shaped synthetic tree"
    assert description["BIDSVersion"] == "1.6.0"
    assert description["DatasetType"] == "raw"
    assert description["License"] == "CC0"


def test_deterministic(tmp_path: Path) -> None:
    a = _tree_bytes(write_arc_like_tree(tmp_path / "a", 2))
    b = _tree_bytes(write_arc_like_tree(tmp_path / "b", 2))
    assert a == b
    # a subset writes the same bytes as the same files of a larger selection
    one = _tree_bytes(write_arc_like_tree(tmp_path / "one", ["sub-M2002"]))
    for rel, data in one.items():
        if rel != "participants.tsv" and rel.startswith(("sub-", "derivatives/")):
            assert a[rel] == data, rel
    # gzip headers carry no timestamp
    images = [d for r, d in a.items() if r.endswith(".nii.gz")]
    assert all(d[4:8] == b"\0\0\0\0" for d in images)
    # another seed changes the images
    c = _tree_bytes(write_arc_like_tree(tmp_path / "c", 2, seed=1))
    assert c.keys() == a.keys()
    assert all(c[r] != a[r] for r in a if r.endswith(".nii.gz"))


def test_nifti_validity(small_tree: Path) -> None:
    files = _files(small_tree)
    expected = arc_expected_counts(SMALL)
    assert len(files) == expected["n_files"]
    assert _walk_counts(small_tree) == {k: expected[k] for k in EXPECTED_FULL}
    images = {r: p for r, p in files.items() if r.endswith(".nii.gz")}
    assert len(images) == expected["n_nifti"]
    for rel, path in images.items():
        img = nib.load(path)
        hdr = img.header
        assert isinstance(img, nib.Nifti1Image)
        assert img.shape[:3] == (4, 4, 3)
        assert int(hdr["qform_code"]) > 0 and int(hdr["sform_code"]) > 0
        np.testing.assert_allclose(img.get_qform(), img.get_sform())
        data = np.asarray(img.dataobj)
        if rel.startswith("derivatives/"):
            assert img.get_data_dtype() == np.uint8
            assert set(np.unique(data)) <= {0, 1} and data.sum() > 0
            t2w = nib.load(files[_mask_reference(rel)])
            assert t2w.shape == img.shape
            np.testing.assert_array_equal(t2w.affine, img.affine)
            continue
        assert img.get_data_dtype() == np.int16
        suffix = rel[: -len(".nii.gz")].rsplit("_", 1)[1]
        if suffix == "dwi":
            stem = rel[: -len(".nii.gz")]
            bvals = files[stem + ".bval"].read_text().split()
            bvecs = np.loadtxt(files[stem + ".bvec"], ndmin=2)
            assert img.ndim == 4 and img.shape[3] == len(bvals) == bvecs.shape[1]
            assert bvecs.shape[0] == 3
            norms = np.linalg.norm(bvecs, axis=0)
            b0 = np.array([float(b) <= 50 for b in bvals])
            np.testing.assert_allclose(norms[~b0], 1.0, atol=1e-5)
            assert np.all(norms[b0] == 0)
        elif suffix == "bold":
            assert img.ndim == 4 and img.shape[3] in (2, 3)
            sidecar = json.loads(files[rel.replace(".nii.gz", ".json")].read_text())
            assert sidecar["TaskName"] == re.search(r"_task-([^_]+)_", rel).group(1)
        else:
            assert img.ndim == 3
    # real b-values are written unchanged
    real = dict(
        line.split("\t", 1)
        for line in gzip.decompress((DATA / "ds004884_bvals.tsv.gz").read_bytes())
        .decode()
        .splitlines()
    )
    for rel, path in files.items():
        if rel.endswith(".bval"):
            assert path.read_text().split() == real[rel].split()
    # sidecars are small JSON objects without identifying keys
    for rel, path in files.items():
        if rel.endswith(".json"):
            assert not IDENTIFYING & set(json.loads(path.read_text()))
    assert (small_tree / "derivatives/lesion_masks/dataset_description.json").is_file()
    rows = (small_tree / "participants.tsv").read_text().splitlines()[1:]
    assert sorted(r.split("\t")[0] for r in rows) == [f"sub-{s}" for s in SMALL]


def test_flat_sessions(tmp_path: Path) -> None:
    root = write_arc_like_tree(tmp_path / "flat", ["M2005", "M2294"], sessions=False)
    files = _files(root)
    assert files and all("ses-" not in rel for rel in files)
    assert not any("ses-" in p.read_text() for r, p in files.items() if r.endswith(".json"))
    expected = arc_expected_counts(["M2005", "M2294"], sessions=False)
    assert expected["n_sessions"] == expected["n_subjects"] == 2
    assert len(files) == expected["n_files"]
    # M2005's first session is ses-520 in natural order (ses-1034 in lexical order)
    real = [p for p in arc_file_listing() if p.startswith("sub-M2005/ses-520/")]
    flat = {re.sub(r"(/ses-520|_ses-520)", "", p) for p in real}
    assert {r for r in files if r.startswith("sub-M2005/")} == flat
    for rel, path in files.items():
        if rel.endswith(".nii.gz"):
            nib.load(path).get_fdata()
        if rel.startswith("derivatives/") and rel.endswith(".nii.gz"):
            t2w = nib.load(files[_mask_reference(rel)])
            np.testing.assert_array_equal(t2w.affine, nib.load(path).affine)


def test_uncompressed(tmp_path: Path) -> None:
    root = write_arc_like_tree(tmp_path / "nii", ["M2294"], compress=False)
    files = _files(root)
    assert not any(r.endswith(".nii.gz") for r in files)
    images = [p for r, p in files.items() if r.endswith(".nii")]
    assert len(images) == arc_expected_counts(["M2294"])["n_nifti"]
    for path in images:
        assert path.read_bytes()[344:348] == b"n+1\0"
        nib.load(path).get_fdata()
    masks = [r for r in files if r.startswith("derivatives/") and r.endswith(".nii")]
    assert masks and all(_mask_reference(m) in files for m in masks)


def test_annex_symlinks(tmp_path: Path) -> None:
    root = write_arc_like_tree(tmp_path / "annex", SMALL, annex_symlinks=True)
    files = _files(root)
    assert len(files) == arc_expected_counts(SMALL)["n_files"]
    objects = (root / ".git" / "annex" / "objects").resolve()
    plain = write_arc_like_tree(tmp_path / "plain", SMALL)
    n_links = 0
    for rel, path in files.items():
        if not rel.endswith(".nii.gz"):
            assert not path.is_symlink() and path.is_file(), rel
            continue
        n_links += 1
        assert path.is_symlink(), rel
        target = os.readlink(path)
        assert not os.path.isabs(target) and ".git/annex/objects/" in target
        resolved = path.resolve(strict=True)
        assert resolved.is_relative_to(objects)
        key = resolved.name
        assert resolved.parent.name == key
        assert re.fullmatch(r"SHA256E-s\d+--[0-9a-f]{64}\.nii\.gz", key)
        content = resolved.read_bytes()
        assert key == f"SHA256E-s{len(content)}--{hashlib.sha256(content).hexdigest()}.nii.gz"
        assert len(resolved.relative_to(objects).parts) == 4  # xx/yy/KEY/KEY
        assert content == (plain / rel).read_bytes()
        assert nib.load(path).shape[:3] == (4, 4, 3)
    assert n_links == arc_expected_counts(SMALL)["n_nifti"]


def test_scale(tmp_path: Path) -> None:
    root = write_arc_like_tree(tmp_path / "x3", 2, scale=3)
    subjects = sorted(p.name for p in root.iterdir() if p.name.startswith("sub-"))
    assert len(subjects) == 6 == len(set(subjects))
    assert all(LABEL.fullmatch(s.removeprefix("sub-")) for s in subjects)
    assert {"sub-M2001", "sub-M2002"} <= set(subjects)
    rows = (root / "participants.tsv").read_text().splitlines()[1:]
    assert sorted(r.split("\t")[0] for r in rows) == subjects
    expected = arc_expected_counts(2, scale=3)
    base = arc_expected_counts(2)
    assert _walk_counts(root) == {k: expected[k] for k in EXPECTED_FULL}
    assert all(expected[k] == 3 * base[k] for k in EXPECTED_FULL)
    assert len(_files(root)) == expected["n_files"]
    digests = [hashlib.sha256(p.read_bytes()).digest() for r, p in _files(root).items()
               if r.endswith(".nii.gz")]  # fmt: skip
    assert len(set(digests)) == len(digests)


def test_selection_arguments(tmp_path: Path) -> None:
    assert arc_expected_counts(["M2001"]) == arc_expected_counts(["sub-M2001"])
    assert arc_expected_counts(1) == arc_expected_counts("M2001")
    assert arc_expected_counts(0)["n_files"] == 6  # top-level files only
    with pytest.raises(ValueError):
        arc_expected_counts(["M9999"])
    with pytest.raises(ValueError):
        arc_expected_counts(231)
    with pytest.raises(ValueError):
        write_arc_like_tree(tmp_path / "bad", 1, scale=0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        write_arc_like_tree(tmp_path / "busy", 1)

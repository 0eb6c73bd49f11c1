import json
import os
from pathlib import Path

import pytest
from bids2hub.errors import BidsError
from bids2hub.index.manifest import load_index, read_manifest

from tests.conftest import write_nifti


def _tree(root: Path) -> Path:
    (root).mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "t", "BIDSVersion": "1.9.0"})
    )
    (root / "participants.tsv").write_text("participant_id\tsex\nsub-01\tF\n")
    write_nifti(root / "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz")
    (root / "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.json").write_text("{}")
    write_nifti(root / "sub-01/ses-2/anat/sub-01_ses-2_run-1_T1w.nii.gz", seed=1)
    write_nifti(root / "derivatives/masks/sub-01/ses-1/anat/sub-01_ses-1_desc-lesion_mask.nii.gz")
    (root / ".git").mkdir()
    (root / ".git" / "ignored.nii.gz").write_bytes(b"x")
    (root / "sourcedata").mkdir()
    (root / "sourcedata" / "sub-01_x.nii.gz").write_bytes(b"x")
    return root


def test_index_records_entities_scope_and_skips_hidden(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    manifest, rebuilt = load_index(root, tmp_path / "out/index/manifest.parquet")
    assert rebuilt
    paths = [r.path for r in manifest.records]
    assert "participants.tsv" in paths
    assert not any(p.startswith((".git", "sourcedata")) for p in paths)
    assert manifest.shard_keys() == [("01", "1"), ("01", "2")]
    mask = next(r for r in manifest.records if r.suffix == "mask")
    assert mask.scope == "derivatives/masks"
    assert (mask.sub, mask.ses, mask.datatype) == ("01", "1", "anat")
    assert mask.entity("desc") == "lesion"
    t1 = manifest.files_for("01", "1")
    assert {r.name for r in t1} >= {"sub-01_ses-1_run-1_T1w.nii.gz", "sub-01_ses-1_run-1_T1w.json"}


def test_cache_reused_when_nothing_changed(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    cache = tmp_path / "out/index/manifest.parquet"
    load_index(root, cache)
    before = cache.stat().st_mtime_ns
    manifest, rebuilt = load_index(root, cache)
    assert not rebuilt
    assert cache.stat().st_mtime_ns == before
    assert len(manifest.records) == len(read_manifest(cache).records)


@pytest.mark.parametrize("change", ["add", "remove", "modify"])
def test_cache_notices_added_removed_changed_files(tmp_path: Path, change: str) -> None:
    root = _tree(tmp_path / "bids")
    cache = tmp_path / "out/index/manifest.parquet"
    first, _ = load_index(root, cache)
    target = root / "sub-01/ses-2/anat/sub-01_ses-2_run-1_T1w.nii.gz"
    if change == "add":
        write_nifti(root / "sub-01/ses-3/anat/sub-01_ses-3_run-1_T1w.nii.gz")
    elif change == "remove":
        target.unlink()
    else:
        write_nifti(target, seed=7)
        os.utime(target, ns=(1, 1))
    second, rebuilt = load_index(root, cache)
    assert rebuilt
    assert second.signature != first.signature
    sessions = [k[1] for k in second.shard_keys()]
    assert sessions == {"add": ["1", "2", "3"], "remove": ["1"], "modify": ["1", "2"]}[change]


def test_job_mode_reads_cache_without_walking(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    cache = tmp_path / "out/index/manifest.parquet"
    load_index(root, cache)
    write_nifti(root / "sub-01/ses-9/anat/sub-01_ses-9_run-1_T1w.nii.gz")
    manifest, rebuilt = load_index(root, cache, refresh=False)
    assert not rebuilt
    assert ("01", "9") not in manifest.shard_keys()


def test_exclude_output_folder_inside_dataset(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    write_nifti(root / "results/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
    manifest, _ = load_index(root, tmp_path / "c.parquet", exclude=[root / "results"])
    assert not any(r.path.startswith("results") for r in manifest.records)


def test_broken_annex_symlink_is_indexed_with_size_minus_one(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    link = root / "sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.nii.gz"
    link.symlink_to("../../../.git/annex/objects/XX/missing")
    manifest, _ = load_index(root, tmp_path / "c.parquet")
    rec = next(r for r in manifest.records if r.name == link.name)
    assert rec.size == -1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("no_description", "no dataset_description.json"),
        ("bad_json", "not valid JSON"),
        ("no_subjects", "no sub-<label> folders"),
    ],
)
def test_not_bids_is_a_clear_error(tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "ds"
    if setup != "missing":
        root.mkdir()
    if setup in ("bad_json", "no_subjects"):
        (root / "dataset_description.json").write_text("{" if setup == "bad_json" else "{}")
    with pytest.raises(BidsError, match=message):
        load_index(root, tmp_path / "c.parquet")


def test_bidsignore_is_honoured(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    write_nifti(root / "sub-01/ses-1/extra/sub-01_ses-1_scratch.nii.gz")
    write_nifti(root / "sub-01/ses-1/anat/sub-01_ses-1_localizer.nii.gz")
    (root / ".bidsignore").write_text("# comment\n*_localizer.nii.gz\nsub-*/ses-*/extra/\n")
    manifest, _ = load_index(root, tmp_path / "c.parquet")
    names = {r.name for r in manifest.records}
    assert "sub-01_ses-1_scratch.nii.gz" not in names
    assert "sub-01_ses-1_localizer.nii.gz" not in names
    assert "sub-01_ses-1_run-1_T1w.nii.gz" in names


def test_cached_manifest_builds_records_lazily_and_answers_the_same(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    cache = tmp_path / "out/index/manifest.parquet"
    built, _ = load_index(root, cache)
    read = read_manifest(cache)
    # A job asks for the shard keys, its session and participants.tsv: no full record list.
    assert read.shard_keys() == built.shard_keys()
    assert read.files_for("01", "1") == built.files_for("01", "1")
    assert read.files_for("01", "9") == []
    assert read.top_level("participants.tsv") == built.top_level("participants.tsv")
    assert read._records is None
    # Asked for, the records are those of the walk, in path order.
    assert read.records == built.records
    assert read.files_for("01", "2") == built.files_for("01", "2")
    assert read.signature == built.signature and read.root == built.root


def test_cached_manifest_asked_for_many_sessions_builds_all_records(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    for i in range(12):
        write_nifti(root / f"sub-{i:02d}/anat/sub-{i:02d}_T1w.nii.gz", seed=i)
    cache = tmp_path / "manifest.parquet"
    built, _ = load_index(root, cache)
    read = read_manifest(cache)
    for sub, ses in built.shard_keys():
        assert read.files_for(sub, ses) == built.files_for(sub, ses)
    assert read._records is not None and read.records == built.records

"""`bids2hub restore`: BIDS files back from the Hub, byte for byte, on an odd layout.

The layout has no ``ses-`` level and uncompressed ``.nii`` images; its shards are
written by the real writer, pushed to the local Hub server by the real push and
restored from there.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from bids2hub.errors import BidsError, HubError
from bids2hub.hub.push import PushOptions, push_folder
from bids2hub.hub.restore import (
    RemoteEntry,
    _restore_whitespace,
    copy_dataset_files,
    dataset_level_files,
    plan_restore,
    restore,
    restore_shard,
)
from bids2hub.index.manifest import load_index
from bids2hub.index.phenotype import participants_fields, read_participants
from bids2hub.layout import BIDS_FILES
from bids2hub.shards.colmap import generic_map
from bids2hub.shards.writer import write_shard
from bids2hub.validate.bidsvalidator import run_validator

from tests.conftest import REPO as CHECKOUT
from tests.conftest import tool_env, write_nifti

REPO = "user/odd-layout"
BVALS = {"01": "0 1000 1000\n", "02": "0 1000 1000 \r\n"}  # trailing whitespace differs


def _odd_tree(root: Path) -> Path:
    """Two subjects, no sessions, ``.nii`` images with sidecars, DWI with gradients."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "odd layout", "BIDSVersion": "1.9.0", "License": "CC0"}, indent=2)
        + "\n"
    )
    (root / "README").write_text("An odd layout: no sessions, uncompressed NIfTI.\n")
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t61\nsub-02\t48\n")
    (root / "participants.json").write_text('{"age": {"Description": "age", "Units": "year"}}\n')
    for i, sub in enumerate(("01", "02")):
        anat = root / f"sub-{sub}" / "anat"
        write_nifti(anat / f"sub-{sub}_T1w.nii", (6, 5, 4), seed=i)
        (anat / f"sub-{sub}_T1w.json").write_text('{"RepetitionTime": 2.0}')
        dwi = root / f"sub-{sub}" / "dwi"
        write_nifti(dwi / f"sub-{sub}_dwi.nii", (6, 5, 4, 3), seed=10 + i)
        (dwi / f"sub-{sub}_dwi.json").write_text('{"PhaseEncodingDirection": "j-"}\n')
        (dwi / f"sub-{sub}_dwi.bval").write_text(BVALS[sub], newline="")
        (dwi / f"sub-{sub}_dwi.bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    return root


def _hub_folder(bids: Path, hub: Path, work: Path) -> Path:
    """Shards (generic column map) and the dataset-level files, as the workflow lays them out."""
    manifest, _ = load_index(bids, work / "index" / "manifest.parquet")
    tsv = bids / "participants.tsv"
    cmap = generic_map(manifest, participants_fields(tsv))
    people = read_participants(tsv)
    for sub, ses in manifest.shard_keys():
        assert ses == ""
        write_shard(
            manifest, cmap, sub, ses, people, hub / "data" / f"sub-{sub}" / f"sub-{sub}.parquet"
        )
    names = dataset_level_files(bids)
    copy_dataset_files([bids / n for n in names], [hub / BIDS_FILES / n for n in names])
    return hub


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)
    }


def test_whitespace_around_gradient_text_is_found_from_size_and_sha256() -> None:
    for raw in (b"0 1000\n", b"0 1000 \r\n", b"\n0 1000\t\n", b"0 1000"):
        sha = hashlib.sha256(raw).hexdigest()
        assert _restore_whitespace(raw.decode().strip(), len(raw), sha) == raw
    raw = b"0 1000" + b" " * 9  # more whitespace than is ever put back
    assert _restore_whitespace("0 1000", len(raw), hashlib.sha256(raw).hexdigest()) is None
    assert _restore_whitespace("0 1000", 8, "0" * 64) is None  # no combination has that hash


def test_dataset_level_files_are_the_root_files_and_derivative_descriptions(tmp_path: Path) -> None:
    bids = _odd_tree(tmp_path / "bids")
    (bids / ".bidsignore").write_text("extra/\n")
    (bids / "task-rest_bold.json").write_text('{"TaskName": "rest"}\n')
    d = bids / "derivatives" / "masks"
    d.mkdir(parents=True)
    (d / "dataset_description.json").write_text("{}\n")
    assert dataset_level_files(bids) == [
        "README",
        "dataset_description.json",
        "derivatives/masks/dataset_description.json",
        "participants.json",
        "participants.tsv",
        "task-rest_bold.json",
    ]
    with pytest.raises(BidsError, match="missing"):
        copy_dataset_files([bids / "CHANGES"], [tmp_path / "out" / "CHANGES"])


def test_plan_restore_picks_subjects_and_names_the_missing_ones() -> None:
    entries = [
        RemoteEntry(p, 1, None, "x")
        for p in (
            "data/sub-01/sub-01.parquet",
            "data/sub-02/sub-02.parquet",
            "bids/participants.tsv",
            "masks/masks.parquet",
            "README.md",
        )
    ]
    shards, top = plan_restore(entries, ["sub-02"])
    assert [e.path for e in shards] == ["data/sub-02/sub-02.parquet"]
    assert [e.path for e in top] == ["bids/participants.tsv"]
    assert len(plan_restore(entries, None)[0]) == 2
    with pytest.raises(HubError, match="sub-03"):
        plan_restore(entries, ["03"])
    with pytest.raises(HubError, match="no shards"):
        plan_restore(entries[2:], None)


def test_a_shard_whose_bytes_differ_from_its_provenance_is_refused(tmp_path: Path) -> None:
    bids = _odd_tree(tmp_path / "bids")
    hub = _hub_folder(bids, tmp_path / "hub", tmp_path / "work")
    shard = hub / "data" / "sub-01" / "sub-01.parquet"
    restored = restore_shard(shard, tmp_path / "ok")
    assert {f.path for f in restored} == {p for p in _tree(bids) if p.startswith("sub-01/")}
    # the same shard with one provenance hash changed
    table = pq.read_table(shard)
    meta = dict(table.schema.metadata)
    prov = json.loads(meta[b"bids2hub"])
    prov["sources"][0]["sha256"] = "0" * 64
    meta[b"bids2hub"] = json.dumps(prov).encode()
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata(meta), bad)
    with pytest.raises(BidsError, match=r"bad\.parquet: .*(corrupt|holds)"):
        restore_shard(bad, tmp_path / "bad")
    assert not (tmp_path / "bad" / prov["sources"][0]["path"]).exists()


def test_odd_layout_round_trips_through_the_hub_byte_for_byte(tmp_path: Path, hub_server) -> None:
    bids = _odd_tree(tmp_path / "bids")
    hub = _hub_folder(bids, tmp_path / "hub", tmp_path / "work")
    push_folder(hub, PushOptions(repo_id=REPO, max_files_per_commit=3))

    out = tmp_path / "restored"
    result = restore(REPO, out)
    assert result.shards == 2
    source, back = _tree(bids), _tree(out)
    assert back == source  # every file of this layout is carried, and identical
    validator = run_validator(out, tmp_path / "validator.json")
    assert validator["exit_code"] == 0, validator["output"]["issues"]

    # one subject, through the command line: its files and its participants row only
    one = tmp_path / "one"
    proc = subprocess.run(
        [sys.executable, "-m", "bids2hub", "restore", REPO, str(one), "--subjects", "02"],
        capture_output=True, text=True, env=tool_env(PYTHONPATH=str(CHECKOUT / "workflow")), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert hub_server.token not in proc.stdout + proc.stderr
    got = _tree(one)
    assert {p for p in got if p.startswith("sub-")} == {
        p for p in source if p.startswith("sub-02/")
    }
    assert all(got[p] == source[p] for p in got if p != "participants.tsv")
    assert (one / "participants.tsv").read_text() == "participant_id\tage\nsub-02\t48\n"
    assert run_validator(one, tmp_path / "validator-one.json")["exit_code"] == 0

    proc = subprocess.run(
        [sys.executable, "-m", "bids2hub", "restore", REPO, str(tmp_path / "x"), "--subjects", "9"],
        capture_output=True, text=True, env=tool_env(PYTHONPATH=str(CHECKOUT / "workflow")), check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bids2hub: error: subject(s) sub-9 have no shard in the repository (it has 2 subjects)"
    ]

"""Publishing end to end: demo data -> shards, masks table, card -> push to the local Hub server."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_snakemake, tool_env

pytestmark = pytest.mark.workflow
REPO = "user/demo"


@pytest.fixture()
def demo_project(tmp_path: Path) -> dict[str, Path]:
    bids = tmp_path / "bids"
    subprocess.run(
        [sys.executable, "-m", "bids2hub", "demo-data", str(bids)],
        check=True, env=tool_env(), capture_output=True,
    )  # fmt: skip
    out = tmp_path / "results"
    return {"bids": bids, "out": out, "root": tmp_path}


def _config(project: dict[str, Path], **hub: object) -> Path:
    cfg = project["root"] / "config.yaml"
    base = {
        "push": True,
        "repo_id": REPO,
        "private": True,
        "max_files_per_commit": 4,
        "retry": {"max_attempts": 2, "backoff_s": 0.1},
    }
    cfg.write_text(
        yaml.safe_dump(
            {
                "bids_dir": str(project["bids"]),
                "out_dir": str(project["out"]),
                "dataset": "demo",
                "hub": {**base, **hub},
            }
        )
    )
    return cfg


def _local_files(hub: Path) -> dict[str, str]:
    return {
        p.relative_to(hub).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(hub.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(hub).parts)
    }


def _remote_files(server) -> dict[str, str]:
    return {
        p: hashlib.sha256(data).hexdigest()
        for p, data in server.files(REPO).items()
        if p != ".gitattributes"
    }


LOAD = """
import json
from datasets import load_dataset
ds = load_dataset({repo!r}, split="train")
row = ds[0]
t1 = row["t1w"][0]
masks = load_dataset({repo!r}, "masks", split="train")
stream = list(load_dataset({repo!r}, split="train", streaming=True))
smask = next(iter(load_dataset({repo!r}, "masks", split="train", streaming=True)))
preview = load_dataset({repo!r}, "preview", split="train")
from huggingface_hub import DatasetCard
card = DatasetCard.load({repo!r}, repo_type="dataset")
card.validate("dataset")  # POST /api/validate-yaml
print(json.dumps({{
    "configs": [c["config_name"] for c in card.data.configs],
    "preview_rows": sorted([r["subject_id"], r["session_id"]] for r in preview),
    "preview_t1": [type(r["t1w"]).__name__ for r in preview],
    "preview_overlay": sorted(r["session_id"] for r in preview if r["mask_overlay"]),
    "rows": sorted([r["subject_id"], r["session_id"]] for r in ds),
    "t1_shape": list(t1.shape),
    "t1_path": row["t1w"][0].get_filename() or "",
    "masks": sorted([m["subject_id"], m["session_id"], m["backend"], m["volume_ml"]] for m in masks),
    "mask_sum": float(masks[0]["lesion_mask"].get_fdata().sum()),
    "stream_rows": len(stream),
    "stream_mask_shape": list(smask["lesion_mask"].shape),
}}))
"""


def _load(repo: str, cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", LOAD.format(repo=repo)], capture_output=True, text=True,
        env=tool_env(), timeout=300, cwd=cwd, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_restore(bids: Path, dest: Path) -> None:
    from bids2hub.validate.bidsvalidator import run_validator

    from tests.conftest import REPO as CHECKOUT

    proc = subprocess.run(
        [sys.executable, "-m", "bids2hub", "restore", REPO, str(dest)], capture_output=True,
        text=True, env=tool_env(PYTHONPATH=str(CHECKOUT / "workflow")), timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    tree = {p.relative_to(bids).as_posix(): p for p in bids.rglob("*") if p.is_file()}
    back = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}
    # the demo's files are all carried: images, sidecars, gradients, the expert masks
    # (derivatives/), the dataset-level files (bids/ on the Hub)
    assert set(back) == set(tree)
    assert all(back[p].read_bytes() == tree[p].read_bytes() for p in tree)
    result = run_validator(dest, dest.parent / "restored-validator.json")
    assert result["exit_code"] == 0, result["output"]["issues"]


def test_demo_pushed_loads_back_and_reruns_upload_only_what_changed(
    demo_project: dict[str, Path], hub_server
) -> None:
    import nibabel as nib

    out, bids = demo_project["out"], demo_project["bids"]
    cfg = _config(demo_project)
    run_snakemake(demo_project["root"], "--configfile", str(cfg))
    hub = out / "hub"
    local = _local_files(hub)
    assert {"README.md", "masks/masks.parquet"} <= set(local)
    assert any(p.startswith("derivatives/deepisles/") for p in local)
    assert _remote_files(hub_server) == local  # every file, same sha256, nothing else
    receipt = json.loads((hub / ".push-receipt.json").read_text())
    assert receipt["complete"] and {p: f["sha256"] for p, f in receipt["files"].items()} == local
    n_commits = len(hub_server.commits(REPO))
    assert len(receipt["commits"]) == n_commits - 1 == -(-len(local) // 4)

    # round trip with datasets: one row per session, Nifti decoded, masks config
    got = _load(REPO, demo_project["root"])
    sessions = sorted(
        [f"sub-{s.parent.name.removeprefix('sub-')}", s.name] for s in bids.glob("sub-*/ses-*")
    )
    assert got["rows"] == sessions and got["stream_rows"] == len(sessions)
    first_t1 = sorted((bids / "sub-M9001/ses-2148/anat").glob("*_T1w.nii.gz"))
    assert got["t1_shape"] == list(nib.load(first_t1[0]).shape)
    assert [m[:3] for m in got["masks"]] == [
        ["sub-M9001", "ses-2148", "threshold"],
        ["sub-M9002", "ses-1377", "threshold"],
        ["sub-M9003", "ses-2451", "threshold"],
    ]
    assert all(m[3] > 0 for m in got["masks"]) and got["mask_sum"] > 0
    assert len(got["stream_mask_shape"]) == 3
    # the preview configuration: one row per session, PNG thumbnails the viewer shows
    assert got["configs"] == ["default", "masks", "preview"]
    assert hub_server.count("POST", r"^/api/validate-yaml") >= 1
    assert got["preview_rows"] == sessions
    assert set(got["preview_t1"]) == {"PngImageFile"}
    assert got["preview_overlay"] == sorted(s.name for s in bids.glob("sub-*/ses-*") if any(
        (bids / "derivatives/lesion_masks" / s.relative_to(bids)).rglob("*_mask.nii.gz")
    ))  # fmt: skip
    assert "](preview/thumbnail.png)" in (hub / "README.md").read_text()
    assert "preview/thumbnail.png" in _remote_files(hub_server)

    # the BIDS dataset back from the Hub: every source file, byte for byte, and valid
    _check_restore(bids, demo_project["root"] / "restored")

    # nothing changed: nothing to do; a forced push makes no commit either
    proc = run_snakemake(demo_project["root"], "--configfile", str(cfg))
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stderr[-5000:]
    run_snakemake(demo_project["root"], "--configfile", str(cfg), "--forcerun", "push_to_hub")
    assert len(hub_server.commits(REPO)) == n_commits
    log = (out / "logs/push_to_hub/push_to_hub.log").read_text()
    assert "0 to upload" in log

    # one source NIfTI changes: exactly its shard is uploaded
    src = first_t1[0]
    img = nib.load(src)
    data = img.get_fdata()
    data[0, 0, 0] += 1
    raw = nib.Nifti1Image(data.astype(img.get_data_dtype()), img.affine, img.header).to_bytes()
    src.write_bytes(gzip.compress(raw, mtime=0))
    run_snakemake(demo_project["root"], "--configfile", str(cfg))
    commits = hub_server.commits(REPO)
    assert len(commits) == n_commits + 1
    new, old = commits[0]["files"], commits[1]["files"]
    changed = sorted(p for p in new if new[p] != old.get(p))
    assert changed == ["data/sub-M9001/sub-M9001_ses-2148.parquet"]
    assert _remote_files(hub_server) == _local_files(hub)


def test_push_failures_resume_rate_limits_and_wrong_token(
    demo_project: dict[str, Path], hub_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, root = demo_project["out"], demo_project["root"]
    cfg = _config(demo_project)
    hub = out / "hub"

    # every commit after the first fails: the push fails clearly, no receipt
    hub_server.faults.fail_commits_after = 1
    proc = run_snakemake(root, "--configfile", str(cfg), check=False)
    assert proc.returncode != 0
    log = (out / "logs/push_to_hub/push_to_hub.log").read_text()
    assert "bids2hub: error: commit 2/" in log and "HTTP 500" in log and "rerun" in log
    assert not (hub / ".push-receipt.json").exists()
    partial = json.loads((hub / ".push-receipt.partial.json").read_text())
    assert partial["complete"] is False and len(partial["commits"]) == 1
    assert len(hub_server.commits(REPO)) == 2
    local = _local_files(hub)
    assert _remote_files(hub_server) != local

    # the server recovers: the rerun finishes the upload, the remote is complete
    hub_server.faults.fail_commits_after = None
    puts_before = hub_server.count("PUT", "lfs-upload")
    run_snakemake(root, "--configfile", str(cfg))
    assert _remote_files(hub_server) == local
    receipt = json.loads((hub / ".push-receipt.json").read_text())
    assert receipt["complete"] and len(receipt["commits"]) == len(hub_server.commits(REPO)) - 1
    # the files the server keeps with LFS (parquet, gzip, binary such as the PNG thumbnail)
    lfs_local = [p for p, e in hub_server.commits(REPO)[0]["files"].items() if e["lfs"]]
    first_batch = set(hub_server.commits(REPO)[-2]["files"]) - {".gitattributes"}
    assert hub_server.count("PUT", "lfs-upload") - puts_before <= len(lfs_local) - len(
        [p for p in first_batch if p in lfs_local]
    )

    # 429 with Retry-After: the push waits and succeeds
    hub_server.faults.rate_limit_next = 2
    hub_server.faults.retry_after = 1
    hub_server.faults.only_paths = r"/api/repos/create"
    run_snakemake(root, "--configfile", str(_config(demo_project, retry={"max_attempts": 3})),
                  "--forcerun", "push_to_hub")  # fmt: skip
    assert hub_server.count("POST", "/api/repos/create") >= 3
    log = (out / "logs/push_to_hub/push_to_hub.log").read_text()
    assert "HTTP 429, retrying in 1.0 s" in log

    # a wrong token: a clear 401, the token nowhere
    wrong = "hf_wrong_secret_value_987654321"
    monkeypatch.setenv("HF_TOKEN", wrong)
    proc = run_snakemake(root, "--configfile", str(cfg), "--forcerun", "push_to_hub", check=False)
    assert proc.returncode != 0
    log = (out / "logs/push_to_hub/push_to_hub.log").read_text()
    assert "HTTP 401" in log and "HF_TOKEN" in log
    assert not (hub / ".push-receipt.json").exists()
    for text in (proc.stdout, proc.stderr, log):
        assert wrong not in text and hub_server.token not in text
    for f in out.rglob("*"):
        if f.is_file():
            assert wrong.encode() not in f.read_bytes(), f


def test_push_without_repo_id_is_a_one_line_config_error(demo_project: dict[str, Path]) -> None:
    cfg = _config(demo_project, repo_id=None)
    proc = run_snakemake(demo_project["root"], "--configfile", str(cfg), "-n", check=False)
    assert proc.returncode != 0
    assert "bids2hub: error: config key 'hub.repo_id' is required when 'hub.push' is true" in (
        proc.stderr
    )

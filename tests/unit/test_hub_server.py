"""The local Hub test server against the real clients: HfApi and datasets.load_dataset."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.conftest import tool_env, write_nifti
from tests.hubserver import git_blob_id

REPO = "user/server-test"


def _api(server) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token)


def _nifti_table(tmp_path: Path, n: int) -> tuple[pa.Table, list[bytes]]:
    cells = []
    for i in range(n):
        cells.append(write_nifti(tmp_path / f"img{i}.nii.gz", seed=i).read_bytes())
    nifti = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    table = pa.table(
        {
            "subject_id": pa.array([f"sub-{i}" for i in range(n)]),
            "image": pa.array(
                [{"bytes": c, "path": f"img{i}.nii.gz"} for i, c in enumerate(cells)], nifti
            ),
        }
    )
    features = {"subject_id": {"dtype": "string", "_type": "Value"}, "image": {"_type": "Nifti"}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return table.replace_schema_metadata(meta), cells


def test_upload_list_download_round_trip(hub_server, tmp_path: Path) -> None:
    api = _api(hub_server)
    url = api.create_repo(REPO, repo_type="dataset", private=True)
    assert url.repo_id == REPO
    api.create_repo(REPO, repo_type="dataset", private=True, exist_ok=True)  # 409 tolerated
    big = tmp_path / "data" / "a.parquet"
    big.parent.mkdir()
    big.write_bytes(bytes(range(256)) * 1000)
    small = tmp_path / "notes.txt"
    small.write_text("hello\n")
    info = api.create_commit(
        REPO,
        [
            CommitOperationAdd("data/a.parquet", big),
            CommitOperationAdd("notes.txt", small),
        ],
        commit_message="add",
        repo_type="dataset",
    )
    tree = {
        f.path: f
        for f in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)
        if hasattr(f, "size")
    }
    assert set(tree) == {".gitattributes", "data/a.parquet", "notes.txt"}
    assert tree["data/a.parquet"].lfs.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert tree["notes.txt"].lfs is None
    assert tree["notes.txt"].blob_id == git_blob_id(b"hello\n")
    # paths-info, with a folder and a missing path
    got = api.get_paths_info(REPO, ["data", "notes.txt", "nope"], repo_type="dataset")
    assert sorted(type(g).__name__ for g in got) == ["RepoFile", "RepoFolder"]
    # download (HEAD + GET) lands the same bytes
    path = hf_hub_download(
        REPO, "data/a.parquet", repo_type="dataset", cache_dir=tmp_path / "cache",
        endpoint=hub_server.url, token=hub_server.token,
    )  # fmt: skip
    assert Path(path).read_bytes() == big.read_bytes()
    assert api.dataset_info(REPO).sha == info.oid
    # an unchanged file is skipped by the client: no new commit
    again = api.create_commit(
        REPO, [CommitOperationAdd("notes.txt", small)], commit_message="same", repo_type="dataset"
    )
    assert again.oid == info.oid
    api.create_commit(
        REPO, [CommitOperationDelete("notes.txt")], commit_message="rm", repo_type="dataset"
    )
    assert "notes.txt" not in hub_server.files(REPO)
    assert len(hub_server.commits(REPO)) == 3  # initial, add, rm
    # the LFS object was uploaded once, by a PUT without the token (a presigned URL)
    puts = [r for r in hub_server.requests if r.method == "PUT"]
    assert len(puts) == 1 and puts[0].authorization is None


def test_errors_the_client_maps(hub_server, tmp_path: Path) -> None:
    api = _api(hub_server)
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("user/missing")
    api.create_repo(REPO, repo_type="dataset", private=True)
    with pytest.raises(RepositoryNotFoundError):  # private: invisible without a token
        HfApi(endpoint=hub_server.url, token=False).dataset_info(REPO)
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub_server.url, token="hf_wrong").whoami()
    assert err.value.response.status_code == 401
    assert api.whoami()["name"] == "user"
    hub_server.faults.rate_limit_next = 1
    hub_server.faults.retry_after = 1
    with pytest.raises(HfHubHTTPError) as err:  # repo info is not retried by the client
        api.dataset_info(REPO)
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    hub_server.faults.rate_limit_next = 1
    listed = list(api.list_repo_tree(REPO, repo_type="dataset"))  # the tree listing is
    assert [f.path for f in listed] == [".gitattributes"]
    assert hub_server.count("GET", r"/tree/main") == 2


def test_tree_pagination(hub_server, tmp_path: Path) -> None:
    hub_server.page_size = 3
    api = _api(hub_server)
    api.create_repo(REPO, repo_type="dataset")
    ops = [CommitOperationAdd(f"d/f{i}.txt", f"{i}\n".encode()) for i in range(7)]
    api.create_commit(REPO, ops, commit_message="many", repo_type="dataset")
    paths = [f.path for f in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)]
    assert sorted(paths) == sorted([".gitattributes", "d", *[f"d/f{i}.txt" for i in range(7)]])
    assert hub_server.count("GET", r"/tree/main.*cursor=") == 2


def _load(server, script: str, tmp_path: Path) -> dict:
    """Run ``script`` in a fresh interpreter (datasets reads HF_ENDPOINT at import)."""
    env = tool_env()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD = """
import json, hashlib
from datasets import load_dataset
ds = load_dataset({repo!r}, split="train")
st = load_dataset({repo!r}, split="train", streaming=True)
rows = list(st)
img = ds[0]["image"]
print(json.dumps({{
    "n": ds.num_rows,
    "subjects": sorted(ds["subject_id"]),
    "shape": list(img.shape),
    "stream_n": len(rows),
    "stream_shape": list(rows[0]["image"].shape),
}}))
"""


def test_load_dataset_reads_back_normal_and_streaming(hub_server, tmp_path: Path) -> None:
    api = _api(hub_server)
    api.create_repo(REPO, repo_type="dataset", private=True)
    table, _cells = _nifti_table(tmp_path, 2)
    shard = tmp_path / "shard.parquet"
    pq.write_table(table.slice(0, 1), shard)
    shard2 = tmp_path / "shard2.parquet"
    pq.write_table(table.slice(1, 1), shard2)
    api.create_commit(
        REPO,
        [
            CommitOperationAdd("data/sub-0/a.parquet", shard),
            CommitOperationAdd("data/sub-1/b.parquet", shard2),
        ],
        commit_message="shards",
        repo_type="dataset",
    )
    out = _load(hub_server, LOAD.format(repo=REPO), tmp_path)
    assert out == {
        "n": 2,
        "subjects": ["sub-0", "sub-1"],
        "shape": [4, 4, 3],
        "stream_n": 2,
        "stream_shape": [4, 4, 3],
    }
    ranged = [r for r in hub_server.requests if r.method == "GET" and "/resolve/" in r.path]
    assert ranged, "datasets read the shards through /resolve"
    assert hub_server.unknown == []

"""The push module against the local Hub test server: batching, resume, faults, secrets."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path

import pytest
from bids2hub.errors import HubError
from bids2hub.hub.push import (
    PARTIAL_NAME,
    RECEIPT_NAME,
    LocalFile,
    PushOptions,
    list_local,
    plan_batches,
    push_folder,
)

REPO = "user/arc-test"


def _folder(root: Path, n: int = 5) -> Path:
    hub = root / "hub"
    for i in range(n):
        p = hub / "data" / f"sub-{i}" / f"sub-{i}_ses-1.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"PAR1" + hashlib.sha256(str(i).encode()).digest() * 100 + b"PAR1")
    (hub / "README.md").write_text("---\nlicense: cc0-1.0\n---\n# card\n")
    (hub / "derivatives").mkdir()
    (hub / "derivatives" / "dataset_description.json").write_text('{"Name": "x"}\n')
    (hub / ".push-receipt.partial.json").write_text("{}")  # never pushed
    (hub / "data" / ".sub-0.parquet.tmp-123").write_bytes(b"junk")  # never pushed
    return hub


def _options(**kw) -> PushOptions:
    base = {"repo_id": REPO, "backoff_s": 0.01, "max_attempts": 3}
    return PushOptions(**{**base, **kw})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _new_commits(server) -> int:
    return len(server.commits(REPO)) - 1  # minus the repository's initial commit


def test_list_local_skips_dot_files_and_reuses_cached_hashes(tmp_path: Path) -> None:
    hub = _folder(tmp_path, 2)
    files = list_local(hub)
    assert list(files) == [
        "README.md",
        "data/sub-0/sub-0_ses-1.parquet",
        "data/sub-1/sub-1_ses-1.parquet",
        "derivatives/dataset_description.json",
    ]
    f = files["README.md"]
    assert f.sha256 == _sha((hub / "README.md").read_bytes())
    cache = {"README.md": {"stat": list(f.stat_key), "sha256": "0" * 64}}
    assert list_local(hub, cache)["README.md"].sha256 == "0" * 64  # stat unchanged: reused
    (hub / "README.md").write_text("changed\n")
    assert list_local(hub, cache)["README.md"].sha256 == _sha(b"changed\n")


def test_plan_batches_limits_files_and_bytes_and_puts_the_card_last() -> None:
    def f(path: str, size: int) -> LocalFile:
        return LocalFile(path, Path(path), size, "", (size, 0, 0, 0))

    files = [f("README.md", 1), f("a", 10), f("b", 10), f("c", 50), f("d", 1), f("e", 1)]
    batches = plan_batches(files, max_files=2, max_bytes=30)
    assert [[x.path for x in b] for b in batches] == [["a", "b"], ["c"], ["d", "e"], ["README.md"]]


def test_push_uploads_verifies_and_is_idempotent(hub_server, tmp_path: Path) -> None:
    hub = _folder(tmp_path)
    res = push_folder(hub, _options(max_files_per_commit=3), hash_cache=tmp_path / "h.json")
    local = list_local(hub)
    remote = hub_server.files(REPO)
    assert set(remote) == set(local) | {".gitattributes"}
    for path, f in local.items():
        assert _sha(remote[path]) == f.sha256
    assert len(res.commits) == _new_commits(hub_server) == 3  # 7 files, 3 per commit
    assert hub_server.commits(REPO)[0]["files"].keys() >= {"README.md"}
    assert "README.md" not in hub_server.commits(REPO)[1]["files"]  # the card came last
    receipt = json.loads((hub / RECEIPT_NAME).read_text())
    assert receipt["complete"] is True and receipt["repo_id"] == REPO
    assert receipt["head"] == hub_server.commits(REPO)[0]["id"]
    assert receipt["commits"] == res.commits
    assert {p: e["sha256"] for p, e in receipt["files"].items()} == {
        p: f.sha256 for p, f in local.items()
    }
    assert not (hub / PARTIAL_NAME).exists()
    assert ".push-receipt.json" not in remote
    # the repository is private as configured
    assert json.loads((hub_server.root / "repos/dataset/user/arc-test/meta.json").read_text())[
        "private"
    ]

    # nothing changed: no commit, no upload
    puts = hub_server.count("PUT", "lfs-upload")
    res = push_folder(hub, _options(max_files_per_commit=3), hash_cache=tmp_path / "h.json")
    assert res.commits == [] and res.uploaded == []
    assert _new_commits(hub_server) == 3
    assert hub_server.count("PUT", "lfs-upload") == puts
    assert hub_server.count("POST", "/commit/") == 3

    # one file changed: exactly that file in one commit
    shard = hub / "data/sub-2/sub-2_ses-1.parquet"
    shard.write_bytes(b"PAR1 new content PAR1")
    res = push_folder(hub, _options(max_files_per_commit=3), hash_cache=tmp_path / "h.json")
    assert res.uploaded == ["data/sub-2/sub-2_ses-1.parquet"]
    assert _new_commits(hub_server) == 4
    assert hub_server.files(REPO)["data/sub-2/sub-2_ses-1.parquet"] == shard.read_bytes()


def test_remote_extra_files_kept_unless_delete_remote(hub_server, tmp_path: Path) -> None:
    hub = _folder(tmp_path, 2)
    push_folder(hub, _options())
    (hub / "data/sub-1/sub-1_ses-1.parquet").unlink()
    res = push_folder(hub, _options())
    assert "data/sub-1/sub-1_ses-1.parquet" in hub_server.files(REPO)
    assert res.receipt["kept_remote"] == ["data/sub-1/sub-1_ses-1.parquet"]
    res = push_folder(hub, _options(delete_remote=True))
    assert res.deleted == ["data/sub-1/sub-1_ses-1.parquet"]
    assert set(hub_server.files(REPO)) == {".gitattributes", *list_local(hub)}


def test_failing_commits_leave_no_receipt_then_a_rerun_completes(
    hub_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = _folder(tmp_path)
    hub_server.faults.fail_commits_after = 1
    with pytest.raises(HubError) as err:
        push_folder(hub, _options(max_files_per_commit=2))
    msg = str(err.value)
    assert "commit 2/4" in msg and "HTTP 500" in msg and "after 3 attempts" in msg
    assert "rerun" in msg and "\n" not in msg
    assert not (hub / RECEIPT_NAME).exists()
    partial = json.loads((hub / PARTIAL_NAME).read_text())
    assert partial["complete"] is False and partial["batches_done"] == 1
    assert _new_commits(hub_server) == 1
    first = hub_server.commits(REPO)[0]["id"]

    hub_server.faults.fail_commits_after = None
    commits_before = hub_server.count("POST", "/commit/")
    res = push_folder(hub, _options(max_files_per_commit=2))
    # resumed: the two files of the first commit were not uploaded again
    assert len(res.uploaded) == 5 and len(res.commits) == 3
    assert hub_server.count("POST", "/commit/") == commits_before + 3
    receipt = json.loads((hub / RECEIPT_NAME).read_text())
    assert receipt["complete"] and receipt["commits"][0] == first and len(receipt["commits"]) == 4
    for path, f in list_local(hub).items():
        assert _sha(hub_server.files(REPO)[path]) == f.sha256
    assert not (hub / PARTIAL_NAME).exists()


def test_rate_limit_waits_for_retry_after(hub_server, tmp_path: Path) -> None:
    hub = _folder(tmp_path, 2)
    waits: list[float] = []
    hub_server.faults.rate_limit_next = 2
    hub_server.faults.retry_after = 7
    hub_server.faults.only_paths = r"/api/repos/create|/commit/"
    push_folder(hub, _options(max_attempts=5, max_retry_after_s=5), sleep=waits.append)
    assert waits == [5, 5]  # Retry-After, capped by max_retry_after_s
    assert hub_server.count("POST", "/api/repos/create") == 3
    assert (hub / RECEIPT_NAME).exists()


def test_server_errors_are_retried_with_backoff(hub_server, tmp_path: Path) -> None:
    hub = _folder(tmp_path, 1)
    waits: list[float] = []
    hub_server.faults.error_next = 2
    hub_server.faults.error_status = 503
    hub_server.faults.only_paths = r"/api/repos/create"
    push_folder(hub, _options(backoff_s=1, max_attempts=4), sleep=waits.append)
    assert waits == [1, 2]


def test_wrong_token_gives_a_clear_401_without_the_token(
    hub_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    hub = _folder(tmp_path, 1)
    secret = "hf_wrong_token_must_not_leak_123456"
    monkeypatch.setenv("HF_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubError) as err:
        push_folder(hub, _options())
    msg = str(err.value)
    assert "HTTP 401" in msg and "HF_TOKEN" in msg and "write token" in msg
    out = capsys.readouterr()
    for text in (msg, caplog.text, out.out, out.err):
        assert secret not in text
    assert not (hub / RECEIPT_NAME).exists()


def test_missing_token_and_unreachable_hub(
    hub_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = _folder(tmp_path, 1)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="no Hugging Face token"):
        push_folder(hub, _options())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    with pytest.raises(HubError) as err:
        push_folder(hub, _options(), token="hf_x", endpoint=f"http://127.0.0.1:{port}")
    msg = str(err.value)
    assert "no answer" in msg and "ConnectError" in msg and "network" in msg
    assert "hf_x" not in msg


def test_not_found_and_forbidden_say_what_to_do(hub_server, tmp_path: Path) -> None:
    hub = _folder(tmp_path, 1)
    push_folder(hub, _options())
    hub_server.faults.error_next = 1
    hub_server.faults.error_status = 404
    hub_server.faults.only_paths = r"^/api/datasets/user/arc-test/revision/"
    with pytest.raises(HubError) as err:
        push_folder(hub, _options())
    assert "HTTP 404" in str(err.value) and "not found" in str(err.value)
    hub_server.faults.only_paths = None


def test_forbidden_namespace_and_another_branch(hub_server, tmp_path: Path) -> None:
    hub = _folder(tmp_path, 1)
    with pytest.raises(HubError) as err:
        push_folder(hub, _options(repo_id="someone-else/repo"))
    assert "HTTP 403" in str(err.value) and "write access" in str(err.value)
    res = push_folder(hub, _options(revision="v1"))  # a new branch is created
    assert res.receipt["revision"] == "v1"
    assert set(hub_server.files(REPO, revision="v1")) > {"README.md"}
    assert set(hub_server.files(REPO)) == {".gitattributes"}  # main untouched
    assert os.environ["HF_TOKEN"] not in json.dumps(res.receipt)


def test_push_options_defaults_are_the_schemas_only() -> None:
    import ast
    import dataclasses

    import bids2hub.hub.push as push
    from bids2hub.config import schema_defaults, validate_config
    from bids2hub.errors import ConfigError

    # Each option with a config key defaults to that key's schema default ...
    options = PushOptions(repo_id=REPO)
    keyed = [f for f in dataclasses.fields(PushOptions) if "config" in f.metadata]
    assert {f.name for f in keyed} >= {"revision", "max_files_per_commit", "max_attempts"}
    for f in keyed[1:]:  # all but repo_id, which has no default
        assert getattr(options, f.name) == schema_defaults("hub", *f.metadata["config"])
    # ... and so does an option read from a validated config.
    hub = validate_config({"bids_dir": "bids", "hub": {"repo_id": REPO}})["hub"]
    assert PushOptions.from_config(hub) == options
    changed = validate_config(
        {"bids_dir": "bids", "hub": {"repo_id": REPO, "retry": {"max_attempts": 9}}}
    )["hub"]
    assert PushOptions.from_config(changed).max_attempts == 9
    # A section that skipped validation is an error, not a second set of defaults.
    with pytest.raises(ConfigError) as err:
        PushOptions.from_config({"repo_id": REPO, "retry": {}})
    assert str(err.value) == (
        "config key 'hub.revision' is missing from the push options "
        "(pass the hub section of the validated config)"
    )
    # No literal in the module repeats a default: no `.get(key, default)`, no literal
    # default on an option.
    tree = ast.parse(Path(push.__file__).read_text())
    gets = [
        ast.unparse(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "get"
        and len(n.args) > 1
        and isinstance(n.args[1], ast.Constant)
        and not (isinstance(n.args[1].value, str) and n.args[1].value == "")
    ]
    assert gets == []
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PushOptions"]
    literal = [
        n.target.id
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.value, ast.Constant)
    ]
    assert literal == []


def test_plan_push_uploads_what_differs_and_deletes_only_when_asked(
    hub_server, tmp_path: Path
) -> None:
    from bids2hub.hub.push import connect, list_remote, plan_push

    hub = _folder(tmp_path, 3)
    push_folder(hub, _options())
    api = connect()
    remote = list_remote(api, _options())
    (hub / "data/sub-2/sub-2_ses-1.parquet").unlink()
    # Only a deletion to make: kept, or one commit with no upload.
    keeping = plan_push(list_local(hub), remote, _options())
    assert keeping.changed == [] and keeping.batches == [] and keeping.to_delete == []
    assert keeping.stale == ["data/sub-2/sub-2_ses-1.parquet"]
    deleting = plan_push(list_local(hub), remote, _options(delete_remote=True))
    assert deleting.changed == [] and deleting.batches == [[]]
    assert deleting.to_delete == ["data/sub-2/sub-2_ses-1.parquet"]
    # Changed bytes of an LFS file and of a regular (git blob) file are both found.
    (hub / "data/sub-0/sub-0_ses-1.parquet").write_bytes(b"PAR1 changed PAR1")
    (hub / "derivatives/dataset_description.json").write_text('{"Name": "y"}\n')
    plan = plan_push(list_local(hub), remote, _options(max_files_per_commit=1))
    assert [f.path for f in plan.changed] == [
        "data/sub-0/sub-0_ses-1.parquet",
        "derivatives/dataset_description.json",
    ]
    assert [[f.path for f in b] for b in plan.batches] == [[f.path] for f in plan.changed]
    assert {remote[f.path].sha256 is None for f in plan.changed} == {True, False}


def test_verify_remote_names_the_files_that_differ(hub_server, tmp_path: Path) -> None:
    from bids2hub.hub.push import connect, verify_remote

    hub = _folder(tmp_path, 2)
    push_folder(hub, _options())
    api = connect()
    assert set(verify_remote(api, list_local(hub), _options())) == set(hub_server.files(REPO))
    (hub / "data/sub-1/sub-1_ses-1.parquet").write_bytes(b"PAR1 not pushed PAR1")
    with pytest.raises(HubError) as err:
        verify_remote(api, list_local(hub), _options())
    assert str(err.value) == (
        f"verification of {REPO}@main failed: 1 file(s) differ from the local ones and 0 "
        "should have been deleted (e.g. data/sub-1/sub-1_ses-1.parquet); rerun the push"
    )


def test_a_commit_landing_from_elsewhere_stops_the_push_unverified(
    hub_server, tmp_path: Path
) -> None:
    """Old behaviour: the push committed on top of the other one and wrote a receipt."""
    hub = _folder(tmp_path, 4)
    push_folder(hub, _options())
    (hub / RECEIPT_NAME).unlink()
    for i in range(4):
        (hub / f"data/sub-{i}/sub-{i}_ses-1.parquet").write_bytes(b"PAR1 v2 %d PAR1" % i)
    # between this push's head read and its second commit another client commits
    hub_server.faults.foreign_commit_next = {"data/sub-9/sub-9_ses-1.parquet": b"PAR1 other"}
    with pytest.raises(HubError) as err:
        push_folder(hub, _options(max_files_per_commit=2))
    msg = str(err.value)
    assert "HTTP 412" in msg and "another push committed to user/arc-test@main" in msg
    assert "\n" not in msg and "rerun" in msg
    assert not (hub / RECEIPT_NAME).exists()  # nothing reported as verified
    assert hub_server.commits(REPO)[0]["title"] == "another client"

    # rerun: it builds on the new head, uploads what is missing, verifies
    res = push_folder(hub, _options(max_files_per_commit=2))
    assert res.receipt["complete"] and res.receipt["head"] == hub_server.commits(REPO)[0]["id"]
    assert res.receipt["kept_remote"] == ["data/sub-9/sub-9_ses-1.parquet"]
    for path, f in list_local(hub).items():
        assert _sha(hub_server.files(REPO)[path]) == f.sha256


def test_a_second_push_to_the_same_repository_stops_naming_the_first(
    hub_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `bids2hub push` processes at once; old behaviour: both pushed, interleaved."""
    import subprocess
    import sys

    from tests.conftest import REPO as CHECKOUT
    from tests.conftest import tool_env

    monkeypatch.setenv("BIDS2HUB_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("PYTHONPATH", str(CHECKOUT / "workflow"))  # this checkout's package
    hub = _folder(tmp_path, 2)
    holder = subprocess.Popen(  # the first push, holding the repository's lock
        [sys.executable, "-c", "import sys, time\n"
         "from bids2hub.locks import push_lock\n"
         f"with push_lock({REPO!r}):\n print('held', flush=True)\n sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=tool_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        from bids2hub.config import validate_config

        hub_config = validate_config({"bids_dir": "bids", "hub": {"repo_id": REPO, "push": True}})
        options = json.dumps(hub_config["hub"])
        cmd = [sys.executable, "-m", "bids2hub", "push", "--hub-dir", str(hub),
               "--options", options]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=120)
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert f"Hub dataset repository {REPO} is in use by pid {holder.pid} on host " in last
        assert socket.gethostname() in last and "wait for it to finish" in last
        assert hub_server._repo("dataset", REPO) is None  # nothing pushed, not even created
    finally:
        holder.communicate("", timeout=30)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((hub / RECEIPT_NAME).read_text())["complete"]

"""Publish ``{out_dir}/hub/`` to a Hugging Face Hub dataset repository.

The push is idempotent and resumable:

* every local file is hashed (sha256) and compared with what the remote
  reports for the same path: the LFS sha256 for LFS files, the git blob id
  (sha1 of ``"blob <size>\\0" + content``) for regular files, each compared
  with the same digest of the local bytes, so the comparison is exact;
* only files that differ are uploaded, in batches of at most
  ``max_files_per_commit`` files and ``max_bytes_per_commit`` bytes, one
  ``create_commit`` per batch (the Hub rate-limits commits per repository);
  the dataset card (``README.md``) goes in the last batch, so the card only
  appears once the data it describes is there;
* after each batch a partial receipt (``.push-receipt.partial.json``) records
  the commits so far; a rerun re-lists the remote and so resumes where the
  last run stopped, trusting the remote hashes, not the partial receipt;
* after the last batch every remote file is checked against the local
  sha256, and only then is the receipt (``.push-receipt.json``) written,
  atomically. A rerun with nothing changed makes no commit.

Dot files (receipts, temporaries) are never pushed. Remote files absent
locally are kept unless ``delete_remote`` is set (``.gitattributes`` is
always kept). The token comes from ``HF_TOKEN`` or the cached login and is
never written anywhere: error messages pass through :func:`redact`.

Retries: ``huggingface_hub`` itself retries (5 times, honouring
``Retry-After`` without a cap) the preupload, LFS batch/upload/verify and
tree-listing requests, but not the repository creation, repository info,
paths-info or commit requests. Every Hub call of this module is wrapped in
:func:`with_retries`: 408/429/5xx and connection errors are retried up to
``max_attempts`` times, waiting ``Retry-After`` (capped at
``max_retry_after_s``) or an exponential backoff; other errors stop the push
at once with one line saying what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bids2hub import __version__
from bids2hub.config import schema_defaults
from bids2hub.errors import ConfigError, HubError
from bids2hub.fsutil import atomic_path, cached_sha256, stat_key
from bids2hub.hub.progress import PushProgress, counting_add
from bids2hub.layout import CARD_NAME, PARTIAL_NAME, RECEIPT_NAME

log = logging.getLogger(__name__)
T = TypeVar("T")

KEEP_REMOTE = frozenset({".gitattributes"})
_CHUNK = 4 << 20


#: Message of every commit (numbered ``(i/n)`` per batch).
COMMIT_MESSAGE = "Upload with bids2hub"


def _hub_key(*key: str) -> Any:
    """A field read from the config key ``hub.<key>``, whose default is the schema's."""
    return field(default_factory=partial(schema_defaults, "hub", *key), metadata={"config": key})


@dataclass(frozen=True)
class PushOptions:
    """What and how to push (the ``hub`` section of the config).

    Every option but ``repo_id`` defaults to the schema's default of its config key
    (``workflow/schemas/config.schema.yaml``), the one place defaults are written.
    """

    repo_id: str = field(metadata={"config": ("repo_id",)})
    revision: str = _hub_key("revision")
    private: bool = _hub_key("private")
    max_files_per_commit: int = _hub_key("max_files_per_commit")
    max_bytes_per_commit: int = _hub_key("max_bytes_per_commit")
    delete_remote: bool = _hub_key("delete_remote")
    max_attempts: int = _hub_key("retry", "max_attempts")
    backoff_s: float = _hub_key("retry", "backoff_s")
    max_backoff_s: float = _hub_key("retry", "max_backoff_s")
    max_retry_after_s: float = _hub_key("retry", "max_retry_after_s")
    commit_message: str = COMMIT_MESSAGE

    @classmethod
    def from_config(cls, hub: dict[str, Any]) -> PushOptions:
        """Options from the validated ``hub`` config section (defaults filled in).

        Raises
        ------
        HubError
            ``hub.repo_id`` is not set.
        ConfigError
            A key is missing: ``hub`` did not come through config validation.
        """
        if not hub.get("repo_id"):
            raise HubError("config key 'hub.repo_id' is required when 'hub.push' is true")
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f.metadata.get("config")
            if key is None:
                continue
            node: Any = hub
            try:
                for part in key:
                    node = node[part]
            except (KeyError, TypeError):
                name = ".".join(("hub", *key))
                raise ConfigError(
                    f"config key '{name}' is missing from the push options "
                    "(pass the hub section of the validated config)"
                ) from None
            values[f.name] = node
        return cls(**values)


@dataclass(frozen=True)
class LocalFile:
    """One file of the folder to push."""

    path: str  # relative, POSIX
    abs: Path
    size: int
    sha256: str
    stat_key: tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


@dataclass(frozen=True)
class RemoteFile:
    """One file of the remote repository."""

    path: str
    size: int
    git_oid: str
    sha256: str | None  # LFS files only


@dataclass
class _Secrets:
    values: list[str] = field(default_factory=list)


_SECRETS = _Secrets()


def redact(text: str) -> str:
    """``text`` with every known secret (the token) replaced by ``***``."""
    for secret in _SECRETS.values:
        if secret:
            text = text.replace(secret, "***")
    return text


def check_push_config(hub: dict[str, Any]) -> bool:
    """Whether the push is configured; a one-line error if ``push`` lacks ``repo_id``."""
    if hub.get("push") and not hub.get("repo_id"):
        raise ConfigError(
            "config key 'hub.repo_id' is required when 'hub.push' is true "
            "(set it to 'owner/name' of the dataset repository)"
        )
    return bool(hub.get("push"))


_SIGNED = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")


class RedactFilter(logging.Filter):
    """Logging filter: no token, and no query strings (presigned upload URLs carry signatures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = _SIGNED.sub(r"\1?<redacted>", redact(text))
        if clean != text:
            record.msg, record.args = clean, None
        return True


# --- local side --------------------------------------------------------------------------------


def git_blob_id(path: Path) -> str:
    """Git's blob id of a file (what the Hub reports for regular, non-LFS files)."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def list_local(folder: Path, cache: dict[str, Any] | None = None) -> dict[str, LocalFile]:
    """Every file under ``folder`` to push, with its sha256, in path order.

    Paths with a component starting with ``.`` (receipts, temporaries) are
    left out. ``cache`` maps a path to ``{"stat": [size, mtime_ns, ctime_ns,
    inode], "sha256": ...}`` from an earlier run; an entry is reused only when
    all four match (a replaced file has a new ctime and inode, even with
    ``cp -p``).
    """
    folder = Path(folder)
    cache = cache or {}
    out: dict[str, LocalFile] = {}
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        paths += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    for path in sorted(paths, key=lambda p: p.relative_to(folder).as_posix()):
        rel = path.relative_to(folder).as_posix()
        key, sha = cached_sha256(path, cache.get(rel))
        out[rel] = LocalFile(rel, path, key[0], sha, key)
    return out


def same_content(local: LocalFile, remote: RemoteFile | None) -> bool:
    """Whether the remote file holds exactly the local bytes."""
    if remote is None or remote.size != local.size:
        return False
    if remote.sha256 is not None:
        return remote.sha256 == local.sha256
    return remote.git_oid == git_blob_id(local.abs)


def plan_batches(
    files: Iterable[LocalFile], max_files: int, max_bytes: int
) -> list[list[LocalFile]]:
    """Split ``files`` into commits of at most ``max_files`` files and ``max_bytes`` bytes.

    A file larger than ``max_bytes`` is a batch of its own. The dataset card
    comes last, so that it is committed with (or after) the last data.
    """
    ordered = sorted(files, key=lambda f: (f.path == CARD_NAME, f.path))
    batches: list[list[LocalFile]] = []
    current: list[LocalFile] = []
    size = 0
    for f in ordered:
        if current and (len(current) >= max_files or size + f.size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        batches.append(current)
    return batches


# --- errors and retries ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    status: int | None  # None: no HTTP answer (connection refused, timeout, ...)
    retry_after: float | None
    detail: str
    url: str


def _classify(exc: BaseException) -> _Failure | None:
    """The HTTP status behind ``exc`` (walking its causes), or None if it is no Hub error."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, HfHubHTTPError) and seen.response is not None:
            resp = seen.response
            retry = resp.headers.get("Retry-After", "")
            server = (seen.server_message or "").strip().splitlines()
            try:
                url = str(resp.request.url.copy_with(query=None))
            except RuntimeError:
                url = ""
            return _Failure(
                resp.status_code,
                float(retry) if retry.strip().isdigit() else None,
                server[0][:200] if server else "",
                url,
            )
        if isinstance(seen, httpx2.TransportError):
            try:
                url = str(seen.request.url.copy_with(query=None))
            except RuntimeError:
                url = ""
            return _Failure(None, None, f"{type(seen).__name__}: {seen}"[:200], url)
        seen = seen.__cause__ or seen.__context__
    return None


def _retryable(f: _Failure) -> bool:
    return f.status is None or f.status in (408, 429) or f.status >= 500


def _advice(f: _Failure, repo_id: str, revision: str) -> str:
    source = "HF_TOKEN" if os.environ.get("HF_TOKEN") else "the cached login (hf auth login)"
    if f.status is None:
        return (
            "could not reach the Hub; run the push where there is network "
            "(a login node), check HF_ENDPOINT, then rerun (it resumes)"
        )
    if f.status == 401:
        return f"the Hub rejected the token from {source}; set HF_TOKEN to a valid write token"
    if f.status == 403:
        return f"the token from {source} may not write to {repo_id}; use a token with write access"
    if f.status == 404:
        return (
            f"dataset repository {repo_id} or revision '{revision}' not found, or the token "
            f"from {source} cannot see it"
        )
    if f.status == 412:
        return (
            f"another push committed to {repo_id}@{revision} while this one ran; rerun this "
            "push when that one is done (it resumes and verifies)"
        )
    if f.status == 429:
        return "rate limited by the Hub; rerun later (the push resumes where it stopped)"
    if f.status >= 500:
        return "the Hub failed; rerun later (the push resumes where it stopped)"
    return "the Hub refused the request"


def with_retries(
    what: str,
    fn: Callable[[int], T],
    options: PushOptions,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn(attempt)`` and retry transient Hub failures; raise :class:`HubError` otherwise.

    429 waits ``Retry-After`` seconds (capped at ``max_retry_after_s``); 408,
    5xx and connection errors wait ``backoff_s * 2**(attempt-1)`` (capped at
    ``max_backoff_s``). After ``max_attempts`` attempts, or at once for any
    other error, a :class:`HubError` of one line names the status, the
    endpoint and what to do, without the token.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(attempt)
        except HubError:
            raise
        except Exception as exc:
            failure = _classify(exc)
            if failure is None:
                raise HubError(redact(f"{what} failed: {type(exc).__name__}: {exc}")) from None
            status = "no answer" if failure.status is None else f"HTTP {failure.status}"
            if not _retryable(failure) or attempt >= options.max_attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                detail = f" ({failure.detail})" if failure.detail else ""
                msg = (
                    f"{what} failed{tries}: {status} from {failure.url or 'the Hub'}{detail}: "
                    f"{_advice(failure, options.repo_id, options.revision)}"
                )
                raise HubError(redact(" ".join(msg.split()))) from None
            if failure.status == 429 and failure.retry_after is not None:
                wait = min(failure.retry_after, options.max_retry_after_s)
            else:
                wait = min(options.backoff_s * 2 ** (attempt - 1), options.max_backoff_s)
            log.warning(
                "%s: %s, retrying in %.1f s (attempt %d of %d)",
                what,
                status,
                wait,
                attempt + 1,
                options.max_attempts,
            )
            sleep(wait)


# --- remote side -------------------------------------------------------------------------------


def list_remote(api: Any, options: PushOptions) -> dict[str, RemoteFile]:
    """Every file of the remote revision with its size and hashes."""
    from huggingface_hub.hf_api import RepoFile

    def listing(_attempt: int) -> dict[str, RemoteFile]:
        out = {}
        for entry in api.list_repo_tree(
            options.repo_id, repo_type="dataset", revision=options.revision, recursive=True
        ):
            if isinstance(entry, RepoFile):
                out[entry.path] = RemoteFile(
                    entry.path,
                    entry.size,
                    entry.blob_id,
                    entry.lfs.sha256 if entry.lfs is not None else None,
                )
        return out

    return with_retries(f"listing {options.repo_id}@{options.revision}", listing, options)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_json(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass
class PushResult:
    """What a push did."""

    receipt: dict[str, Any]
    uploaded: list[str]
    deleted: list[str]
    commits: list[str]


@dataclass(frozen=True)
class PushPlan:
    """What a push has to do: the local files, what differs remotely, the commits to make."""

    local: dict[str, LocalFile]
    changed: list[LocalFile]  # local files the remote does not hold byte for byte
    stale: list[str]  # remote files absent locally (deleted only with delete_remote)
    to_delete: list[str]
    batches: list[list[LocalFile]]  # one commit each; the deletions go in the last


def connect(token: str | None = None, endpoint: str | None = None) -> Any:
    """An ``HfApi`` client with the token, which :func:`redact` hides from then on.

    Raises
    ------
    HubError
        No token (neither ``token``, ``HF_TOKEN`` nor a cached login).
    """
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise HubError(
            "no Hugging Face token: set HF_TOKEN (a write token) or run 'hf auth login' "
            "on the machine that pushes"
        )
    _SECRETS.values.append(token)
    return HfApi(
        endpoint=endpoint, token=token, library_name="bids2hub", library_version=__version__
    )


def hash_local(folder: Path, hash_cache: Path | None = None) -> dict[str, LocalFile]:
    """The files to push with their sha256 (see :func:`list_local`), the hash cache updated.

    Raises
    ------
    HubError
        ``folder`` is missing or holds no file to push.
    """
    if not folder.is_dir():
        raise HubError(f"{folder}: nothing to push (folder missing)")
    cache = _read_json(hash_cache).get("files", {})
    local = list_local(folder, cache)
    if not local:
        raise HubError(f"{folder}: nothing to push (no files)")
    if hash_cache is not None:
        _write_json(
            hash_cache,
            {
                "files": {
                    p: {"stat": list(f.stat_key), "sha256": f.sha256} for p, f in local.items()
                }
            },
        )
    return local


def ensure_repo(
    api: Any, options: PushOptions, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Create the dataset repository (private as configured) and the branch, if missing."""
    repo, rev = options.repo_id, options.revision
    with_retries(
        f"creating dataset repository {repo}",
        lambda _a: api.create_repo(
            repo, repo_type="dataset", private=options.private, exist_ok=True
        ),
        options,
        sleep,
    )
    if rev != "main":
        with_retries(
            f"creating branch {rev} of {repo}",
            lambda _a: api.create_branch(repo, branch=rev, repo_type="dataset", exist_ok=True),
            options,
            sleep,
        )


def remote_head(api: Any, options: PushOptions, sleep: Callable[[float], None] = time.sleep) -> str:
    """The commit id the remote revision points at."""
    return with_retries(
        f"reading {options.repo_id}@{options.revision}",
        lambda _a: api.dataset_info(options.repo_id, revision=options.revision).sha,
        options,
        sleep,
    )


def plan_push(
    local: dict[str, LocalFile], remote: dict[str, RemoteFile], options: PushOptions
) -> PushPlan:
    """Compare the local files with the remote ones and split the differences into commits."""
    changed = [f for f in local.values() if not same_content(f, remote.get(f.path))]
    stale = sorted(p for p in remote if p not in local and p not in KEEP_REMOTE)
    to_delete = stale if options.delete_remote else []
    batches = plan_batches(changed, options.max_files_per_commit, options.max_bytes_per_commit)
    if to_delete and not batches:
        batches = [[]]
    log.info(
        "%s@%s: %d local files, %d unchanged, %d to upload (%d bytes) in %d commit(s); "
        "%d remote file(s) not present locally (%s)",
        options.repo_id,
        options.revision,
        len(local),
        len(local) - len(changed),
        len(changed),
        sum(f.size for f in changed),
        len(batches),
        len(stale),
        "deleted" if options.delete_remote else "kept; hub.delete_remote: true deletes them",
    )
    return PushPlan(local, changed, stale, to_delete, batches)


def commit_batch(
    api: Any,
    options: PushOptions,
    batch: list[LocalFile],
    deletions: list[str],
    number: tuple[int, int],
    sleep: Callable[[float], None] = time.sleep,
    progress: PushProgress | None = None,
    parent: str | None = None,
) -> str | None:
    """Commit one batch (uploads and deletions); the new commit id, or None if nothing was due.

    A retried commit first re-lists the remote: a commit whose answer was lost may
    have landed, and only what is still missing is committed again (when nothing
    is, the lost commit is the head, which is returned). The uploads report the
    bytes they read to ``progress``. With ``parent`` the Hub refuses the commit
    (HTTP 412) once the branch has moved past it: another push committed
    meanwhile, and this one stops instead of mixing the two.

    Raises
    ------
    HubError
        The commit failed, or a file changed on disk while it was pushed.
    """
    from huggingface_hub import CommitOperationDelete

    i, n = number

    def commit(attempt: int) -> str | None:
        pending, gone = batch, deletions
        if attempt > 1:
            now = list_remote(api, options)
            pending = [f for f in batch if not same_content(f, now.get(f.path))]
            gone = [p for p in deletions if p in now]
        if not pending and not gone:
            return remote_head(api, options, sleep) if attempt > 1 else None
        ops: list[Any] = []
        for f in pending:
            op = counting_add(f.path, str(f.abs), progress)
            op.upload_info.sha256 = bytes.fromhex(f.sha256)  # hashed once, in hash_local
            ops.append(op)
        ops += [CommitOperationDelete(path_in_repo=p) for p in gone]
        info = api.create_commit(
            options.repo_id,
            ops,
            commit_message=f"{options.commit_message} ({i}/{n})",
            commit_description=(
                f"{len(pending)} file(s) uploaded, {len(gone)} deleted by bids2hub {__version__}"
            ),
            repo_type="dataset",
            revision=options.revision,
            parent_commit=parent,
        )
        return info.oid

    what = f"commit {i}/{n} to {options.repo_id}@{options.revision}"
    oid = with_retries(what, commit, options, sleep)
    for f in batch:
        if stat_key(f.abs) != f.stat_key:
            raise HubError(f"{f.abs}: changed while it was being pushed; rerun the push")
    return oid


def commit_batches(
    api: Any,
    plan: PushPlan,
    options: PushOptions,
    partial: Path,
    previous: list[str],
    sleep: Callable[[float], None] = time.sleep,
    progress: PushProgress | None = None,
) -> list[str]:
    """Make the plan's commits in order, recording each in the partial receipt.

    ``progress`` (optional) is told of the bytes uploaded and of each commit.

    ``previous`` are the commits an interrupted earlier run recorded there; they stay
    in the record.

    Returns
    -------
    list of str
        The ids of the commits this run made (a batch found already on the remote
        makes none).
    """
    commits: list[str] = []
    current = remote_head(api, options, sleep)
    n = len(plan.batches)
    for i, batch in enumerate(plan.batches, 1):
        deletions = plan.to_delete if i == n else []
        oid = commit_batch(api, options, batch, deletions, (i, n), sleep, progress, parent=current)
        if oid and oid != current:
            commits.append(oid)
            current = oid
        log.info("commit %d/%d: %d file(s) -> %s", i, n, len(batch), oid or current)
        if progress is not None:
            progress.commit_done(len(batch), sum(f.size for f in batch))
        _write_json(
            partial,
            {
                "repo_id": options.repo_id,
                "repo_type": "dataset",
                "revision": options.revision,
                "complete": False,
                "commits": [*previous, *commits],
                "batches_done": i,
                "batches": n,
            },
        )
    return commits


def verify_remote(
    api: Any, local: dict[str, LocalFile], options: PushOptions
) -> dict[str, RemoteFile]:
    """The remote files, once each holds the local bytes (and none is left that should go).

    Raises
    ------
    HubError
        Some remote file differs from the local one, or one that should have been
        deleted is still there.
    """
    remote = list_remote(api, options)
    wrong = [p for p, f in local.items() if not same_content(f, remote.get(p))]
    extra = [p for p in remote if p not in local and p not in KEEP_REMOTE]
    if wrong or (options.delete_remote and extra):
        bad = wrong or extra
        raise HubError(
            f"verification of {options.repo_id}@{options.revision} failed: {len(wrong)} "
            f"file(s) differ from the local ones and "
            f"{len(extra) if options.delete_remote else 0} should have been deleted "
            f"(e.g. {', '.join(bad[:3])}); rerun the push"
        )
    return remote


def check_head(options: PushOptions, head: str, expected: str) -> None:
    """Stop unverified when the branch is not where this push left it.

    Raises
    ------
    HubError
        Another push committed between this one's last commit (or its start)
        and its verification: what was verified may already be mixed.
    """
    if head != expected:
        raise HubError(
            f"{options.repo_id}@{options.revision} moved to {head} while this push verified "
            f"{expected}: another push committed meanwhile; rerun the push (it resumes and "
            "verifies again)"
        )


def receipt_data(
    plan: PushPlan,
    remote: dict[str, RemoteFile],
    options: PushOptions,
    *,
    head: str,
    commits: list[str],
) -> dict[str, Any]:
    """The receipt of a verified push (``commits``: every commit of the push, resumed ones too)."""
    files: dict[str, dict[str, Any]] = {}
    for p, f in plan.local.items():
        entry: dict[str, Any] = {"sha256": f.sha256, "size": f.size}
        if remote[p].sha256 is None:
            entry["git_oid"] = remote[p].git_oid
        files[p] = entry
    return {
        "repo_id": options.repo_id,
        "repo_type": "dataset",
        "revision": options.revision,
        "head": head,
        "complete": True,
        "commits": commits,
        "files": files,
        "deleted": plan.to_delete,
        "kept_remote": plan.stale if not options.delete_remote else [],
        "bids2hub_version": __version__,
    }


def write_receipt(receipt: Path, data: dict[str, Any]) -> None:
    """Write the receipt atomically and drop the partial one next to it."""
    _write_json(receipt, data)
    receipt.with_name(PARTIAL_NAME).unlink(missing_ok=True)


def push_folder(
    folder: Path,
    options: PushOptions,
    *,
    receipt: Path | None = None,
    hash_cache: Path | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress_interval_s: float = 5.0,
) -> PushResult:
    """Push ``folder`` to ``options.repo_id`` and write the receipt after verification.

    The steps: :func:`connect`, :func:`hash_local`, :func:`ensure_repo`,
    :func:`list_remote` and :func:`plan_push`, :func:`commit_batches`,
    :func:`verify_remote`, :func:`receipt_data` and :func:`write_receipt`.

    Parameters
    ----------
    folder
        The ``hub/`` folder (shards, masks, derivatives, README.md).
    options
        Repository, batching and retry options.
    receipt
        Where to write the receipt (default ``folder/.push-receipt.json``); the
        partial receipt is ``.push-receipt.partial.json`` next to it.
    hash_cache
        JSON file caching local sha256 by (size, mtime, ctime, inode) between
        runs (optional).
    token
        Hub token; default ``HF_TOKEN`` or the cached login.
    endpoint
        Hub endpoint; default ``HF_ENDPOINT`` or huggingface.co.
    sleep
        How to wait between retries (tests record the waits).
    progress_interval_s
        Least seconds between two progress lines (bytes, files, ETA) while uploading;
        one also follows every commit (:mod:`bids2hub.hub.progress`).

    Raises
    ------
    HubError
        One line: what failed, the HTTP status and endpoint, what to do.
    """
    folder = Path(folder)
    receipt = Path(receipt) if receipt else folder / RECEIPT_NAME
    partial = receipt.with_name(PARTIAL_NAME)
    api = connect(token, endpoint)
    local = hash_local(folder, hash_cache)
    ensure_repo(api, options, sleep)
    plan = plan_push(local, list_remote(api, options), options)
    previous = _read_json(partial).get("commits", [])
    progress = PushProgress(
        sum(f.size for f in plan.changed), len(plan.changed), interval_s=progress_interval_s
    )
    start = remote_head(api, options, sleep)
    commits = commit_batches(api, plan, options, partial, previous, sleep, progress)
    remote = verify_remote(api, local, options)
    head = remote_head(api, options, sleep)
    check_head(options, head, commits[-1] if commits else start)
    data = receipt_data(plan, remote, options, head=head, commits=[*previous, *commits])
    write_receipt(receipt, data)
    uploaded = [f.path for b in plan.batches for f in b]
    log.info(
        "%s@%s verified: %d files, %d uploaded, %d commit(s), head %s",
        options.repo_id,
        options.revision,
        len(local),
        len(uploaded),
        len(commits),
        head,
    )
    return PushResult(data, uploaded, plan.to_delete, commits)

"""A local Hugging Face Hub test server: stdlib ``http.server`` on 127.0.0.1.

It answers the endpoints ``huggingface_hub`` 2.x and ``datasets`` use to
create a repository, upload files (regular files inline in the commit, LFS
files through preupload -> LFS batch -> PUT -> verify -> commit), list and
read them back (tree, paths-info, resolve with ``Range``), so that
``HfApi.create_commit`` and ``datasets.load_dataset(repo_id)`` (also with
``streaming=True``) run unchanged against it with ``HF_ENDPOINT`` pointing
here and ``HF_HUB_DISABLE_XET=1`` (the Xet protocol is not implemented).

Repositories live on disk under ``root``: LFS objects content-addressed by
sha256 (``lfs/<oid>``), regular files by their git blob id
(``blobs/<sha1>``), one JSON file per commit (``commits/<oid>.json`` with its
parent and the full file table) and the branch heads (``refs.json``).

A test steers it through :class:`Faults` (fail commits after N, 429 with
Retry-After, 5xx, ...) and a commits-per-hour limit per repository like the Hub's
(``commits_per_hour``: a commit beyond it within a sliding hour is answered 429 with
``Retry-After`` = the seconds until the oldest commit of the window is an hour old;
``clock`` can be a test's clock), and reads :attr:`HubServer.requests` and
:meth:`HubServer.commits` to count what happened.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

REPO_TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}
PREFIX = {"dataset": "datasets/", "model": "", "space": "spaces/"}
# Files the Hub stores with LFS whatever their size (its default .gitattributes).
LFS_SUFFIXES = (".parquet", ".gz", ".nii", ".arrow", ".bin", ".safetensors", ".zip", ".npy")
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
FIXED_DATE = "2025-01-01T00:00:00.000Z"


def git_blob_id(data: bytes) -> str:
    """Git's object id of a blob (what the Hub reports as ``oid`` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Faults:
    """Failures the server injects, set by a test while the server runs."""

    fail_commits_after: int | None = None  # commits accepted before every commit fails
    fail_commit_status: int = 500
    rate_limit_next: int = 0  # answer this many coming requests with 429
    retry_after: int = 1
    error_next: int = 0  # answer this many coming requests with error_status
    error_status: int = 503
    only_paths: str | None = None  # regex: limit rate_limit/error to matching request paths
    # Another client's commit (path -> bytes) lands just before the next commit is applied.
    foreign_commit_next: dict[str, bytes] | None = None


@dataclass
class Request:
    """One request the server answered."""

    method: str
    path: str
    status: int
    authorization: str | None


@dataclass
class _Repo:
    dir: Path
    repo_type: str
    repo_id: str
    private: bool
    lock: threading.RLock = field(default_factory=threading.RLock)

    # --- storage -----------------------------------------------------------------------
    def refs(self) -> dict[str, str]:
        return json.loads((self.dir / "refs.json").read_text())

    def set_ref(self, name: str, oid: str) -> None:
        refs = self.refs() if (self.dir / "refs.json").exists() else {}
        refs[name] = oid
        tmp = self.dir / f".refs.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(refs, sort_keys=True))
        os.replace(tmp, self.dir / "refs.json")

    def commit(self, oid: str) -> dict[str, Any] | None:
        path = self.dir / "commits" / f"{oid}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def resolve(self, rev: str) -> dict[str, Any] | None:
        """Commit of a branch name or a full commit id."""
        refs = self.refs()
        if rev in refs:
            return self.commit(refs[rev])
        if re.fullmatch(r"[0-9a-f]{40}", rev):
            return self.commit(rev)
        return None

    def write_commit(self, parent: str | None, title: str, files: dict[str, Any]) -> str:
        body = json.dumps({"parent": parent, "title": title, "files": files}, sort_keys=True)
        oid = hashlib.sha1(f"{body}\0{uuid.uuid4().hex}".encode()).hexdigest()
        record = {"id": oid, "parent": parent, "title": title, "date": FIXED_DATE, "files": files}
        (self.dir / "commits").mkdir(exist_ok=True)
        (self.dir / "commits" / f"{oid}.json").write_text(json.dumps(record, sort_keys=True))
        return oid

    def blob_path(self, entry: dict[str, Any]) -> Path:
        if entry.get("lfs"):
            return self.dir / "lfs" / entry["sha256"]
        return self.dir / "blobs" / entry["oid"]

    def history(self, head: str) -> list[dict[str, Any]]:
        out = []
        oid: str | None = head
        while oid:
            c = self.commit(oid)
            if c is None:
                break
            out.append(c)
            oid = c["parent"]
        return out


class HubServer:
    """The server: start with :meth:`start`, stop with :meth:`stop`.

    Parameters
    ----------
    root
        Folder for the repositories (created).
    tokens
        Valid tokens (``Authorization: Bearer <token>``); the user is ``user``.
    lfs_threshold
        Files at least this large are stored with LFS (as well as binary ones
        and the suffixes of the Hub's default ``.gitattributes``).
    page_size
        Entries per page of the tree listing (pagination via ``Link`` headers).
    commits_per_hour
        Most commits a repository takes in any hour (None: no limit); the Hub's is
        seen at 128-320.
    clock
        Seconds, monotonic, for the commit limit's window.
    """

    def __init__(
        self,
        root: Path,
        tokens: set[str],
        *,
        user: str = "user",
        lfs_threshold: int = 10 * 1024 * 1024,
        page_size: int = 1000,
        commits_per_hour: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tokens = set(tokens)
        self.user = user
        self.lfs_threshold = lfs_threshold
        self.page_size = page_size
        self.commits_per_hour = commits_per_hour
        self.clock = clock
        self.commit_times: dict[str, list[float]] = {}  # repository -> times of its commits
        self.faults = Faults()
        self.requests: list[Request] = []
        self.unknown: list[str] = []  # requests for endpoints the server does not implement
        self.lock = threading.RLock()
        self._upload_secret = secrets.token_hex(8)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The endpoint (``HF_ENDPOINT``)."""
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        """Listen on 127.0.0.1, port chosen by the system, in a daemon thread."""
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the repositories stay on disk)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # --- what tests read -------------------------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str) -> _Repo | None:
        d = self.root / "repos" / repo_type / repo_id
        if not (d / "meta.json").is_file():
            return None
        meta = json.loads((d / "meta.json").read_text())
        return _Repo(d, repo_type, repo_id, meta["private"])

    def commits(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> list:
        """Commits of a branch, newest first (the repository's initial commit included)."""
        repo = self._repo(repo_type, repo_id)
        assert repo is not None, f"no repository {repo_id}"
        return repo.history(repo.refs()[revision])

    def files(
        self, repo_id: str, repo_type: str = "dataset", revision: str = "main"
    ) -> dict[str, bytes]:
        """Content of every file at the head of a branch."""
        repo = self._repo(repo_type, repo_id)
        assert repo is not None, f"no repository {repo_id}"
        head = repo.resolve(revision)
        assert head is not None
        return {p: repo.blob_path(e).read_bytes() for p, e in head["files"].items()}

    def count(self, method: str, pattern: str) -> int:
        """How many requests matched ``method`` and the path regex ``pattern``."""
        with self.lock:
            return sum(
                1 for r in self.requests if r.method == method and re.search(pattern, r.path)
            )

    # --- internals -------------------------------------------------------------------------
    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        d = self.root / "repos" / repo_type / repo_id
        (d / "lfs").mkdir(parents=True)
        (d / "blobs").mkdir()
        repo = _Repo(d, repo_type, repo_id, private)
        data = GITATTRIBUTES.encode()
        oid = git_blob_id(data)
        (d / "blobs" / oid).write_bytes(data)
        files = {".gitattributes": {"oid": oid, "size": len(data), "lfs": False}}
        head = repo.write_commit(None, "initial commit", files)
        repo.set_ref("main", head)
        (d / "meta.json").write_text(json.dumps({"private": private}))
        return repo

    def commits_times_of(self, key: str) -> list[float]:
        """Times (``clock``) of the commits counted against a repository's hourly limit."""
        return self.commit_times.get(key, [])

    def store_upload(self, repo: _Repo, oid: str, fh: Any, length: int | None) -> bool:
        """Stream an LFS object to disk; keep it only if its sha256 is ``oid``."""
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=repo.dir / "lfs", prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _body_chunks(fh, length):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != oid:
                return False
            os.replace(tmp, repo.dir / "lfs" / oid)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _body_chunks(fh: Any, length: int | None, size: int = 1 << 20):
    """Read a request body: ``Content-Length`` bytes, or chunked transfer encoding."""
    if length is not None:
        left = length
        while left > 0:
            chunk = fh.read(min(size, left))
            if not chunk:
                raise ConnectionError("request body ended early")
            left -= len(chunk)
            yield chunk
        return
    while True:
        line = fh.readline().strip()
        n = int(line.split(b";")[0], 16)
        if n == 0:
            while fh.readline().strip():  # trailers
                pass
            return
        left = n
        while left > 0:
            chunk = fh.read(min(size, left))
            left -= len(chunk)
            yield chunk
        fh.readline()


class _HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        extra: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}
        self.headers = headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; requests are recorded in hub.requests

    # --- plumbing --------------------------------------------------------------------------
    def _length(self) -> int | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        return int(self.headers.get("Content-Length") or 0)

    def _body(self) -> bytes:
        if self._consumed:
            return self._cached
        self._consumed = True
        self._cached = b"".join(_body_chunks(self.rfile, self._length()))
        return self._cached

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body() or b"{}")
        except ValueError:
            raise _HttpError(400, "request body is not JSON") from None

    def _send(
        self,
        status: int,
        body: bytes | dict | list = b"",
        headers: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        if not self._consumed:
            self._body()  # drain, so that the kept-alive connection stays in sync
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self._record(status)
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _record(self, status: int) -> None:
        # Recorded before the answer is sent, so that a client never sees an answer
        # before the test can count it.
        with self.hub.lock:
            self.hub.requests.append(
                Request(self.command, self.path, status, self.headers.get("Authorization"))
            )

    def _error(self, exc: _HttpError, head_only: bool = False) -> None:
        headers = {"X-Error-Message": exc.message, **exc.headers}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        self._send(exc.status, {"error": exc.message, **exc.extra}, headers, head_only)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _check_token(self) -> bool:
        """True with a valid token, False without one; 401 for a wrong one."""
        token = self._token()
        if token is None:
            return False
        if token not in self.hub.tokens:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return True

    def _inject_faults(self) -> None:
        f = self.hub.faults
        with self.hub.lock:
            if f.only_paths and not re.search(f.only_paths, self.path):
                return
            if f.rate_limit_next > 0:
                f.rate_limit_next -= 1
                self._send(
                    429,
                    {"error": "rate limited"},
                    {"Retry-After": str(f.retry_after), "X-Error-Message": "rate limited"},
                    self.command == "HEAD",
                )
                raise _Done
            if f.error_next > 0:
                f.error_next -= 1
                self._send(
                    f.error_status, {"error": "injected error"}, None, self.command == "HEAD"
                )
                raise _Done

    def do_GET(self) -> None:
        _run(self)

    def do_HEAD(self) -> None:
        _run(self)

    def do_POST(self) -> None:
        _run(self)

    def do_PUT(self) -> None:
        _run(self)

    # --- routing ---------------------------------------------------------------------------
    def _route(self, head_only: bool) -> None:
        parts = urlsplit(self.path)
        segs = [unquote(s) for s in parts.path.split("/")[1:]]
        query = parse_qs(parts.query)
        method = self.command
        if segs[:2] == ["api", "whoami-v2"]:
            return self._whoami()
        if segs[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if segs[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if segs[:1] == ["lfs-upload"] and method == "PUT":
            return self._lfs_put(segs[1:], query)
        if len(segs) >= 4 and segs[0] == "api" and segs[1] in REPO_TYPES:
            repo_type = REPO_TYPES[segs[1]]
            repo_id = f"{segs[2]}/{segs[3]}"
            rest = segs[4:]
            repo = self._open(repo_type, repo_id, write=method == "POST")
            if not rest and method == "GET":
                return self._info(repo, "main", query)
            if rest[:1] == ["revision"] and len(rest) >= 2 and method == "GET":
                return self._info(repo, "/".join(rest[1:]), query)
            if rest[:1] == ["tree"] and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]), query)
            if rest[:1] == ["paths-info"] and len(rest) == 2 and method == "POST":
                return self._paths_info(repo, rest[1])
            if rest[:1] == ["preupload"] and len(rest) == 2 and method == "POST":
                return self._preupload(repo, rest[1])
            if rest[:1] == ["commit"] and len(rest) == 2 and method == "POST":
                return self._commit(repo, rest[1])
            if rest[:1] == ["branch"] and len(rest) == 2 and method == "POST":
                return self._branch(repo, rest[1])
            if rest[:1] == ["commits"] and len(rest) == 2 and method == "GET":
                return self._list_commits(repo, rest[1])
            self._unknown(method, parts.path)
        # /datasets/<owner>/<name>.git/info/lfs/objects/{batch,verify}
        lfs = re.fullmatch(
            r"/(?:(datasets|spaces)/)?([^/]+)/([^/]+)\.git/info/lfs/objects/(batch|verify)",
            parts.path,
        )
        if lfs and method == "POST":
            repo_type = REPO_TYPES.get(lfs.group(1) or "models", "model")
            repo = self._open(repo_type, f"{lfs.group(2)}/{lfs.group(3)}", write=True)
            return self._lfs_batch(repo) if lfs.group(4) == "batch" else self._lfs_verify(repo)
        # /datasets/<owner>/<name>/resolve/<rev>/<path>
        raw = parts.path.split("/")[1:]
        if raw and raw[0] in ("datasets", "spaces"):
            repo_type, raw = REPO_TYPES[raw[0]], raw[1:]
        else:
            repo_type = "model"
        if len(raw) >= 5 and raw[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self._open(repo_type, f"{unquote(raw[0])}/{unquote(raw[1])}", write=False)
            path = "/".join(unquote(s) for s in raw[4:])
            return self._resolve(repo, unquote(raw[3]), path, head_only)
        self._unknown(method, parts.path)

    def _unknown(self, method: str, path: str) -> None:
        with self.hub.lock:
            self.hub.unknown.append(f"{method} {path}")
        raise _HttpError(404, f"no such endpoint: {method} {path}")

    def _open(self, repo_type: str, repo_id: str, *, write: bool) -> _Repo:
        authed = self._check_token()
        repo = self.hub._repo(repo_type, repo_id)
        if repo is None or (repo.private and not authed):
            raise _HttpError(404, f"Repository {repo_id} not found", "RepoNotFound")
        if write and not authed:
            raise _HttpError(401, "You must be authenticated to write to this repository")
        return repo

    def _commit_for(self, repo: _Repo, rev: str) -> dict[str, Any]:
        commit = repo.resolve(rev)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # --- endpoints -------------------------------------------------------------------------
    def _whoami(self) -> None:
        if not self._check_token():
            raise _HttpError(401, "Invalid credentials in Authorization header")
        self._send(
            200,
            {
                "type": "user",
                "id": "0" * 24,
                "name": self.hub.user,
                "fullname": "Test User",
                "orgs": [],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "test", "role": "write"},
                },
            },
        )

    def _create_repo(self) -> None:
        if not self._check_token():
            raise _HttpError(401, "You must be authenticated to create a repository")
        body = self._json_body()
        repo_type = body.get("type") or "model"
        owner = body.get("organization") or self.hub.user
        repo_id = f"{owner}/{body['name']}"
        if owner != self.hub.user:
            raise _HttpError(403, f"You don't have the rights to create a repository under {owner}")
        url = f"{self.hub.url}/{PREFIX[repo_type]}{repo_id}"
        with self.hub.lock:
            if self.hub._repo(repo_type, repo_id) is not None:
                raise _HttpError(409, "You already created this repo", extra={"url": url})
            private = body.get("private")
            if private is None:
                private = body.get("visibility") == "private"
            self.hub.create_repo(repo_type, repo_id, bool(private))
        self._send(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex})

    def _validate_yaml(self) -> None:
        content = self._json_body().get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        errors = []
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        if errors:
            self._send(400, {"errors": errors, "error": errors[0]["message"]})
        else:
            self._send(200, {"errors": [], "warnings": []})

    def _info(self, repo: _Repo, rev: str, query: dict[str, list[str]]) -> None:
        commit = self._commit_for(repo, rev)
        siblings = []
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        for path, e in sorted(commit["files"].items()):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(self._entry(path, e))
                sib.pop("path")
                sib.pop("type")
                sib["blobId"] = sib.pop("oid")
            siblings.append(sib)
        card = {}
        if "README.md" in commit["files"]:
            text = repo.blob_path(commit["files"]["README.md"]).read_text(errors="replace")
            m = re.match(r"^---\n(.*?)\n---\n", text, re.S)
            card = (yaml.safe_load(m.group(1)) or {}) if m else {}
        self._send(
            200,
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit["id"],
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": card.get("tags", []) if isinstance(card, dict) else [],
                "cardData": card,
                "siblings": siblings,
                "lastModified": FIXED_DATE,
                "createdAt": FIXED_DATE,
            },
        )

    def _entry(self, path: str, e: dict[str, Any], commit: dict | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
        if e.get("lfs"):
            pointer = LFS_POINTER.format(oid=e["sha256"], size=e["size"])
            out["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": len(pointer)}
        if commit is not None:
            out["lastCommit"] = {"id": commit["id"], "title": commit["title"], "date": FIXED_DATE}
        return out

    @staticmethod
    def _dir_entry(path: str, files: dict[str, Any], commit: dict | None = None) -> dict:
        under = sorted((p, e["oid"]) for p, e in files.items() if p.startswith(path + "/"))
        oid = hashlib.sha1(json.dumps(under).encode()).hexdigest()
        out: dict[str, Any] = {"type": "directory", "oid": oid, "size": 0, "path": path}
        if commit is not None:
            out["lastCommit"] = {"id": commit["id"], "title": commit["title"], "date": FIXED_DATE}
        return out

    def _listing(self, commit: dict, base: str, recursive: bool, expand: bool) -> list[dict]:
        files = commit["files"]
        last = commit if expand else None
        prefix = f"{base}/" if base else ""
        if base and base not in files and not any(p.startswith(prefix) for p in files):
            raise _HttpError(404, f"{base} does not exist", "EntryNotFound")
        if base in files:
            raise _HttpError(400, f"{base} is a file, not a folder")
        dirs: set[str] = set()
        entries: list[dict] = []
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                if not recursive and depth > 1:
                    break
                dirs.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                entries.append(self._entry(path, files[path], last))
        entries += [self._dir_entry(d, files, last) for d in dirs]
        return sorted(entries, key=lambda x: x["path"])

    def _tree(self, repo: _Repo, rev: str, base: str, query: dict[str, list[str]]) -> None:
        commit = self._commit_for(repo, rev)
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        expand = query.get("expand", ["false"])[0].lower() in ("true", "1")
        entries = self._listing(commit, base.strip("/"), recursive, expand)
        size = min(self.hub.page_size, 50) if expand else self.hub.page_size
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + size]
        headers = {}
        if start + size < len(entries):
            q = f"recursive={str(recursive).lower()}&expand={str(expand).lower()}"
            url = (
                f"{self.hub.url}/api/{repo.repo_type}s/{repo.repo_id}/tree/{quote(rev, safe='')}"
                f"{'/' + quote(base, safe='') if base else ''}?{q}&cursor={start + size}"
            )
            headers["Link"] = f'<{url}>; rel="next"'
        self._send(200, page, headers)

    def _paths_info(self, repo: _Repo, rev: str) -> None:
        commit = self._commit_for(repo, rev)
        ctype = self.headers.get("Content-Type") or ""
        if "json" in ctype:
            body = self._json_body()
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:
            form = parse_qs(self._body().decode())
            paths = form.get("paths", [])
            expand = form.get("expand", ["false"])[0].lower() in ("true", "1")
        files = commit["files"]
        out = []
        for p in dict.fromkeys(x.strip("/") for x in paths):
            if p in files:
                out.append(self._entry(p, files[p], commit if expand else None))
            elif p == "" or any(f.startswith(p + "/") for f in files):
                out.append(self._dir_entry(p, files, commit if expand else None))
        self._send(200, out)

    def _preupload(self, repo: _Repo, rev: str) -> None:
        commit = self._commit_for(repo, rev)
        out = []
        for f in self._json_body().get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = (
                f["size"] >= self.hub.lfs_threshold
                or b"\0" in sample
                or f["path"].endswith(LFS_SUFFIXES)
            )
            existing = commit["files"].get(f["path"])
            oid = None
            if existing is not None:
                oid = existing["sha256"] if existing.get("lfs") else existing["oid"]
            out.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._send(200, {"files": out, "commitOid": commit["id"]})

    def _lfs_batch(self, repo: _Repo) -> None:
        body = self._json_body()
        if body.get("operation") != "upload":
            raise _HttpError(400, "only the upload operation is implemented")
        objects = []
        base = f"{self.hub.url}/{PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects"
        for obj in body.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            stored = repo.dir / "lfs" / oid
            if stored.is_file() and stored.stat().st_size == size:
                objects.append({"oid": oid, "size": size})
                continue
            sig = hashlib.sha256(f"{self.hub._upload_secret}:{oid}".encode()).hexdigest()
            href = (
                f"{self.hub.url}/lfs-upload/{repo.repo_type}/{repo.repo_id}/{oid}"
                f"?size={size}&sig={sig}"
            )
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": href},
                        "verify": {"href": f"{base}/verify"},
                    },
                }
            )
        self._send(
            200,
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_put(self, segs: list[str], query: dict[str, list[str]]) -> None:
        # Presigned upload URL (like the Hub's storage): no token, a signature instead.
        repo_type, oid = segs[0], segs[-1]
        repo_id = "/".join(segs[1:-1])
        sig = hashlib.sha256(f"{self.hub._upload_secret}:{oid}".encode()).hexdigest()
        if query.get("sig", [""])[0] != sig:
            raise _HttpError(403, "bad upload signature")
        repo = self.hub._repo(repo_type, repo_id)
        if repo is None:
            raise _HttpError(404, "no such repository", "RepoNotFound")
        self._consumed = True
        ok = self.hub.store_upload(repo, oid, self.rfile, self._length())
        if not ok:
            raise _HttpError(400, "uploaded content does not match its sha256")
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _lfs_verify(self, repo: _Repo) -> None:
        body = self._json_body()
        stored = repo.dir / "lfs" / body.get("oid", "-")
        if not stored.is_file() or stored.stat().st_size != body.get("size"):
            raise _HttpError(404, f"LFS object {body.get('oid')} not found")
        self._send(200, {"message": "ok"})

    def _commit(self, repo: _Repo, rev: str) -> None:
        lines = [json.loads(x) for x in self._body().splitlines() if x.strip()]
        with repo.lock:
            head = self._commit_for(repo, rev)
            if rev not in repo.refs():
                raise _HttpError(400, f"can only commit to a branch, not {rev}")
            f = self.hub.faults
            with self.hub.lock:
                made = len(repo.history(head["id"])) - 1
                if f.fail_commits_after is not None and made >= f.fail_commits_after:
                    raise _HttpError(f.fail_commit_status, "injected commit failure")
                foreign, f.foreign_commit_next = f.foreign_commit_next, None
            self._rate_limit_commit(repo)
            if foreign:
                files = dict(head["files"])
                for path, data in foreign.items():
                    (repo.dir / "blobs" / git_blob_id(data)).write_bytes(data)
                    files[path] = {"oid": git_blob_id(data), "size": len(data), "lfs": False}
                repo.set_ref(rev, repo.write_commit(head["id"], "another client", files))
                head = self._commit_for(repo, rev)
            if not lines or lines[0].get("key") != "header":
                raise _HttpError(400, "the first line must be the commit header")
            header = lines[0]["value"]
            parent = header.get("parentCommit")
            if parent and parent != head["id"]:
                raise _HttpError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head["files"])
            for item in lines[1:]:
                key, value = item["key"], item["value"]
                path = value["path"].strip("/")
                if key == "file":
                    data = base64.b64decode(value["content"])
                    oid = git_blob_id(data)
                    (repo.dir / "blobs" / oid).write_bytes(data)
                    files[path] = {"oid": oid, "size": len(data), "lfs": False}
                elif key == "lfsFile":
                    sha = value["oid"]
                    stored = repo.dir / "lfs" / sha
                    if not stored.is_file():
                        raise _HttpError(422, f"LFS object {sha} for {path} was never uploaded")
                    size = stored.stat().st_size
                    pointer = LFS_POINTER.format(oid=sha, size=size).encode()
                    files[path] = {
                        "oid": git_blob_id(pointer),
                        "size": size,
                        "lfs": True,
                        "sha256": sha,
                    }
                elif key == "deletedFile":
                    if path not in files:
                        raise _HttpError(404, f"A file with this name doesn't exist: {path}")
                    del files[path]
                elif key == "deletedFolder":
                    for p in [p for p in files if p.startswith(path + "/")]:
                        del files[p]
                else:
                    raise _HttpError(400, f"unknown commit operation {key!r}")
            oid = repo.write_commit(head["id"], header.get("summary", ""), files)
            repo.set_ref(rev, oid)
        url = f"{self.hub.url}/{PREFIX[repo.repo_type]}{repo.repo_id}/commit/{oid}"
        self._send(
            200, {"success": True, "commitOid": oid, "commitUrl": url, "pullRequestUrl": None}
        )

    def _rate_limit_commit(self, repo: _Repo) -> None:
        """Count a commit against the hourly limit, or answer 429 with Retry-After."""
        limit = self.hub.commits_per_hour
        if limit is None:
            return
        with self.hub.lock:
            now = self.hub.clock()
            key = f"{repo.repo_type}/{repo.repo_id}"
            times = [t for t in self.hub.commits_times_of(key) if now - t < 3600.0]
            if len(times) >= limit:
                wait = max(1, int(3600.0 - (now - times[0]) + 0.999))
                self.hub.commit_times[key] = times
                raise _HttpError(
                    429,
                    f"You have exceeded the rate limit for repository commits ({limit} per hour); "
                    f"retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self.hub.commit_times[key] = [*times, now]

    def _branch(self, repo: _Repo, branch: str) -> None:
        body = self._json_body() if self._length() else {}
        with repo.lock:
            if branch in repo.refs():
                raise _HttpError(409, f"Reference {branch} already exists")
            start = self._commit_for(repo, body.get("startingPoint") or "main")
            repo.set_ref(branch, start["id"])
        self._send(200, {})

    def _list_commits(self, repo: _Repo, rev: str) -> None:
        head = self._commit_for(repo, rev)
        self._send(
            200,
            [
                {
                    "id": c["id"],
                    "title": c["title"],
                    "message": "",
                    "authors": [],
                    "date": c["date"],
                }
                for c in repo.history(head["id"])
            ],
        )

    def _resolve(self, repo: _Repo, rev: str, path: str, head_only: bool) -> None:
        commit = self._commit_for(repo, rev)
        entry = commit["files"].get(path)
        if entry is None:
            raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound")
        blob = repo.blob_path(entry)
        size = entry["size"]
        headers = {
            "X-Repo-Commit": commit["id"],
            "ETag": f'"{entry["oid"]}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.get("lfs"):
            headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Size"] = str(size)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise _HttpError(416, f"bad range {rng}")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(size - int(m.group(2)), 0)
            if start >= size and size > 0:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"}, head_only)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(end - start + 1, 0)
        headers["Content-Length"] = str(length)
        self._body()
        self._record(status)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head_only:
            with open(blob, "rb") as fh:
                fh.seek(start)
                left = length
                while left > 0:
                    chunk = fh.read(min(1 << 20, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)


class _Done(Exception):
    """A fault was injected and answered."""


def _run(handler: _Handler) -> None:
    handler._consumed = False
    handler._cached = b""
    try:
        handler._inject_faults()
    except _Done:
        return
    except (ConnectionError, BrokenPipeError):
        handler.close_connection = True
        return
    head_only = handler.command == "HEAD"
    try:
        handler._route(head_only)
    except _HttpError as exc:
        handler._error(exc, head_only)
    except (ConnectionError, BrokenPipeError):
        handler.close_connection = True
    except Exception as exc:  # a bug of the server: answer 500 and say what
        handler._error(_HttpError(500, f"test server error: {type(exc).__name__}: {exc}"))

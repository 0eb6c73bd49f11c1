"""The push at ARC's scale against the local Hub server (tests/hubserver.py).

What is measured
----------------
A ``hub/`` folder of ``--files`` shards (default 902, ARC's sessions) of ``--total-gb``
GB in all (default 20; sizes drawn log-normally like ARC's 1.7-805 MB sessions and
scaled to the total) plus a card. Each shard is a sparse file with 64 KiB of random
bytes at either end, so every file is unique while the folder takes almost no disk;
reading a hole costs no disk I/O, only the copy and the hashing, for the baseline and
the push alike. The server runs in its own process with the Hub's commit limit
(``commits_per_hour``, default 320) and stores what it receives on disk, hashing it.

1. local sha256 of every file, once (the push's hash cache is seeded with them, so
   the push below is timed without its first hashing pass, which a rerun skips too);
2. baseline: a plain HTTP PUT of every file's bytes to the same server's upload URL
   (one LFS batch request per 100 files for the URLs, then sequential PUTs on one
   connection), in the same run;
3. ``bids2hub push`` of the folder (the CLI the rule runs, default batching: 100 files
   per commit): its time, throughput and the ratio to the baseline; its commits against
   the limit at 128 and 320 an hour (the wall time the limit would add, computed: the
   first L commits of an hour pass, commit L+k waits for the hour of commit k);
4. the same push to a new repository, killed (SIGKILL) once about half the bytes are
   on the server, then run again: the resume's time and what it uploaded, against the
   uninterrupted push.

The stored repositories are removed between phases and the whole work folder at the
end (unless ``--keep``). Every run ends with the receipt checked: every file's sha256
on the server equals the local one.

Run
---
    .venv/bin/python tests/benchmarks/bench_push.py                  # 902 files, 20 GB
    .venv/bin/python tests/benchmarks/bench_push.py --total-gb 1     # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GB = 1e9
MB = 1e6
_EDGE = 64 * 1024
SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.hubserver import HubServer
s = HubServer({store!r}, {{{token!r}}}, commits_per_hour={limit}).start()
print(s.url, s._upload_secret, flush=True)
while True:
    time.sleep(3600)
"""


def make_folder(hub: Path, n: int, total: float, seed: int) -> dict[str, int]:
    """Sparse unique shards ``data/sub-*/...parquet`` summing to ``total`` bytes, and a card."""
    rng = np.random.default_rng(seed)
    raw = np.clip(rng.lognormal(np.log(250e6), 0.9, n), 1.7e6, 805e6)
    sizes = np.maximum((raw * total / raw.sum()).astype(np.int64), 2 * _EDGE)
    out = {}
    for i, size in enumerate(sizes):
        rel = f"data/sub-B{i // 4:04d}/sub-B{i // 4:04d}_ses-{i % 4 + 1}.parquet"
        path = hub / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(rng.bytes(_EDGE))
            fh.truncate(int(size))
            fh.seek(int(size) - _EDGE)
            fh.write(rng.bytes(_EDGE))
        out[rel] = int(size)
    (hub / "README.md").write_text("---\nlicense: cc0-1.0\n---\n# push benchmark\n")
    out["README.md"] = (hub / "README.md").stat().st_size
    return out


def sha256_all(hub: Path, files: dict[str, int]) -> dict[str, str]:
    out = {}
    for rel in files:
        h = hashlib.sha256()
        with open(hub / rel, "rb") as fh:
            while chunk := fh.read(8 << 20):
                h.update(chunk)
        out[rel] = h.hexdigest()
    return out


def seed_hash_cache(hub: Path, hashes: dict[str, str], dest: Path) -> None:
    """The push's hash cache (bids2hub.fsutil.stat_key entries) holding ``hashes``."""
    entries = {}
    for rel, sha in hashes.items():
        st = os.stat(hub / rel)
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entries[rel] = {"stat": key, "sha256": sha}
    dest.write_text(json.dumps({"files": entries}))


def _request(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: HTTP {resp.status} {data[:200]!r}")
    return data


def baseline_put(url: str, token: str, hub: Path, files: dict[str, int], hashes: dict[str, str]):
    """Plain HTTP PUT of every file to the server's upload URL; seconds taken."""
    host = urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=600, blocksize=1 << 20)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"type": "dataset", "name": "baseline", "organization": "user"})
    _request(conn, "POST", "/api/repos/create", body, auth)
    rels = [r for r in files if r.endswith(".parquet")]
    start = time.perf_counter()
    for i in range(0, len(rels), 100):
        chunk = rels[i : i + 100]
        objects = [{"oid": hashes[r], "size": files[r]} for r in chunk]
        batch = json.loads(
            _request(
                conn,
                "POST",
                "/datasets/user/baseline.git/info/lfs/objects/batch",
                json.dumps({"operation": "upload", "transfers": ["basic"], "objects": objects}),
                auth,
            )
        )
        for rel, obj in zip(chunk, batch["objects"], strict=True):
            href = urlsplit(obj["actions"]["upload"]["href"])
            with open(hub / rel, "rb") as fh:
                conn.request(
                    "PUT",
                    f"{href.path}?{href.query}",
                    body=fh,
                    headers={"Content-Length": str(files[rel])},
                )
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"PUT {rel}: HTTP {resp.status}")
    return time.perf_counter() - start


def push_cmd(hub: Path, repo: str, work: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "workflow"))
    from bids2hub.config import with_defaults

    # the hub section as the workflow passes it: validated, every default filled in
    options = with_defaults({"hub": {"push": True, "repo_id": repo}}, "hub")
    return [
        sys.executable, "-m", "bids2hub", "push", "--hub-dir", str(hub),
        "--options", json.dumps(options), "--receipt", str(work / f"{repo.split('/')[1]}.json"),
        "--hash-cache", str(work / "hashes.json"),
    ]  # fmt: skip


def push_env(url: str, token: str, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=url,
        HF_TOKEN=token,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(home),
        PYTHONPATH=str(ROOT / "workflow"),
    )
    return env


def stored_bytes(repo_dir: Path) -> int:
    lfs = repo_dir / "lfs"
    total = 0
    if lfs.is_dir():
        for e in os.scandir(lfs):
            with contextlib.suppress(FileNotFoundError):  # an upload renamed meanwhile
                total += e.stat().st_size
    return total


def imposed_hours(commits: int, per_hour: int) -> int:
    """Whole hours a sliding commits-per-hour limit adds: commit L+k waits for commit k's hour."""
    return max(0, math.ceil(commits / per_hour) - 1)


def check_receipt(receipt: Path, hashes: dict[str, str]) -> int:
    data = json.loads(receipt.read_text())
    assert data["complete"], receipt
    got = {p: f["sha256"] for p, f in data["files"].items()}
    assert got == hashes, "receipt differs from the local files"
    return len(data["commits"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=902)
    ap.add_argument("--total-gb", type=float, default=20.0)
    ap.add_argument("--limit", type=int, default=320, help="server commits per hour")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-push-"))
    work.mkdir(parents=True, exist_ok=True)
    hub, store = work / "hub", work / "server"
    free = shutil.disk_usage(work).free
    if free < args.total_gb * GB * 1.2:
        sys.exit(f"bench_push: {free / GB:.0f} GB free in {work}, need {args.total_gb * 1.2:.0f}")
    token = f"hf_bench_{secrets.token_hex(8)}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT), store=str(store), token=token,
                                              limit=args.limit)],
        stdout=subprocess.PIPE, stderr=open(work / "server.log", "w"), text=True,  # noqa: SIM115
    )  # fmt: skip
    try:
        url = server.stdout.readline().split()[0]
        t = time.perf_counter()
        files = make_folder(hub, args.files, args.total_gb * GB, args.seed)
        total = sum(files.values())
        print(
            f"bench_push: {args.files} shards + card, {total / GB:.2f} GB (sparse, unique), "
            f"server limit {args.limit} commits/hour; generated in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        t = time.perf_counter()
        hashes = sha256_all(hub, files)
        t_hash = time.perf_counter() - t
        seed_hash_cache(hub, hashes, work / "hashes.json")
        print(f"local sha256 (once; cached by stat between runs): {t_hash:.1f} s, "
              f"{total / MB / t_hash:.0f} MB/s", flush=True)  # fmt: skip

        t_base = baseline_put(url, token, hub, files, hashes)
        base_bytes = total - files["README.md"]
        r_base = base_bytes / MB / t_base
        print(f"baseline, plain HTTP PUT of the same bytes: {t_base:.1f} s, {r_base:.0f} MB/s",
              flush=True)  # fmt: skip
        shutil.rmtree(store / "repos" / "dataset" / "user" / "baseline")

        env = push_env(url, token, work / "hf-home")
        t = time.perf_counter()
        proc = subprocess.run(push_cmd(hub, "user/arc", work), env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip
        t_push = time.perf_counter() - t
        if proc.returncode != 0:
            sys.exit(f"push failed:\n{proc.stderr[-3000:]}")
        commits = check_receipt(work / "arc.json", hashes)
        r_push = total / MB / t_push
        progress = [
            m.group(1)
            for ln in proc.stderr.splitlines()
            if (m := re.search(r"push: (\S+ \w*B of .*)", ln))
        ]
        print(f"our push: {t_push:.1f} s, {r_push:.0f} MB/s, {commits} commits; "
              f"ratio to the plain PUT: {r_push / r_base:.2f}x", flush=True)  # fmt: skip
        for ln in progress[:2] + progress[-1:]:
            print(f"  progress line: {ln}")
        for limit in (128, 320):
            print(
                f"commits against a {limit}/hour limit: {commits} commits = "
                f"{100 * commits / limit:.0f}% of an hour's budget, adds "
                f"{imposed_hours(commits, limit)} h; one commit per file ({len(files)} commits) "
                f"would add {imposed_hours(len(files), limit)} h"
            )
        limited = sum("HTTP 429" in ln for ln in proc.stderr.splitlines())
        print(f"429 answers during the push: {limited}")
        shutil.rmtree(store / "repos" / "dataset" / "user" / "arc")

        # kill in the middle, then resume
        repo_dir = store / "repos" / "dataset" / "user" / "arc2"
        t = time.perf_counter()
        killed = subprocess.Popen(push_cmd(hub, "user/arc2", work), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)  # fmt: skip
        while killed.poll() is None and stored_bytes(repo_dir) < total / 2:
            time.sleep(0.2)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        t_kill = time.perf_counter() - t
        on_server = stored_bytes(repo_dir)
        landed = sum(1 for _ in (repo_dir / "commits").glob("*.json")) - 1
        t = time.perf_counter()
        proc = subprocess.run(push_cmd(hub, "user/arc2", work), env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip
        t_resume = time.perf_counter() - t
        if proc.returncode != 0:
            sys.exit(f"resumed push failed:\n{proc.stderr[-3000:]}")
        check_receipt(work / "arc2.json", hashes)
        plan = re.search(r"(\d+) to upload \((\d+) bytes\) in (\d+) commit", proc.stderr)
        left = f"{plan.group(1)} files, {int(plan.group(2)) / GB:.2f} GB in {plan.group(3)} commits"
        print(
            f"killed after {t_kill:.1f} s with {on_server / GB:.2f} GB of {total / GB:.2f} GB on "
            f"the server and {landed} commits landed; resume: {t_resume:.1f} s ({left} left); "
            f"kill + resume {t_kill + t_resume:.1f} s vs the uninterrupted push {t_push:.1f} s "
            f"({(t_kill + t_resume) / t_push:.2f}x)"
        )
        print(
            f"SUMMARY push_vs_put={r_push / r_base:.2f} push_MBps={r_push:.0f} "
            f"put_MBps={r_base:.0f} commits={commits} resume_s={t_resume:.1f} "
            f"kill_plus_resume_vs_push={(t_kill + t_resume) / t_push:.2f}"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

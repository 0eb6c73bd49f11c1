"""Shared fixtures: real BIDS trees on disk and a real Snakemake runner."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real Snakemake CLI on our workflow with ``workdir`` as its working folder."""
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
        "--cores", "2", *args,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=tool_env(), timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def write_nifti(path: Path, shape: tuple[int, ...] = (4, 4, 3), seed: int = 0) -> Path:
    """Write a small valid NIfTI (``.nii`` or ``.nii.gz``) with deterministic content."""
    rng = np.random.default_rng(seed)
    img = nib.Nifti1Image(rng.integers(0, 1000, shape).astype(np.int16), np.eye(4))
    data = img.to_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def job_processes(job_ids: list[str]) -> dict[int, str]:
    """pid -> command line of every process on this node that belongs to one of the jobs.

    A job's processes inherit ``SLURM_JOB_ID`` in their environment, also
    those re-parented after their parent died, which is how this finds
    what process tracking may have lost.
    """
    wanted = {f"SLURM_JOB_ID={j}".encode() for j in job_ids}
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if env & wanted:
            found[int(proc.name)] = cmd.strip()
    return found


@pytest.fixture(scope="session")
def arc_subjects() -> list[str]:
    """ARC subjects used by the workflow tests: multi-run T1w (M2112), two T2w in one session (M2105),
    DWI + sbref (M2215), no DWI nor mask (M2039); 7 sessions in all."""
    return ["M2039", "M2105", "M2112", "M2215"]


@pytest.fixture(scope="session")
def arc_tree_ro(tmp_path_factory: pytest.TempPathFactory, arc_subjects: list[str]) -> Path:
    """An ARC-shaped tree (real ds004884 names, tiny NIfTIs); never modified by tests."""
    from tests.synthetic import write_arc_like_tree

    return write_arc_like_tree(tmp_path_factory.mktemp("arc") / "bids", arc_subjects)


@pytest.fixture()
def arc_tree(tmp_path: Path, arc_subjects: list[str]) -> Path:
    """A fresh ARC-shaped tree that the test may modify."""
    from tests.synthetic import write_arc_like_tree

    return write_arc_like_tree(tmp_path / "bids", arc_subjects)


@pytest.fixture()
def hub_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A local Hub test server (tests/hubserver.py) and an environment pointing at it.

    ``HF_ENDPOINT`` is the server, ``HF_HUB_DISABLE_XET=1``, ``HF_TOKEN`` a token the
    server accepts (``server.token``), and ``HF_HOME``/``HF_DATASETS_CACHE`` are fresh
    folders (never the user's cache). Subprocesses started with :func:`tool_env` inherit it.
    """
    import secrets

    from tests.hubserver import HubServer

    base = tmp_path_factory.mktemp("hub")
    token = f"hf_test_{secrets.token_hex(12)}"
    server = HubServer(base / "server", {token}).start()
    server.token = token  # type: ignore[attr-defined]
    env = {
        "HF_ENDPOINT": server.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_TOKEN": token,
        "HF_HOME": str(base / "hf-home"),
        "HF_DATASETS_CACHE": str(base / "datasets-cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # huggingface_hub reads these once at import: patch the values of this process too.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        server.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(base / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(base / "hf-home" / "hub"))
    yield server
    server.stop()

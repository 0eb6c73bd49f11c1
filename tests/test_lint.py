"""Style gates run with the tests: ruff, snakefmt and Snakemake's own linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import BIN, REPO, SNAKEFILE, tool_env


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, env=tool_env(), check=False, timeout=300
    )


def test_ruff_clean() -> None:
    proc = _run(str(BIN / "ruff"), "check", "workflow", "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run(str(BIN / "ruff"), "format", "--check", "workflow", "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_clean() -> None:
    proc = _run(str(BIN / "snakefmt"), "--check", "workflow")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean(arc_tree_ro: Path, tmp_path: Path) -> None:
    proc = _run(
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(tmp_path),
        "--lint", "--config", f"bids_dir={arc_tree_ro}", f"out_dir={tmp_path / 'out'}",
        "dataset=ds004884",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr

"""A default run never fails at its end because a set-up step was skipped: Snakemake's
parse stops first, with one line saying what to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SNAKEFILE, tool_env

pytestmark = pytest.mark.workflow


def _dry_run(snakefile: Path, workdir: Path, env: dict[str, str], config: dict):
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), "-n",
         "--cores", "1", "--configfile", str(path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("bids2hub: error: ")]


def test_missing_niivue_bundle_stops_the_parse(arc_tree_ro: Path, tmp_path: Path) -> None:
    # A copy of the workflow whose package lost its bundle (an incomplete checkout).
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO / "workflow", checkout / "workflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "config", checkout / "config")
    info = json.loads((REPO / "workflow/bids2hub/data/niivue.json").read_text())
    bundle = checkout / "workflow/bids2hub/data" / info["file"]
    bundle.unlink()
    config = {"bids_dir": str(arc_tree_ro), "out_dir": str(tmp_path / "out"), "dataset": "ds004884"}
    snakefile = checkout / "workflow" / "Snakefile"
    (line,) = _error_lines(_dry_run(snakefile, tmp_path, tool_env(), config))
    assert line.startswith(
        f"bids2hub: error: {bundle}: the NiiVue {info['version']} bundle is missing"
    )
    assert line.endswith("(or set paper.viewer.enabled: false)")
    assert not (tmp_path / "out" / "paper").exists()  # no job ran
    # Without the viewer page the same checkout runs.
    off = _dry_run(
        snakefile, tmp_path, tool_env(), {**config, "paper": {"viewer": {"enabled": False}}}
    )
    assert off.returncode == 0, off.stderr[-3000:]


def test_push_without_a_token_stops_the_parse(arc_tree_ro: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in tool_env().items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.pop("HF_TOKEN_PATH", None)
    env["HF_HOME"] = str(tmp_path / "hf-home")  # no cached login
    os.makedirs(env["HF_HOME"])
    config = {"bids_dir": str(arc_tree_ro), "out_dir": str(tmp_path / "out"), "dataset": "ds004884",
              "hub": {"push": True, "repo_id": "me/arc"}}  # fmt: skip
    (line,) = _error_lines(_dry_run(SNAKEFILE, tmp_path, env, config))
    assert "hub.push is true but no Hugging Face token is set: export HF_TOKEN" in line
    env["HF_TOKEN"] = "hf_not_checked_at_parse_time"
    ok = _dry_run(SNAKEFILE, tmp_path, env, config)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "hf_not_checked_at_parse_time" not in ok.stdout + ok.stderr

"""The stages' plans are built in one place: the includes of the Snakefile can come in any order."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bids2hub.demo.data import write_demo_dataset

from tests.conftest import REPO, tool_env

pytestmark = pytest.mark.workflow

_FIELD = re.compile(r"^\s+(input|output|log|benchmark|wildcards|resources): (.*)$")


def _jobs(snakefile: Path, workdir: Path, config: Path) -> list[tuple[str, ...]]:
    """Every job of a dry run: rule, its inputs, outputs, log, benchmark, wildcards, resources."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir),
         "--cores", "1", "--dry-run", "--configfile", str(config)],
        capture_output=True, text=True, env=tool_env(), timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs, job = [], None
    for line in proc.stdout.splitlines():
        rule = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if rule:
            job = {"rule": rule[1]}
            jobs.append(job)
        elif job is not None and (field := _FIELD.match(line)):
            job[field[1]] = field[2]
    return sorted(tuple(sorted(j.items())) for j in jobs)


def test_the_includes_can_come_in_any_order(tmp_path: Path) -> None:
    bids = write_demo_dataset(tmp_path / "bids", n_subjects=2)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"bids_dir": str(bids), "out_dir": str(tmp_path / "out")}))
    # A copy of the workflow whose Snakefile includes the stages in the reverse order.
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake")
    for part in ("workflow", "config", "envs"):
        shutil.copytree(REPO / part, copy / part, ignore=ignore)
    snakefile = copy / "workflow" / "Snakefile"
    text = snakefile.read_text(encoding="utf-8")
    includes = re.findall(r"^include: .*$", text, flags=re.M)
    assert len(includes) >= 8 and includes[0] == 'include: "rules/common.smk"'
    block = "\n".join(includes)
    assert block in text
    snakefile.write_text(text.replace(block, "\n".join(reversed(includes))), encoding="utf-8")

    original = _jobs(REPO / "workflow" / "Snakefile", tmp_path / "a", config)
    shuffled = _jobs(snakefile, tmp_path / "b", config)
    rules = {dict(j)["rule"] for j in original}
    assert {"write_shard", "segment_lesion", "write_validation_report", "dataset_card"} <= rules
    assert {
        "write_provenance",
        "render_viewer",
        "copy_dataset_files",
        "list_intact_sessions",
    } <= rules
    # Same jobs, same files; only the workflow's own folder differs (the NiiVue record).
    assert [tuple(str(v).replace(str(copy), str(REPO)) for v in j) for j in shuffled] == [
        tuple(str(v) for v in j) for j in original
    ]

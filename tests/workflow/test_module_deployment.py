"""The workflow used as a Snakemake module from another folder, the way
`snakedeploy deploy-workflow` sets it up: config/ copied, a workflow/Snakefile that
declares this checkout's workflow/Snakefile as a module (a local path instead of
github(...): no network) and uses all its rules. The demo runs there end to end."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SNAKEFILE, tool_env

pytestmark = pytest.mark.workflow

# snakedeploy's use_module.smk.jinja, rendered for this repository (its name with '_').
DEPLOYED = """\
from snakemake.utils import min_version


min_version("6.10.0")


configfile: "config/config.yaml"


# declare {repo} as a module
module neuroimaging_go_brrrr:
    snakefile:
        "{snakefile}"
    config:
        config


# use all rules from {repo}
use rule * from neuroimaging_go_brrrr{rename}
"""


def _deploy(dest: Path, rename: str = "") -> Path:
    """What `snakedeploy deploy-workflow <repo> dest` writes: config/ and workflow/Snakefile."""
    shutil.copytree(REPO / "config", dest / "config")
    (dest / "workflow").mkdir(parents=True)
    text = DEPLOYED.format(repo=REPO.name, snakefile=SNAKEFILE, rename=rename)
    (dest / "workflow" / "Snakefile").write_text(text, encoding="utf-8")
    return dest


def _snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Snakemake as the user runs it in the deployed folder: no -s, no -d."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=cwd, capture_output=True, text=True, env=tool_env(), timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_runs_from_a_snakedeploy_style_deployment(tmp_path: Path) -> None:
    import datasets

    dest = _deploy(tmp_path / "deployed")
    subprocess.run(
        [sys.executable, "-m", "bids2hub", "demo-data", "demo/bids"],
        cwd=dest, check=True, env=tool_env(), capture_output=True,
    )  # fmt: skip
    _snakemake(dest)
    out = dest / "results"  # the copied config's out_dir, relative to the deployed folder
    bids = dest / "demo" / "bids"

    # Shards: one per session, read back with datasets, every image equal to its source.
    shards = sorted((out / "hub/data").glob("sub-*/*.parquet"))
    sessions = sorted(p.name for p in bids.glob("sub-*/ses-*"))
    assert len(shards) == len(sessions) == 6
    ds = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in shards], split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    ).cast_column("t1w", datasets.Sequence(datasets.Nifti(decode=False)))  # fmt: skip
    assert sorted(ds["session_id"]) == sessions
    sources = {p.name: p for p in bids.rglob("*_T1w.nii.gz")}
    cells = [cell for row in ds["t1w"] for cell in row]
    assert len(cells) == len(sources) == 8
    for cell in cells:
        assert hashlib.sha256(cell["bytes"]).hexdigest() == _sha256(sources[cell["path"]])

    # Validation report written and passed; lesion masks where the plan says.
    report = json.loads((out / "validation/report.json").read_text())
    assert (out / "validation/passed").is_file() and report["counts"]
    plan = json.loads((out / "index/segmentation.json").read_text())
    masks = sorted((out / "hub/derivatives/deepisles").glob("sub-*/**/*_desc-lesion_mask.nii.gz"))
    assert len(masks) == len(plan["targets"]) == 3
    assert (out / "hub/derivatives/deepisles/dataset_description.json").is_file()
    # The card counts what the report counted; the viewer page (the last rule) has NiiVue.
    assert "n_sessions | 6" in (out / "hub/README.md").read_text()
    info = json.loads((REPO / "workflow/bids2hub/data/niivue.json").read_text())
    assert info["sha256"] in (out / "paper/viewer.html").read_text()

    # Parse time found this checkout's own folder (not the including workflow's): the
    # provenance names its commit, and nothing was written into the checkout.
    prov = json.loads((out / "paper/provenance.json").read_text())
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert prov["pipeline"]["git_commit"] == head
    assert not (REPO / "workflow" / ".snakemake").exists()

    # Nothing left to do; `snakemake --report` works from the deployment as well.
    noop = _snakemake(dest, "-n")
    assert "Nothing to be done" in noop.stdout + noop.stderr
    _snakemake(dest, "--report", "report.html")
    html = (dest / "report.html").read_text(encoding="utf-8", errors="replace")
    assert "cohort.tsv" in html and "provenance.json" in html


def _job(dry_run: str, rule: str) -> str:
    """The lines a dry-run prints for the first job of ``rule`` (its indented fields)."""
    lines = dry_run.splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(rf"(local)?rule {rule}:", line.strip()):
            block = []
            for field in lines[i + 1 :]:
                if not field.startswith("    "):
                    break
                block.append(field)
            return "\n".join(block)
    raise AssertionError(f"no job of {rule} in the dry-run:\n{dry_run[-3000:]}")


def test_renamed_rules_keep_the_cross_stage_hooks(tmp_path: Path) -> None:
    """`use rule * from ... as bids2hub_*`: the card still reads the validation counts,
    and the local rules stay local."""
    dest = _deploy(tmp_path / "deployed", rename=" as bids2hub_*")
    subprocess.run(
        [sys.executable, "-m", "bids2hub", "demo-data", "demo/bids"],
        cwd=dest, check=True, env=tool_env(), capture_output=True,
    )  # fmt: skip
    proc = _snakemake(dest, "-n", str(dest / "results/hub/README.md"))
    text = proc.stdout + proc.stderr
    card = _job(text, "bids2hub_dataset_card")
    assert str(dest / "results/validation/report.json") in card
    # A `localrules:` directive in a renamed module names rules that do not exist (and
    # the pull would go to a compute node): the rules say `localrule: True` themselves.
    assert "localrules directive specifies rules that are not present" not in text

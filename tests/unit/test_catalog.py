"""What .snakemake-workflow-catalog.yml claims holds for the workflow's files."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO

RULES = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


def _rule_blocks() -> dict[str, str]:
    """Rule (and checkpoint) name -> its text, up to the next top-level statement."""
    blocks: dict[str, str] = {}
    for path in RULES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M):
            blocks[match.group(1)] = match.group(2)
    return blocks


def test_catalog_file_has_the_standardized_usage_keys() -> None:
    data = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text(encoding="utf-8"))
    usage = data["usage"]
    assert set(usage["mandatory-flags"]) == {"desc", "flags"} and usage["mandatory-flags"]["desc"]
    stack = usage["software-stack-deployment"]
    assert any(stack[k] for k in ("conda", "apptainer", "apptainer+conda"))
    assert stack["conda"] is True and stack["report"] is True
    # The catalog lists only workflows with these two files.
    assert (REPO / "workflow" / "Snakefile").is_file() and (REPO / "config/README.md").is_file()


def test_conda_claim_every_rule_that_runs_something_has_the_environment() -> None:
    blocks = _rule_blocks()
    assert len(blocks) > 20, sorted(blocks)
    runs = {
        name: body
        for name, body in blocks.items()
        if re.search(r"^\s+(shell|run|script):", body, re.M)
    }
    assert set(blocks) - set(runs) == {"all"}
    missing = [
        name for name, body in runs.items()
        if not re.search(r'^\s+conda:\n\s+"\.\./\.\./envs/bids2hub\.yaml"$', body, re.M)
    ]  # fmt: skip
    assert not missing, f"rules without conda: envs/bids2hub.yaml: {missing}"
    assert (REPO / "envs" / "bids2hub.yaml").is_file()


def test_report_claim_captions_exist() -> None:
    captions = set()
    for path in RULES:
        captions.update(re.findall(r'caption="([^"]+)"', path.read_text(encoding="utf-8")))
    assert captions
    for caption in captions:
        assert (REPO / "workflow" / "rules" / caption).resolve().is_file(), caption
    assert (REPO / "workflow" / "report" / "workflow.rst").is_file()

"""The official BIDS validator (PyPI ``bids-validator-deno``), run once per dataset.

The package bundles its Deno runtime and works offline. Its exit status is 0
(valid), 16 (errors found) or anything else (it did not run to the end).
Its self-reported version comes from ``git describe`` of the folder it is
installed in, so it names the enclosing repository's commit when the
virtual environment sits inside a git checkout; the version recorded here is
the installed package's.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bids2hub.errors import ValidationError
from bids2hub.fsutil import atomic_path
from bids2hub.validate.model import ValidatorSummary

PACKAGE = "bids-validator-deno"
EXIT_ERRORS = 16
#: Example files listed per issue code in the report.
MAX_EXAMPLES = 5


def validator_version() -> str:
    """Version of the installed ``bids-validator-deno`` package."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ValidationError(
            f"{PACKAGE} is not installed (pip install {PACKAGE}); it is a dependency of bids2hub"
        ) from None


def validator_executable() -> str:
    """The ``bids-validator-deno`` command next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / PACKAGE
    if beside.is_file():
        return str(beside)
    found = shutil.which(PACKAGE)
    if not found:
        raise ValidationError(f"the {PACKAGE} command is not on PATH (pip install {PACKAGE})")
    return found


def run_validator(bids_dir: Path, dest: Path, *, timeout: float | None = None) -> dict[str, Any]:
    """Run the validator on ``bids_dir`` and write its result to ``dest`` (atomically).

    Returns
    -------
    dict
        ``tool``, ``version``, ``exit_code``, ``schema_version``, ``stderr_tail``
        (only when it did not run to the end) and ``output`` (the validator's own
        JSON, issues sorted, or null).
    """
    version = validator_version()
    exe = validator_executable()
    with tempfile.TemporaryDirectory(prefix="bids-validator-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [exe, str(bids_dir), "--format", "json", "--outfile", str(out), "--no-color"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            code, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            code, stderr = -1, f"timed out after {timeout} s"
        try:
            output = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            output = None
    if isinstance(output, dict):
        issues = output.get("issues", {}).get("issues", [])
        issues.sort(key=lambda i: (i.get("code", ""), i.get("subCode", ""), i.get("location", "")))
    record: dict[str, Any] = {
        "tool": PACKAGE,
        "version": version,
        "exit_code": code,
        "schema_version": (output or {}).get("summary", {}).get("schemaVersion"),
        "output": output,
    }
    if code not in (0, EXIT_ERRORS) or output is None:
        record["stderr_tail"] = stderr[-2000:]
    with atomic_path(dest) as tmp_dest:
        tmp_dest.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    return record


def _first_line(text: str, limit: int = 300) -> str:
    """A message on one line (the validator's span several), cut at ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def summarise(record: dict[str, Any] | None, *, tolerate_errors: bool) -> ValidatorSummary:
    """The report's ``validator`` section from a :func:`run_validator` record.

    ``status`` is ``ok`` (no errors), ``errors`` (a hard failure),
    ``errors-tolerated`` (``validation.tolerate_validator_errors``) or
    ``not-run`` (the validator did not finish; a hard failure). ``issues``
    has one entry per severity and code (and sub-code) with a count, the
    validator's message and up to five example files.
    """
    if record is None:
        return {"tool": PACKAGE, "version": None, "status": "not-run", "errors": 0, "warnings": 0,
                "issues": [], "detail": "no validator result"}  # fmt: skip
    output = record.get("output") or {}
    raw = output.get("issues", {}).get("issues", []) if isinstance(output, dict) else []
    messages = output.get("issues", {}).get("codeMessages", {}) if isinstance(output, dict) else {}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for issue in raw:
        key = (issue.get("severity", "error"), issue.get("code", "?"), issue.get("subCode", ""))
        groups[key].append(issue)
    issues = []
    for (severity, code, subcode), items in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "error", kv[0][1], kv[0][2])
    ):
        locations = sorted({i.get("location", "") for i in items if i.get("location")})
        message = _first_line(messages.get(code, "")) or _first_line(
            items[0].get("issueMessage", "")
        )
        issues.append(
            {
                "severity": severity,
                "code": code,
                "sub_code": subcode or None,
                "count": len(items),
                "message": message,
                "examples": [loc.lstrip("/") for loc in locations[:MAX_EXAMPLES]],
            }
        )
    errors = sum(i["count"] for i in issues if i["severity"] == "error")
    warnings = sum(i["count"] for i in issues if i["severity"] != "error")
    code = record.get("exit_code")
    if code not in (0, EXIT_ERRORS) or not output:
        status = "not-run"
    elif errors or code == EXIT_ERRORS:
        status = "errors-tolerated" if tolerate_errors else "errors"
    else:
        status = "ok"
    out = {
        "tool": record.get("tool", PACKAGE),
        "version": record.get("version"),
        "schema_version": record.get("schema_version"),
        "exit_code": code,
        "status": status,
        "tolerated": bool(tolerate_errors),
        "errors": errors,
        "warnings": warnings,
        "issues": issues,
    }
    if status == "not-run":
        out["detail"] = record.get("stderr_tail", "")[-500:]
    return out

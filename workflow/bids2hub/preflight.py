"""Parse-time checks: what the run's last rules need is there before the first job starts.

A default run must not fail at its end because a set-up step was skipped: the viewer page
(the NiiVue bundle), the BIDS validator (``bids-validator-deno``) and, with ``hub.push``,
a Hugging Face token are checked once, in Snakemake's main process, in milliseconds and
without the network. Each missing piece is one clause saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bids2hub.config import with_defaults
from bids2hub.errors import Bids2HubError


class SetupError(Bids2HubError):
    """Something the run needs at its end is missing (the message says what to do)."""


def hub_token_available(environ: dict[str, str] | None = None) -> bool:
    """Whether huggingface_hub will find a token: ``HF_TOKEN`` (or the older
    ``HUGGING_FACE_HUB_TOKEN``), OIDC, or a cached login.

    Looks only at the environment and the token file (no network, the token is not read).
    """
    env = os.environ if environ is None else environ
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        if env.get(key, "").strip():
            return True
    if env.get("HF_TOKEN_PATH"):
        path = Path(env["HF_TOKEN_PATH"]).expanduser()
    else:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
            "huggingface",
        )
        path = Path(home).expanduser() / "token"
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def missing_setup(
    config: dict[str, Any],
    *,
    viewer: bool,
    tools_in_job_env: bool,
    environ: dict[str, str] | None = None,
    niivue_manifest: Path | None = None,
    push_receipt: Path | None = None,
) -> list[str]:
    """What the run would miss at its end, one clause each (empty: nothing).

    Parameters
    ----------
    config
        The validated configuration (``hub.push``).
    viewer
        Whether the run builds ``paper/viewer.html`` (it needs the NiiVue bundle).
    tools_in_job_env
        True under ``--software-deployment-method conda``: the jobs' environment brings
        the validator, so this process's PATH is not asked.
    environ
        The environment to look for a Hub token in (default ``os.environ``).
    niivue_manifest
        The bundle's manifest (default: the package's ``data/niivue.json``).
    push_receipt
        ``hub/.push-receipt.json``: when it exists, a token pushed from here before, and
        what does not push again (``snakemake --report``, a no-op rerun) needs none.
    """
    problems: list[str] = []
    if viewer:
        from bids2hub.paper.viewer import MANIFEST, verify_bundle

        try:
            verify_bundle(niivue_manifest or MANIFEST)
        except Bids2HubError as exc:
            problems.append(f"{exc} (or set paper.viewer.enabled: false)")
    if not tools_in_job_env:
        from bids2hub.validate.bidsvalidator import validator_executable, validator_version

        try:
            validator_version()
            validator_executable()
        except Bids2HubError as exc:
            problems.append(f"the BIDS validator cannot run: {exc}")
    pushed = push_receipt is not None and Path(push_receipt).is_file()
    if with_defaults(config, "hub")["push"] and not pushed and not hub_token_available(environ):
        problems.append(
            "hub.push is true but no Hugging Face token is set: export HF_TOKEN (a write "
            "token) or run 'hf auth login' first (the push is the run's last step)"
        )
    return problems


def check_setup(config: dict[str, Any], **options: Any) -> None:
    """Raise :class:`SetupError` (one line) when :func:`missing_setup` finds anything."""
    problems = missing_setup(config, **options)
    if problems:
        raise SetupError("; ".join(problems))

"""Parse-time set-up checks: what the last rules need, each missing piece with what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bids2hub.paper.viewer import MANIFEST
from bids2hub.preflight import SetupError, check_setup, hub_token_available, missing_setup
from bids2hub.validate import bidsvalidator

PUSH = {"hub": {"push": True}}
NO_PUSH = {"hub": {"push": False}}


@pytest.fixture()
def no_token(tmp_path: Path) -> dict[str, str]:
    """An environment without a token: HF_HOME is an empty folder."""
    (tmp_path / "hf-home").mkdir()
    return {"HF_HOME": str(tmp_path / "hf-home")}


def test_everything_in_place_is_no_problem(no_token: dict[str, str]) -> None:
    assert missing_setup(NO_PUSH, viewer=True, tools_in_job_env=False, environ=no_token) == []
    check_setup(NO_PUSH, viewer=True, tools_in_job_env=False, environ=no_token)


def test_missing_bundle_says_what_to_do(tmp_path: Path, no_token: dict[str, str]) -> None:
    manifest = tmp_path / "data" / "niivue.json"
    manifest.parent.mkdir()
    shutil.copy(MANIFEST, manifest)  # the record without the bundle beside it
    bundle = manifest.parent / json.loads(MANIFEST.read_text())["file"]
    opts = {"tools_in_job_env": True, "environ": no_token, "niivue_manifest": manifest}
    (problem,) = missing_setup(NO_PUSH, viewer=True, **opts)
    assert problem.startswith(f"{bundle}: the NiiVue ") and "bundle is missing" in problem
    assert problem.endswith("(or set paper.viewer.enabled: false)")
    # Without the viewer page the bundle is not needed.
    assert missing_setup(NO_PUSH, viewer=False, **opts) == []


def test_missing_validator_is_named_unless_the_job_env_brings_it(
    monkeypatch: pytest.MonkeyPatch, no_token: dict[str, str]
) -> None:
    monkeypatch.setattr(bidsvalidator, "PACKAGE", "bids-validator-deno-not-installed")
    (problem,) = missing_setup(NO_PUSH, viewer=False, tools_in_job_env=False, environ=no_token)
    assert problem == (
        "the BIDS validator cannot run: bids-validator-deno-not-installed is not installed "
        "(pip install bids-validator-deno-not-installed); it is a dependency of bids2hub"
    )
    assert missing_setup(NO_PUSH, viewer=False, tools_in_job_env=True, environ=no_token) == []


def test_push_without_a_token_fails_before_the_run(
    tmp_path: Path, no_token: dict[str, str]
) -> None:
    with pytest.raises(SetupError) as info:
        check_setup(PUSH, viewer=False, tools_in_job_env=True, environ=no_token)
    msg = str(info.value)
    assert "hub.push is true but no Hugging Face token" in msg and "HF_TOKEN" in msg
    assert "\n" not in msg
    assert missing_setup(PUSH, viewer=False, tools_in_job_env=True, environ={"HF_TOKEN": "x"}) == []
    # Pushed from here before: `snakemake --report` or a no-op rerun needs no token.
    receipt = tmp_path / ".push-receipt.json"
    opts = {"viewer": False, "tools_in_job_env": True, "environ": no_token}
    assert missing_setup(PUSH, **opts, push_receipt=receipt) != []
    receipt.write_text("{}")
    assert missing_setup(PUSH, **opts, push_receipt=receipt) == []


def test_token_sources(tmp_path: Path, no_token: dict[str, str]) -> None:
    assert not hub_token_available(no_token)
    assert not hub_token_available({**no_token, "HF_TOKEN": "  "})
    assert hub_token_available({**no_token, "HF_TOKEN": "hf_x"})
    assert hub_token_available({**no_token, "HUGGING_FACE_HUB_TOKEN": "hf_x"})
    assert hub_token_available({**no_token, "HF_OIDC_RESOURCE": "repo"})
    (Path(no_token["HF_HOME"]) / "token").write_text("hf_cached")  # `hf auth login`
    assert hub_token_available(no_token)
    elsewhere = tmp_path / "tok"
    assert not hub_token_available({**no_token, "HF_TOKEN_PATH": str(elsewhere)})
    elsewhere.write_text("hf_y")
    assert hub_token_available({"HF_TOKEN_PATH": str(elsewhere)})
    xdg = tmp_path / "xdg"
    (xdg / "huggingface").mkdir(parents=True)
    (xdg / "huggingface" / "token").write_text("hf_z")
    assert hub_token_available({"XDG_CACHE_HOME": str(xdg)})


def test_several_problems_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_token: dict[str, str]
) -> None:
    monkeypatch.setattr(bidsvalidator, "PACKAGE", "bids-validator-deno-not-installed")
    with pytest.raises(SetupError) as info:
        check_setup(PUSH, viewer=False, tools_in_job_env=False, environ=no_token)
    msg = str(info.value)
    assert "\n" not in msg and msg.count("; ") >= 1
    assert "BIDS validator" in msg and "hub.push" in msg

"""The HTML templates: shipped as package data, escaping on, scripts inlined safely."""

from __future__ import annotations

import fnmatch
import tomllib

import pytest
from bids2hub.templating import inline_script, read_template_text, render_template

from tests.conftest import REPO

PACKAGE = REPO / "workflow" / "bids2hub"


def test_every_template_file_is_package_data() -> None:
    """A non-editable install has the templates: pyproject's package-data names them."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["package-data"]["bids2hub"]
    files = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.glob("*/templates/*"))
    assert {"validate/templates/report.html.j2", "paper/templates/viewer.html.j2"} <= set(files)
    assert "paper/templates/viewer.js" in files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert missing == []


def test_templates_escape_what_they_are_given() -> None:
    page = render_template(
        "bids2hub.paper",
        "viewer.html.j2",
        title="<t>",
        facts="</p>&",
        bundle_info={"package": "<p>", "version": "1", "license": "x", "sha256": "0"},
        settings={"dwiName": "</script>"},
        dwi_b64="QQ==",
        mask_b64="QQ==",
        bundle=inline_script("var niivue = {};", "bundle"),
        app=inline_script(read_template_text("bids2hub.paper", "viewer.js"), "viewer.js"),
    )
    assert "<title>&lt;t&gt;</title>" in page and "<p>&lt;/p&gt;&amp;." in page
    assert '{"dwiName": "\\u003c/script\\u003e"}' in page and "<!-- &lt;p&gt; 1" in page
    assert "var niivue = {};" in page and "window.viewerReady = true" in page


def test_a_missing_value_is_an_error_not_an_empty_string() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError, match="'title' is undefined"):
        render_template("bids2hub.paper", "viewer.html.j2")

"""HTML pages from Jinja2 templates shipped in the package, every value escaped.

Each stage keeps its templates in its own ``templates/`` folder (package data, so a
non-editable install has them). Autoescaping is on: a value only reaches the page as
markup through :func:`inline_script`, which is for code and data that go inside a
``<script>`` element and refuses text that would end it early.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

_SCRIPT_END = re.compile(r"</script", re.IGNORECASE)


@functools.cache
def _environment(package: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_template(package: str, name: str, **context: Any) -> str:
    """Render ``templates/<name>`` of ``package`` (e.g. ``"bids2hub.validate"``)."""
    return _environment(package).get_template(name).render(**context)


def read_template_text(package: str, name: str) -> str:
    """The text of a file of ``package``'s ``templates/`` folder (a script, a style sheet)."""
    return resources.files(package).joinpath("templates", name).read_text(encoding="utf-8")


def inline_script(text: str, what: str) -> Markup:
    """``text`` to put verbatim inside a ``<script>`` element.

    Raises
    ------
    ValueError
        ``text`` contains ``</script``, which would end the element early (``what``
        names it in the message).
    """
    if _SCRIPT_END.search(text):
        raise ValueError(f"{what}: contains '</script' and cannot be inlined")
    return Markup(text)  # checked above: code or data, not text to escape

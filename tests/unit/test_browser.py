"""The browser helper the page tests rely on catches what it claims to catch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import distinct_colours, png_pixels, render_page

BROKEN = """<html><body style="background:#eee"><h1>broken</h1>
<canvas id="c" width="200" height="100"></canvas>
<script>
console.error("an error");
const gl = document.getElementById("c").getContext("webgl2");
gl.clearColor(1, 0, 0, 1); gl.clear(gl.COLOR_BUFFER_BIT);
setTimeout(() => { window.done = true; undefinedFn(); }, 200);
</script><img src="https://cdn.example.org/x.png"></body></html>"""

CLEAN = """<html><body style="background:#fff"><h1>clean</h1>
<script>console.log("fine"); setTimeout(() => { window.done = true; }, 100);</script>
</body></html>"""


def test_errors_exceptions_and_external_requests_are_reported(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    shot = tmp_path / "broken.png"
    result = render_page(page, shot, tmp_path / "profile", size=(400, 300), ready="window.done")
    assert "console.error: an error" in result.errors
    assert any(e.startswith("uncaught: ReferenceError: undefinedFn") for e in result.errors)
    assert result.external == ["https://cdn.example.org/x.png"]
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (400, 300)
    assert b"\xff\x00\x00" in {p[:3] for p in pixels}  # the WebGL canvas painted red


def test_a_clean_page_has_no_errors_and_a_blank_page_one_colour(tmp_path: Path) -> None:
    page = tmp_path / "clean.html"
    page.write_text(CLEAN)
    result = render_page(page, tmp_path / "clean.png", tmp_path / "p1", ready="window.done")
    assert result.errors == [] and result.external == [] and result.value is True
    assert distinct_colours(tmp_path / "clean.png") > 2  # the heading's text
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body style='background:#fff'></body></html>")
    render_page(blank, tmp_path / "blank.png", tmp_path / "p2", size=(200, 100))
    assert distinct_colours(tmp_path / "blank.png") == 1


def test_a_page_that_never_gets_ready_times_out_with_its_errors(tmp_path: Path) -> None:
    page = tmp_path / "never.html"
    page.write_text(CLEAN)
    with pytest.raises(TimeoutError, match=r"never\.html: not ready after \d+ s \(window\.nope\)$"):
        render_page(page, tmp_path / "n.png", tmp_path / "p", ready="window.nope", timeout=2)
    page.write_text(BROKEN)
    with pytest.raises(TimeoutError, match=r"not ready .*; errors: .*console\.error: an error"):
        render_page(page, tmp_path / "b.png", tmp_path / "p2", ready="window.nope", timeout=5)

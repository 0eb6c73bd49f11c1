"""Open a page in a real headless browser (Debian's chromium) and report what went wrong.

The page is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
NUL-terminated JSON on file descriptors 3 and 4), so no websocket client is needed. The
helper records every console error, uncaught exception, browser log error and any request
that leaves the machine (a page that needs a CDN fails here), waits for the page to say it
is ready, and saves a screenshot of the viewport.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"

#: Flags for a quiet, offline, headless start as root (the machine has no network, so the
#: background services would only log refused connections); WebGL on the software rasteriser.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
)

#: URL schemes a self-contained page may load from.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:")


@dataclass
class PageResult:
    """What a page did while it loaded."""

    errors: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    external: list[str] = field(default_factory=list)  # requests to anything but local schemes
    warnings: list[str] = field(default_factory=list)
    value: Any = None  # the ready expression's last value


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.wfd, self.rfd = proc, write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium exited (status {self.proc.poll()})")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, timeout: float = 30.0, **params):
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)


def _record(events: list[dict[str, Any]], result: PageResult) -> None:
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            if params["type"] in ("error", "assert"):
                result.errors.append(f"console.{params['type']}: {text}")
            elif params["type"] == "warning":
                result.warnings.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            desc = details.get("exception", {}).get("description") or details.get("text")
            result.errors.append(f"uncaught: {desc}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            line = f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip()
            (result.errors if entry["level"] == "error" else result.warnings).append(line)
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(LOCAL_SCHEMES):
                result.external.append(url)
    events.clear()


def render_page(
    page: Path,
    screenshot: Path,
    profile: Path,
    *,
    size: tuple[int, int] = (1280, 900),
    ready: str = "document.readyState === 'complete'",
    timeout: float = 60.0,
) -> PageResult:
    """Load ``page`` in headless chromium, wait until ``ready`` is truthy, save a screenshot.

    Parameters
    ----------
    page
        The HTML file, opened through its ``file://`` URL.
    screenshot
        Where the PNG of the viewport goes.
    profile
        An empty folder for chromium's user data.
    size
        Viewport width and height in CSS pixels (device scale 1).
    ready
        A JavaScript expression polled after the load event until it is truthy.
    timeout
        Seconds to wait for the load and for ``ready``.

    Returns
    -------
    PageResult
        Console errors, uncaught exceptions, log errors, external requests, the ready value.
    """
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    # chromium reads commands on fd 3 and writes on fd 4.

    def to_fds_3_and_4() -> None:
        high_r, high_w = os.dup(to_chrome_r) + 100, os.dup(from_chrome_w) + 100
        os.dup2(to_chrome_r, high_r)
        os.dup2(from_chrome_w, high_w)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        pass_fds=(3, 4), preexec_fn=to_fds_3_and_4,  # kept after the dup2s
    )  # fmt: skip
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
    result = PageResult()
    try:
        target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
        sid = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.call(f"{domain}.enable", session=sid)
        pipe.call(
            "Emulation.setDeviceMetricsOverride", session=sid,
            width=size[0], height=size[1], deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        pipe.events.clear()
        pipe.call("Page.navigate", session=sid, url=page.resolve().as_uri())
        deadline = time.monotonic() + timeout
        while True:
            value = pipe.call(
                "Runtime.evaluate", session=sid, expression=f"Boolean({ready})",
                returnByValue=True,
            )["result"].get("value")  # fmt: skip
            if value:
                result.value = value
                break
            if time.monotonic() > deadline:
                _record(pipe.events, result)  # say why, when the page said it
                said = f"; errors: {' | '.join(result.errors)[:2000]}" if result.errors else ""
                raise TimeoutError(f"{page}: not ready after {timeout:.0f} s ({ready}){said}")
            time.sleep(0.2)
        time.sleep(0.5)  # let a last animation frame paint
        shot = pipe.call("Page.captureScreenshot", session=sid, format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        pipe.call("Runtime.evaluate", session=sid, expression="0")  # drain late events
        _record(pipe.events, result)
    finally:
        try:
            pipe.call("Browser.close", timeout=5)
        except Exception:
            proc.kill()
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        proc.wait(timeout=30)
    return result


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the pixels (raw bytes each: RGB or RGBA, as stored) of a PNG."""
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG", f"{path} is not a PNG"
        if img.mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        bpp = len(img.getbands())
        raw = img.tobytes()
        width, height = img.size
    pixels = [raw[i : i + bpp] for i in range(0, len(raw), bpp)]
    return width, height, pixels


def distinct_colours(path: Path) -> int:
    """How many distinct colours a PNG screenshot has (1 means a blank page)."""
    return len(set(png_pixels(path)[2]))

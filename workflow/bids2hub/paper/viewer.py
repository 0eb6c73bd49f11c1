"""The NiiVue viewer page: one self-contained HTML file with a b~1000 trace and its lesion mask.

``out_dir/paper/viewer.html`` opens from disk (``file://``) with no server and no network:
the NiiVue bundle (committed under ``data/vendor/`` with its licenses and shipped in the
package, pinned in ``envs/niivue/package-lock.json``, its sha256 recorded in
``data/niivue.json``) and both
volumes (base64 of the ``.nii.gz`` bytes) are inlined. The page draws the trace in grey with
the mask in red on three orthogonal slices through the lesion's centre, and then sets
``window.viewerReady = true`` and ``<body data-viewer="ready">``; a failure is shown on the
page, logged with ``console.error`` and sets ``data-viewer="failed"``.

The same inputs give the same bytes (no timestamps, no machine paths in the page).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bids2hub.errors import Bids2HubError, ConfigError
from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import natural_key

#: The committed record of the vendored bundle (package, version, file, sha256, bytes).
MANIFEST = Path(__file__).resolve().parents[1] / "data" / "niivue.json"
#: What to do when the bundle is absent or not the recorded one (it ships with the package).
ASSETS_HINT = (
    "it ships with the package: restore it (git checkout workflow/bids2hub/data/vendor)"
    " or reinstall neuroimaging-go-brrrr"
)


class ViewerError(Bids2HubError):
    """An input of the viewer page is missing or unusable, or the bundle is not the pinned one."""


# ------------------------------------------------------------------ plan (parse time)


@dataclass(frozen=True)
class ViewerPlan:
    """Which subject the viewer shows and from which files (decided once per parse)."""

    output: Path
    subject: str | None  # None: no viewer (disabled, or nothing segmented)
    session: str = ""
    dwi: str = ""
    mask: str = ""
    reason: str = ""  # why there is no viewer

    @classmethod
    def from_setup(cls, setup: Any) -> ViewerPlan:
        """The plan of a :class:`bids2hub.plan.WorkflowSetup`.

        Raises
        ------
        ConfigError
            ``paper.viewer.subject`` names a subject that has no lesion mask in this run.
        """
        output = setup.out_dir / "paper" / "viewer.html"
        sub = viewer_subject(setup.config, setup.segmentation)
        if sub is None:
            paper = setup.config["paper"]
            if not paper["enabled"]:
                why = "paper.enabled is false"
            elif not paper["viewer"]["enabled"]:
                why = "paper.viewer.enabled is false"
            else:
                why = "no subject is segmented"
            return cls(output, None, reason=why)
        return cls(
            output,
            sub,
            session=setup.segment_target(sub)["session"],
            dwi=str(setup.prepared_dir(sub) / "dwi.nii.gz"),
            mask=setup.mask_path(sub),
        )

    def targets(self) -> list[str]:
        """The page, or nothing when there is no viewer."""
        return [str(self.output)] if self.subject else []

    def inputs(self) -> dict[str, str]:
        """The b~1000 trace and the mask.

        Raises
        ------
        ViewerError
            Why there is no viewer (asked for while disabled or without masks).
        """
        if not self.subject:
            raise ViewerError(f"{self.output}: no viewer page in this run ({self.reason})")
        return {"dwi": self.dwi, "mask": self.mask}


def viewer_subject(config: dict[str, Any], segmentation: dict[str, Any]) -> str | None:
    """The subject of the viewer page.

    Parameters
    ----------
    config
        The validated configuration (``paper.enabled``, ``paper.viewer.enabled``,
        ``paper.viewer.subject``).
    segmentation
        The segmentation plan (``targets``: subject -> entry, ``excluded``: subject -> reason).

    Returns
    -------
    str or None
        ``paper.viewer.subject`` (without ``sub-``), else the first segmented subject in
        natural order; None when the paper stage or the viewer is disabled or no subject
        is segmented.

    Raises
    ------
    ConfigError
        The configured subject has no mask in this run (with the reason).
    """
    paper = config.get("paper", {})
    options = paper.get("viewer", {})
    if not (paper.get("enabled", True) and options.get("enabled", True)):
        return None
    targets = segmentation.get("targets", {})
    wanted = options.get("subject")
    if wanted:
        sub = str(wanted).removeprefix("sub-")
        if sub not in targets:
            why = segmentation.get("excluded", {}).get(sub, "not a subject of this run")
            raise ConfigError(
                f"config key 'paper.viewer.subject': sub-{sub} has no lesion mask ({why})"
            )
        return sub
    if not targets:
        return None
    return sorted(targets, key=natural_key)[0]


# ------------------------------------------------------------------ the vendored bundle


def load_bundle(manifest: Path = MANIFEST) -> tuple[dict[str, Any], str]:
    """The manifest and the text of the vendored NiiVue bundle, verified against it.

    Raises
    ------
    ViewerError
        One line naming the file: manifest unreadable, bundle absent or not the recorded
        bytes (with what to run).
    """
    try:
        info = json.loads(Path(manifest).read_text(encoding="utf-8"))
        rel = info["file"]
        expected = info["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise ViewerError(f"{manifest}: not a readable NiiVue manifest ({exc})") from None
    bundle = Path(manifest).parent / rel
    try:
        data = bundle.read_bytes()
    except FileNotFoundError:
        raise ViewerError(
            f"{bundle}: the NiiVue {info.get('version', '?')} bundle is missing; {ASSETS_HINT}"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ViewerError(
            f"{bundle}: sha256 {digest[:12]}... is not the NiiVue {info.get('version', '?')} "
            f"bundle recorded in {Path(manifest).name} ({expected[:12]}...); {ASSETS_HINT}"
        )
    text = data.decode("utf-8")
    if "</script" in text.lower():  # would end the inline <script> early
        raise ViewerError(f"{bundle}: contains '</script' and cannot be inlined")
    return info, text


# ------------------------------------------------------------------ the page


@dataclass(frozen=True)
class Volume:
    """One input volume: its bytes and what the page says about it."""

    name: str
    data: bytes
    shape: tuple[int, ...]
    zooms: tuple[float, ...]


def _read_volume(path: Path, what: str) -> tuple[Volume, Any]:
    import nibabel as nib

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ViewerError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ViewerError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        img = nib.load(path)
        shape = tuple(int(n) for n in img.shape)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as exc:  # nibabel raises several unrelated types
        msg = " ".join(str(exc).split())
        raise ViewerError(f"{path}: the {what} is not a readable NIfTI image ({msg})") from None
    if len(shape) < 3 or (len(shape) > 3 and any(n != 1 for n in shape[3:])):
        raise ViewerError(f"{path}: the {what} must be a 3D image, got shape {shape}")
    return Volume(path.name, data, shape, zooms), img


def _lesion(img: Any, path: Path) -> tuple[int, float, list[float] | None]:
    """Voxel count, volume (mL) and centre (world mm) of a mask's non-zero voxels."""
    try:
        arr = np.asanyarray(img.dataobj)
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise ViewerError(f"{path}: the lesion mask cannot be read ({msg})") from None
    arr = arr.reshape(arr.shape[:3])
    idx = np.argwhere(arr > 0)
    if idx.size == 0:
        return 0, 0.0, None
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000.0
    centre = img.affine @ np.append(idx.mean(axis=0), 1.0)
    return len(idx), len(idx) * voxel_ml, [round(float(c), 3) for c in centre[:3]]


def render_viewer_html(
    dwi: Path,
    mask: Path,
    *,
    subject: str,
    session: str = "",
    manifest: Path = MANIFEST,
) -> str:
    """The viewer page of one subject.

    Parameters
    ----------
    dwi
        The b~1000 trace (``.nii`` or ``.nii.gz``), shown in grey.
    mask
        The lesion mask on the same grid, shown in red.
    subject, session
        Labels (without ``sub-``/``ses-``) for the page's title.
    manifest
        The vendored bundle's manifest (default: the package's).

    Returns
    -------
    str
        The HTML; the same inputs give the same text.

    Raises
    ------
    ViewerError
        One line naming the missing or unusable file (input volume, bundle, manifest).
    """
    base, _ = _read_volume(dwi, "b~1000 trace")
    lesion, mask_img = _read_volume(mask, "lesion mask")
    n_voxels, volume_ml, centre = _lesion(mask_img, Path(mask))
    info, bundle = load_bundle(manifest)
    label = f"sub-{subject}" + (f" ses-{session}" if session else "")
    settings = {
        "dwiName": base.name,
        "maskName": lesion.name,
        "centreMM": centre,
    }
    facts = (
        f"{html.escape(base.name)} ({'x'.join(map(str, base.shape))}, "
        f"{'x'.join(f'{z:g}' for z in base.zooms)} mm) with "
        f"{html.escape(lesion.name)}: {n_voxels} voxels, {volume_ml:.2f} mL"
    )
    return _TEMPLATE.format(
        title=html.escape(f"{label}: b~1000 trace with lesion mask"),
        facts=facts,
        version=html.escape(str(info.get("version", "?"))),
        package=html.escape(str(info.get("package", "@niivue/niivue"))),
        license=html.escape(str(info.get("license", "BSD-2-Clause"))),
        sha256=html.escape(str(info["sha256"])),
        bundle=bundle,
        dwi_b64=base64.b64encode(base.data).decode("ascii"),
        mask_b64=base64.b64encode(lesion.data).decode("ascii"),
        settings=json.dumps(settings, sort_keys=True).replace("<", "\\u003c"),
        app=_APP,
    )


def write_viewer(
    dwi: Path,
    mask: Path,
    output: Path,
    *,
    subject: str,
    session: str = "",
    manifest: Path = MANIFEST,
) -> int:
    """Write the viewer page atomically; returns its size in bytes (see render_viewer_html)."""
    text = render_viewer_html(dwi, mask, subject=subject, session=session, manifest=manifest)
    data = text.encode("utf-8")
    with atomic_path(Path(output)) as tmp:
        tmp.write_bytes(data)
    return len(data)


# The page's own script: load both volumes from the inline base64, draw, say ready.
_APP = """
(async function () {
  const status = document.getElementById("status");
  const settings = JSON.parse(document.getElementById("viewer-settings").textContent);
  function fail(err) {
    const text = "viewer failed: " + (err && err.message ? err.message : String(err));
    status.textContent = text;
    status.className = "error";
    document.body.dataset.viewer = "failed";
    window.viewerError = text;
    console.error(text);
  }
  window.addEventListener("error", (ev) => fail(ev.error || ev.message));
  window.addEventListener("unhandledrejection", (ev) => fail(ev.reason));
  try {
    if (typeof niivue === "undefined") throw new Error("the NiiVue bundle did not load");
    const nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.2, 0.8, 1.0, 0.8],
      crosshairWidth: 0.25,
      multiplanarShowRender: niivue.SHOW_RENDER.NEVER,
      multiplanarLayout: niivue.MULTIPLANAR_TYPE.ROW,
      isColorbar: false,
      logLevel: "error",
      loadingText: "loading...",
    });
    await nv.attachTo("gl");
    const text = (id) => document.getElementById(id).textContent.trim();
    const dwi = await niivue.NVImage.loadFromBase64({
      base64: text("dwi-data"), name: settings.dwiName, colormap: "gray",
    });
    const mask = await niivue.NVImage.loadFromBase64({
      base64: text("mask-data"), name: settings.maskName, colormap: "red",
      opacity: 0.7, cal_min: 0.5, cal_max: 1, trustCalMinMax: true,
    });
    nv.addVolume(dwi);
    nv.addVolume(mask);
    if (nv.volumes.length !== 2) {
      throw new Error("expected 2 volumes, NiiVue has " + nv.volumes.length);
    }
    nv.setSliceType(nv.sliceTypeMultiplanar);
    if (settings.centreMM) {
      nv.scene.crosshairPos = nv.mm2frac(settings.centreMM);
    }
    nv.updateGLVolume();
    nv.drawScene();
    // Two frames: the draw above has reached the canvas.
    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
    status.textContent = "";
    window.viewer = nv;
    document.body.dataset.viewer = "ready";
    window.viewerReady = true;
  } catch (err) {
    fail(err);
  }
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; background: #111; color: #ddd;
  font: 14px/1.4 system-ui, sans-serif; }}
body {{ display: flex; flex-direction: column; }}
header {{ padding: 8px 12px; }}
h1 {{ font-size: 16px; margin: 0; }}
p {{ margin: 2px 0; }}
#status.error {{ color: #fff; background: #a00; padding: 4px 8px; font-weight: bold; }}
main {{ flex: 1; min-height: 300px; }}
canvas {{ width: 100%; height: 100%; display: block; }}
</style>
</head>
<body data-viewer="loading">
<header>
<h1>{title}</h1>
<p>{facts}. Grey: b~1000 trace; red: lesion mask. Click to move the crosshair,
scroll to change the slice.</p>
<p id="status">loading...</p>
</header>
<main><canvas id="gl"></canvas></main>
<script type="application/json" id="viewer-settings">{settings}</script>
<script type="text/plain" id="dwi-data">{dwi_b64}</script>
<script type="text/plain" id="mask-data">{mask_b64}</script>
<!-- {package} {version} ({license}), dist/niivue.umd.js, sha256 {sha256} -->
<script>
{bundle}
</script>
<script>{app}</script>
</body>
</html>
"""

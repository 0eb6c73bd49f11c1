"""The NiiVue viewer page: one self-contained HTML file with a b~1000 trace and its lesion mask.

``out_dir/paper/viewer.html`` opens from disk (``file://``) with no server and no network:
the NiiVue bundle (committed under ``data/vendor/`` with its licenses and shipped in the
package, pinned in ``envs/niivue/package-lock.json``, its sha256 recorded in
``data/niivue.json``) and both
volumes (base64 of the ``.nii.gz`` bytes) are inlined. The page draws the trace in grey with
the mask in red on three orthogonal slices through the lesion's centre, and then sets
``window.viewerReady = true`` and ``<body data-viewer="ready">``; a failure is shown on the
page, logged with ``console.error`` and sets ``data-viewer="failed"``.

The page is ``templates/viewer.html.j2`` (Jinja2, autoescape on) with the page's script
``templates/viewer.js`` and the bundle inlined as they are, the settings as escaped JSON.
The same inputs give the same bytes (no timestamps, no machine paths in the page).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from bids2hub.config import with_defaults
from bids2hub.errors import Bids2HubError, ConfigError
from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import natural_key
from bids2hub.templating import inline_script, read_template_text, render_template

#: The committed record of the vendored bundle (package, version, file, sha256, bytes).
MANIFEST = Path(__file__).resolve().parents[1] / "data" / "niivue.json"
#: The page's own script (``templates/viewer.js``), inlined into ``templates/viewer.html.j2``.
APP = "viewer.js"
#: What to do when the bundle is absent or not the recorded one (it ships with the package).
ASSETS_HINT = (
    "it ships with the package: restore it (git checkout workflow/bids2hub/data/vendor)"
    " or reinstall neuroimaging-go-brrrr"
)


class ViewerError(Bids2HubError):
    """An input of the viewer page is missing or unusable, or the bundle is not the pinned one."""


# ------------------------------------------------------------------ plan (parse time)


@dataclass(frozen=True)
class ViewerCandidate:
    """A subject the viewer may show: its session, b~1000 trace and predicted mask."""

    subject: str
    session: str
    dwi: str
    mask: str


@dataclass(frozen=True)
class ViewerPlan:
    """Which subjects the viewer may show and from which files (decided once per parse).

    With ``paper.viewer.subject`` set there is one candidate; otherwise every
    segmented subject is one, and the job picks the one with the largest
    predicted lesion (:func:`pick_largest_lesion`), which only the masks tell.
    """

    output: Path
    candidates: tuple[ViewerCandidate, ...] = ()  # natural order; empty: no viewer
    reason: str = ""  # why there is no viewer

    @classmethod
    def from_setup(cls, setup: Any) -> ViewerPlan:
        """The plan of a :class:`bids2hub.plan.WorkflowSetup`.

        Raises
        ------
        ConfigError
            ``paper.viewer.subject`` names a subject that has no lesion mask in this run.
        """
        output = Path(setup.layout.viewer)
        subs = viewer_candidates(setup.config, setup.segmentation)
        if not subs:
            paper = setup.config["paper"]
            if not paper["enabled"]:
                why = "paper.enabled is false"
            elif not paper["viewer"]["enabled"]:
                why = "paper.viewer.enabled is false"
            else:
                why = "no subject is segmented"
            return cls(output, reason=why)
        return cls(
            output,
            tuple(
                ViewerCandidate(
                    sub,
                    setup.segment_target(sub)["session"],
                    setup.layout.prepared_dwi(sub),
                    setup.mask_path(sub),
                )
                for sub in subs
            ),
        )

    def targets(self) -> list[str]:
        """The page, or nothing when there is no viewer."""
        return [str(self.output)] if self.candidates else []

    def inputs(self) -> dict[str, list[str]]:
        """The b~1000 traces and the masks of the candidates.

        Raises
        ------
        ViewerError
            Why there is no viewer (asked for while disabled or without masks).
        """
        if not self.candidates:
            raise ViewerError(f"{self.output}: no viewer page in this run ({self.reason})")
        return {
            "dwi": [c.dwi for c in self.candidates],
            "mask": [c.mask for c in self.candidates],
        }

    def candidates_json(self) -> str:
        """The candidates as the ``--candidates`` argument of ``bids2hub viewer``."""
        return json.dumps([asdict(c) for c in self.candidates], sort_keys=True)


def viewer_candidates(config: dict[str, Any], segmentation: dict[str, Any]) -> list[str]:
    """The subjects the viewer page may show.

    Parameters
    ----------
    config
        The validated configuration (``paper.enabled``, ``paper.viewer.enabled``,
        ``paper.viewer.subject``).
    segmentation
        The segmentation plan (``targets``: subject -> entry, ``excluded``: subject -> reason).

    Returns
    -------
    list of str
        ``[paper.viewer.subject]`` (without ``sub-``), else every segmented subject
        in natural order (the job shows the largest predicted lesion); empty when
        the paper stage or the viewer is disabled or no subject is segmented.

    Raises
    ------
    ConfigError
        The configured subject has no mask in this run (with the reason).
    """
    paper = with_defaults(config, "paper")
    options = paper["viewer"]
    if not (paper["enabled"] and options["enabled"]):
        return []
    targets = segmentation["targets"]
    wanted = options["subject"]
    if wanted:
        sub = str(wanted).removeprefix("sub-")
        if sub not in targets:
            why = segmentation.get("excluded", {}).get(sub, "not a subject of this run")
            raise ConfigError(
                f"config key 'paper.viewer.subject': sub-{sub} has no lesion mask ({why})"
            )
        return [sub]
    return sorted(targets, key=natural_key)


def pick_largest_lesion(candidates: list[ViewerCandidate]) -> tuple[ViewerCandidate, float]:
    """The candidate whose predicted mask has the largest lesion, and its volume (mL).

    Ties (e.g. every mask empty) go to the first candidate, so the choice is
    deterministic for the same masks.

    Raises
    ------
    ViewerError
        No candidates, or a mask that cannot be read (naming it).
    """
    if not candidates:
        raise ViewerError("no subject to show: the viewer needs at least one lesion mask")
    best: tuple[ViewerCandidate, float] | None = None
    for cand in candidates:
        _vol, img = _read_volume(Path(cand.mask), "lesion mask")
        volume = _lesion(img, Path(cand.mask))[1]
        if best is None or volume > best[1]:
            best = (cand, volume)
    assert best is not None
    return best


# ------------------------------------------------------------------ the vendored bundle


def verify_bundle(manifest: Path = MANIFEST) -> tuple[dict[str, Any], bytes]:
    """The manifest and the bytes of the vendored NiiVue bundle, checked against its sha256.

    Raises
    ------
    ViewerError
        One line naming the file: manifest unreadable, bundle absent or not the recorded
        bytes (with what to do).
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
    return info, data


def load_bundle(manifest: Path = MANIFEST) -> tuple[dict[str, Any], str]:
    """The manifest and the text of the verified bundle (:func:`verify_bundle`), inlinable.

    Raises
    ------
    ViewerError
        As :func:`verify_bundle`, or the bundle would end the inline ``<script>`` early.
    """
    info, data = verify_bundle(manifest)
    bundle = Path(manifest).parent / info["file"]
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
    import numpy as np  # here, not at the top: every job's parse imports this module

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
    shape = "x".join(map(str, base.shape))
    zooms = "x".join(f"{z:g}" for z in base.zooms)
    return render_template(
        "bids2hub.paper",
        "viewer.html.j2",
        title=f"{label}: b~1000 trace with lesion mask",
        facts=(
            f"{base.name} ({shape}, {zooms} mm) with {lesion.name}: "
            f"{n_voxels} voxels, {volume_ml:.2f} mL"
        ),
        bundle_info={
            "version": str(info.get("version", "?")),
            "package": str(info.get("package", "@niivue/niivue")),
            "license": str(info.get("license", "BSD-2-Clause")),
            "sha256": str(info["sha256"]),
        },
        settings={"dwiName": base.name, "maskName": lesion.name, "centreMM": centre},
        # base64: only A-Z a-z 0-9 + / =, nothing to escape.
        dwi_b64=base64.b64encode(base.data).decode("ascii"),
        mask_b64=base64.b64encode(lesion.data).decode("ascii"),
        bundle=_script(bundle, f"the NiiVue bundle of {manifest}"),
        app=_script(read_template_text("bids2hub.paper", APP), APP),
    )


def _script(text: str, what: str) -> Markup:
    try:
        return inline_script(text, what)
    except ValueError as exc:
        raise ViewerError(str(exc)) from None


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

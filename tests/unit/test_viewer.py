"""The NiiVue viewer page: self-contained, deterministic, one-line errors; its subject choice;
the vendored bundle is the pinned one."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.cli import main
from bids2hub.errors import ConfigError
from bids2hub.paper.viewer import (
    MANIFEST,
    ViewerCandidate,
    ViewerError,
    ViewerPlan,
    load_bundle,
    pick_largest_lesion,
    render_viewer_html,
    viewer_candidates,
)

from tests.conftest import REPO


def _nifti(path: Path, data: np.ndarray, zoom: float = 2.0) -> Path:
    img = nib.Nifti1Image(data, np.diag([zoom, zoom, zoom, 1.0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(img.to_bytes(), mtime=0))
    return path


@pytest.fixture()
def volumes(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    dwi = _nifti(tmp_path / "dwi.nii.gz", rng.random((8, 9, 7)).astype(np.float32) * 1000)
    mask = np.zeros((8, 9, 7), np.uint8)
    mask[2:4, 3:6, 1:3] = 1  # 12 voxels of 8 uL
    return dwi, _nifti(tmp_path / "mask.nii.gz", mask)


def _blocks(page: str) -> dict[str, str]:
    return dict(re.findall(r'<script type="[^"]+" id="([a-z-]+)">(.*?)</script>', page, re.S))


def test_page_inlines_bundle_and_volumes_and_needs_no_network(volumes, tmp_path: Path) -> None:
    dwi, mask = volumes
    page = render_viewer_html(dwi, mask, subject="M1", session="2")
    info, bundle = load_bundle()
    assert bundle in page and info["version"] in page
    blocks = _blocks(page)
    assert base64.b64decode(blocks["dwi-data"]) == dwi.read_bytes()
    assert base64.b64decode(blocks["mask-data"]) == mask.read_bytes()
    settings = json.loads(blocks["viewer-settings"])
    # The crosshair starts at the lesion's centre (voxels 2.5, 4, 1.5 of 2 mm).
    assert settings["centreMM"] == [5.0, 8.0, 3.0]
    assert "sub-M1 ses-2: b~1000 trace with lesion mask" in page
    assert "12 voxels, 0.10 mL" in page
    # Nothing is fetched: no element loads a URL, and the page's own code names none.
    assert not re.search(r"<(script|img|iframe|link|embed|object)\b[^>]*\b(src|href)=", page, re.I)
    outside_bundle = page.replace(bundle, "")
    assert not re.search(r"https?://", outside_bundle)
    assert "window.viewerReady = true" in page and "console.error" in page


def test_same_inputs_give_the_same_bytes_written_atomically(volumes, tmp_path: Path) -> None:
    dwi, mask = volumes
    out1, out2 = tmp_path / "a" / "viewer.html", tmp_path / "b" / "viewer.html"
    for out in (out1, out2):
        argv = ["viewer", "--dwi", str(dwi), "--mask", str(mask), "--subject", "sub-M1",
                "--session", "ses-2", "--output", str(out)]  # fmt: skip
        assert main(argv) == 0
    assert out1.read_bytes() == out2.read_bytes()
    assert str(tmp_path) not in out1.read_text()  # no machine paths in the page
    assert sorted(p.name for p in out1.parent.iterdir()) == ["viewer.html"]  # no temp left


@pytest.mark.parametrize("which", ["dwi", "mask"])
def test_missing_or_broken_input_is_one_line_naming_it(
    volumes, tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    dwi, mask = volumes
    paths = {"dwi": dwi, "mask": mask}
    out = tmp_path / "out" / "viewer.html"

    def run() -> list[str]:
        argv = ["viewer", "--dwi", str(paths["dwi"]), "--mask", str(paths["mask"]),
                "--subject", "M1", "--output", str(out)]  # fmt: skip
        assert main(argv) == 1
        return capsys.readouterr().err.strip().splitlines()

    paths[which].unlink()
    what = "b~1000 trace" if which == "dwi" else "lesion mask"
    assert run() == [f"bids2hub: error: {paths[which]}: {what} not found"]
    paths[which].write_bytes(b"not a nifti")
    (line,) = run()
    assert line.startswith(f"bids2hub: error: {paths[which]}: the {what} is not a readable NIfTI")
    assert not out.exists()


def test_missing_or_altered_bundle_says_what_to_run(volumes, tmp_path: Path) -> None:
    dwi, mask = volumes
    info = json.loads(MANIFEST.read_text())
    manifest = tmp_path / "niivue.json"
    manifest.write_text(json.dumps(info))
    bundle = tmp_path / info["file"]
    with pytest.raises(ViewerError) as exc:
        render_viewer_html(dwi, mask, subject="M1", manifest=manifest)
    msg = str(exc.value)
    assert msg == (
        f"{bundle}: the NiiVue {info['version']} bundle is missing; it ships with the package:"
        " restore it (git checkout workflow/bids2hub/data/vendor) or reinstall neuroimaging-go-brrrr"
    )
    bundle.parent.mkdir()
    bundle.write_text("window.niivue = {};")
    with pytest.raises(
        ViewerError, match=r"niivue\.umd\.js: sha256 .* is not the NiiVue .*restore it"
    ):
        render_viewer_html(dwi, mask, subject="M1", manifest=manifest)


def test_vendored_bundle_is_the_version_the_lockfile_pins() -> None:
    info = json.loads(MANIFEST.read_text())
    env = REPO / "envs" / "niivue"
    pkg = json.loads((env / "package.json").read_text())
    lock = json.loads((env / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@niivue/niivue"]
    assert pkg["dependencies"]["@niivue/niivue"] == info["version"] == entry["version"]
    assert entry["integrity"].startswith("sha512-")
    assert all(p.get("integrity") for k, p in lock["packages"].items() if k)
    data = (MANIFEST.parent / info["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["bytes"]


def test_vendored_bundle_is_committed_with_its_licenses() -> None:
    """No npm at set-up or run time: a clean clone has the bundle and its license texts."""
    info = json.loads(MANIFEST.read_text())
    vendor = [MANIFEST.parent / info["file"], MANIFEST.parent / info["license_file"]]
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", *map(str, vendor)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert tracked.returncode == 0, tracked.stderr
    notice = vendor[1].read_text(encoding="utf-8")
    assert f"NiiVue {info['version']}" in notice and info["license"] == "BSD-2-Clause"
    assert "BSD 2-Clause License" in notice and "Copyright (c) 2021, Niivue" in notice
    lock = json.loads((REPO / "envs/niivue/package-lock.json").read_text())
    bundled = [
        k.removeprefix("node_modules/") for k, p in lock["packages"].items()
        if k and not p.get("optional") and k != "node_modules/@niivue/niivue"
    ]  # fmt: skip
    assert bundled and all(f"\n{name} " in notice for name in bundled), bundled


def _plan(*subs: str, excluded: dict[str, str] | None = None) -> dict:
    return {"targets": {s: {"session": "1"} for s in subs}, "excluded": excluded or {}}


def test_viewer_candidates() -> None:
    on = {"paper": {"viewer": {"enabled": True, "subject": None}}}
    assert viewer_candidates(on, _plan("M10", "M9", "M2001")) == ["M9", "M10", "M2001"]
    assert viewer_candidates(on, _plan()) == []
    off = {"paper": {"viewer": {"enabled": False, "subject": "M10"}}}
    assert viewer_candidates(off, _plan("M10")) == []
    no_paper = {"paper": {"enabled": False, "viewer": {"enabled": True, "subject": "M10"}}}
    assert viewer_candidates(no_paper, _plan("M10")) == []
    chosen = {"paper": {"viewer": {"enabled": True, "subject": "sub-M10"}}}
    assert viewer_candidates(chosen, _plan("M9", "M10")) == ["M10"]
    with pytest.raises(ConfigError) as exc:
        viewer_candidates(chosen, _plan("M9", excluded={"M10": "no usable DWI"}))
    assert str(exc.value) == (
        "config key 'paper.viewer.subject': sub-M10 has no lesion mask (no usable DWI)"
    )


def test_default_subject_has_the_largest_predicted_lesion(volumes, tmp_path: Path) -> None:
    """Old behaviour: the first segmented subject, even with an empty mask."""
    dwi, small = volumes  # 12 voxels of 8 uL
    empty = _nifti(tmp_path / "empty.nii.gz", np.zeros((8, 9, 7), np.uint8))
    big = np.zeros((8, 9, 7), np.uint8)
    big[1:5, 1:5, 1:4] = 1  # 48 voxels
    large = _nifti(tmp_path / "large.nii.gz", big)
    cands = [
        ViewerCandidate("M1", "1", str(dwi), str(empty)),
        ViewerCandidate("M2", "1", str(dwi), str(small)),
        ViewerCandidate("M10", "2", str(dwi), str(large)),
    ]
    chosen, volume = pick_largest_lesion(cands)
    assert chosen.subject == "M10" and volume == pytest.approx(48 * 0.008)
    # ties (all empty) go to the first candidate: the same masks, the same page
    blank = [ViewerCandidate(f"M{i}", "1", str(dwi), str(empty)) for i in (1, 2)]
    assert pick_largest_lesion(blank)[0].subject == "M1"
    empty.unlink()
    with pytest.raises(ViewerError, match=r"empty\.nii\.gz: lesion mask not found"):
        pick_largest_lesion(cands)

    out = tmp_path / "viewer.html"
    cands[0] = ViewerCandidate("M1", "1", str(dwi), str(small))
    plan = json.dumps([c.__dict__ for c in cands])
    assert main(["viewer", "--candidates", plan, "--output", str(out)]) == 0
    assert "<title>sub-M10 ses-2: b~1000 trace with lesion mask</title>" in out.read_text()


def test_plan_from_a_real_setup(arc_tree_ro: Path, tmp_path: Path) -> None:
    from bids2hub.plan import prepare

    config_dir = REPO / "config"
    cfg = {"bids_dir": str(arc_tree_ro), "out_dir": str(tmp_path / "out"), "dataset": "ds004884"}
    setup = prepare(cfg, config_dir=config_dir)
    targets = setup.segmentation["targets"]
    subs = sorted(targets)  # ARC labels: natural order is plain order here
    plan = ViewerPlan.from_setup(setup)
    assert [c.subject for c in plan.candidates] == subs
    assert [c.session for c in plan.candidates] == [targets[s]["session"] for s in subs]
    assert plan.targets() == [str(tmp_path / "out" / "paper" / "viewer.html")]
    assert plan.inputs() == {
        "dwi": [str(setup.prepared_dir(s) / "dwi.nii.gz") for s in subs],
        "mask": [setup.mask_path(s) for s in subs],
    }
    assert [ViewerCandidate(**c) for c in json.loads(plan.candidates_json())] == list(
        plan.candidates
    )
    off = prepare({**cfg, "paper": {"viewer": {"enabled": False}}}, config_dir=config_dir)
    plan = ViewerPlan.from_setup(off)
    assert plan.targets() == []
    with pytest.raises(
        ViewerError,
        match=r"viewer\.html: no viewer page in this run \(paper\.viewer\.enabled is false\)",
    ):
        plan.inputs()
    excluded = next(iter(setup.segmentation["excluded"]))
    bad = prepare({**cfg, "paper": {"viewer": {"subject": excluded}}}, config_dir=config_dir)
    with pytest.raises(
        ConfigError, match=rf"'paper\.viewer\.subject': sub-{excluded} has no lesion mask \("
    ):
        ViewerPlan.from_setup(bad)


def test_labels_and_names_are_escaped_and_cannot_end_a_script(volumes, tmp_path: Path) -> None:
    dwi, mask = volumes
    odd = dwi.rename(tmp_path / "<b>dwi'&.nii.gz")  # a file name is no markup either
    page = render_viewer_html(odd, mask, subject="</script><b>M1", session="<i>2")
    title = "sub-&lt;/script&gt;&lt;b&gt;M1 ses-&lt;i&gt;2: b~1000 trace with lesion mask"
    assert page.count(title) == 2  # <title> and <h1>
    assert "&lt;b&gt;dwi&#39;&amp;.nii.gz (8x9x7, 2x2x2 mm)" in page
    outside_bundle = page.replace(load_bundle()[1], "")
    assert "<b>" not in outside_bundle
    # The settings stay JSON that no HTML parser ends early: <, >, & and ' are \u escapes.
    blocks = _blocks(page)
    assert json.loads(blocks["viewer-settings"])["dwiName"] == "<b>dwi'&.nii.gz"
    assert "\\u003cb\\u003edwi\\u0027\\u0026.nii.gz" in blocks["viewer-settings"]
    # Every <script> element is closed by its own end tag: 3 data blocks, bundle, page script.
    assert outside_bundle.count("<script") == page.count("</script>") == 5


def test_a_script_that_would_end_its_element_is_refused(volumes, tmp_path: Path) -> None:
    dwi, mask = volumes
    info = json.loads(MANIFEST.read_text())
    bundle = (MANIFEST.parent / info["file"]).read_bytes() + b"\n// </SCRIPT><b>\n"
    (tmp_path / info["file"]).parent.mkdir(parents=True)
    (tmp_path / info["file"]).write_bytes(bundle)
    info["sha256"] = hashlib.sha256(bundle).hexdigest()
    manifest = tmp_path / "niivue.json"
    manifest.write_text(json.dumps(info))
    with pytest.raises(ViewerError, match=r"contains '</script' and cannot be inlined$"):
        render_viewer_html(dwi, mask, subject="M1", manifest=manifest)
    from bids2hub.templating import inline_script

    assert inline_script("const a = '</p>';", "app.js") == "const a = '</p>';"
    with pytest.raises(ValueError, match=r"^app\.js: contains '</script' and cannot be inlined$"):
        inline_script("x = '</sCrIpT >';", "app.js")

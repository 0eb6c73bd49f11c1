"""The viewer page built by a real Snakemake run on the demo data, opened from disk in a real
headless browser (Debian's chromium, WebGL on SwiftShader): it draws the b~1000 trace with the
lesion in red, asks for nothing over the network, and logs no error."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.browser import png_pixels, render_page
from tests.conftest import REPO, run_snakemake

pytestmark = pytest.mark.workflow
READY = "window.viewerReady === true || document.body.dataset.viewer === 'failed'"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Snakemake run asking for paper/viewer.html only (DWI preparation, every mask)."""
    from bids2hub.demo.data import write_demo_dataset

    root = tmp_path_factory.mktemp("viewer")
    bids = write_demo_dataset(root / "bids")
    cfg = root / "config.yaml"
    body = {"bids_dir": str(bids), "out_dir": str(root / "out"), "dataset": "demo"}
    cfg.write_text(yaml.safe_dump(body))
    run_snakemake(root, str(root / "out" / "paper" / "viewer.html"), "--configfile", str(cfg))
    return root


def _red(pixels: list[bytes]) -> int:
    """Pixels where red clearly dominates: the mask overlay (the trace is grey, the
    crosshair cyan, the text light grey)."""
    return sum(1 for p in pixels if p[0] > 120 and p[0] - max(p[1], p[2]) > 100)


def test_viewer_page_renders_the_lesion_from_disk_without_network(demo_run: Path) -> None:
    out = demo_run / "out"
    page = out / "paper" / "viewer.html"
    text = page.read_text()
    # paper.viewer.subject unset: the subject whose predicted lesion is largest
    volumes = {}
    for mask in (out / "hub/derivatives/deepisles").rglob("*_desc-lesion_mask.nii.gz"):
        img = nib.load(mask)
        voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000
        volumes[mask.name.split("_")[0]] = (np.asanyarray(img.dataobj) > 0).sum() * voxel_ml
    assert len(volumes) > 1
    largest = max(volumes, key=lambda sub: volumes[sub])
    assert f"<title>{largest} ses-" in text
    assert (out / "benchmarks" / "render_viewer" / "render_viewer.tsv").is_file()
    log = (out / "logs" / "render_viewer" / "render_viewer.log").read_text()
    assert f"viewer of {largest}" in log and f"{largest} has the largest predicted lesion" in log

    shot = demo_run / "viewer.png"
    result = render_page(page, shot, demo_run / "profile", size=(1280, 800), ready=READY)
    assert result.errors == [] and result.external == []
    assert result.value is True
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1280, 800)
    assert len(set(pixels)) > 500  # grey levels of the brain, text, overlay
    assert _red(pixels) > 1000  # the lesion on three slices
    keep = REPO / "results" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "viewer-demo.png")

    # Nothing changed: nothing reruns.
    cfg = str(demo_run / "config.yaml")
    dry = run_snakemake(demo_run, str(page), "-n", "--configfile", cfg)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_an_empty_mask_draws_no_red(demo_run: Path, tmp_path: Path) -> None:
    from bids2hub.paper.viewer import write_viewer

    dwi = demo_run / "out" / "work" / "deepisles" / "sub-M9001" / "dwi.nii.gz"
    ref = nib.load(dwi)
    empty = tmp_path / "empty_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(ref.shape[:3], np.uint8), ref.affine), empty)
    page = tmp_path / "viewer.html"
    write_viewer(dwi, empty, page, subject="M9001", session="2148")
    shot = tmp_path / "empty.png"
    result = render_page(page, shot, tmp_path / "profile", size=(1280, 800), ready=READY)
    assert result.errors == [] and result.external == []
    pixels = png_pixels(shot)[2]
    assert len(set(pixels)) > 100  # the trace is drawn
    assert _red(pixels) == 0

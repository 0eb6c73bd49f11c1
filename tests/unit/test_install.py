"""A pip-only install (a wheel built from the tracked files, installed without -e) carries
the NiiVue bundle and its licenses, verified, and renders the viewer page from them."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import REPO

_PROBE = """
import json, sys
from pathlib import Path
import bids2hub
from bids2hub.config import SCHEMA_PATH, schema_defaults
from bids2hub.paper.viewer import MANIFEST, load_bundle, render_viewer_html
info, text = load_bundle()
defaults = schema_defaults()
page = render_viewer_html(Path(sys.argv[1]), Path(sys.argv[2]), subject="M1")
print(json.dumps({
    "package": bids2hub.__file__, "manifest": str(MANIFEST), "bytes": len(text.encode()),
    "license": (MANIFEST.parent / info["license_file"]).is_file(), "inlined": text in page,
    "schema": str(SCHEMA_PATH), "defaults": sorted(defaults),
}))
"""


def _volume(path: Path, data: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(nib.Nifti1Image(data, np.eye(4)).to_bytes(), mtime=0))
    return path


def test_wheel_installed_without_editable_has_the_verified_bundle(tmp_path: Path) -> None:
    # The tracked files only, as a clean clone or an sdist has them (no build leftovers).
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    src = tmp_path / "src"
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("neuroimaging_go_brrrr-*.whl")
    info = json.loads((REPO / "workflow/bids2hub/data/niivue.json").read_text())
    names = zipfile.ZipFile(wheel).namelist()
    assert f"bids2hub/data/{info['file']}" in names
    assert f"bids2hub/data/{info['license_file']}" in names

    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    mask = np.zeros((6, 6, 5), np.uint8)
    mask[2:4, 2:4, 1:3] = 1
    dwi = _volume(tmp_path / "dwi.nii.gz", np.arange(180, dtype=np.float32).reshape(6, 6, 5))
    # The installed copy first; numpy/nibabel from this interpreter's site-packages.
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(dwi), str(_volume(tmp_path / "m.nii.gz", mask))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert Path(seen["package"]).is_relative_to(site), seen  # not this checkout's copy
    assert Path(seen["manifest"]).is_relative_to(site)
    assert seen["bytes"] == info["bytes"] and seen["license"] and seen["inlined"]
    # The config schema (the one place defaults are written) came with the wheel:
    # `bids2hub status` and the parse-time validation need it.
    assert Path(seen["schema"]).is_relative_to(site), seen
    assert {"out_dir", "shards", "validation", "preview"} <= set(seen["defaults"]), seen

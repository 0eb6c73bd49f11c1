"""The validation stage end to end: real Snakemake runs, the real BIDS validator, and the
HTML report rendered by a real headless browser (Debian's chromium)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from bids2hub.validate.counts import count_names

from tests.browser import distinct_colours, png_pixels
from tests.conftest import run_snakemake
from tests.synthetic import arc_expected_counts

pytestmark = pytest.mark.workflow
CHROMIUM = "/usr/bin/chromium"


def _config(tmp_path: Path, bids: Path, **extra: object) -> Path:
    cfg = tmp_path / "config.yaml"
    body = {"bids_dir": str(bids), "out_dir": str(tmp_path / "out"), **extra}
    cfg.write_text(yaml.safe_dump(body))
    return cfg


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out/validation/report.json").read_text())


def _browser(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def test_demo_report_renders_in_a_browser_and_a_tampered_shard_fails(tmp_path: Path) -> None:
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(tmp_path / "demo" / "bids")
    cfg = _config(tmp_path, bids, dataset="demo")
    run_snakemake(tmp_path, "--configfile", str(cfg))

    out = tmp_path / "out" / "validation"
    report = _report(tmp_path)
    assert report["status"] == "pass", report["failures"]
    assert report["validator"]["version"] == importlib.metadata.version("bids-validator-deno")
    assert report["validator"]["status"] == "ok" and report["validator"]["exit_code"] == 0
    assert [c["name"] for c in report["counts"]] == count_names([])
    assert {c["status"] for c in report["counts"]} == {"ok"}
    assert report["integrity"]["failures"] == 0 and report["integrity"]["nifti_checked"] == 26
    assert report["round_trip"]["shards_checked"] == 6 and report["round_trip"]["failures"] == 0
    assert (out / "passed").read_text().startswith("validation passed")
    sessions = {p: p.read_bytes() for p in (out / "sessions").rglob("*.json")}
    assert len(sessions) == 6

    # A person reads report.html in a browser: it renders, and we keep a screenshot.
    profile = tmp_path / "chromium-profile"
    dom = _browser("--dump-dom", (out / "report.html").as_uri(), profile=profile).stdout
    assert re.search(r'id="status">PASS: every hard check passed<', dom)
    assert "<h2>Expected counts</h2>" in dom and "n_lesion_masks" in dom
    shot = tmp_path / "report.png"
    _browser(f"--screenshot={shot}", "--window-size=1280,2000", (out / "report.html").as_uri(),
             profile=profile)  # fmt: skip
    width, height, _ = png_pixels(shot)
    assert (width, height) == (1280, 2000)
    assert distinct_colours(shot) > 20  # text, tables and the banner, not a blank page
    keep = Path(__file__).resolve().parents[2] / "results" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "validation-report-demo.png")

    # Nothing changed: nothing reruns.
    dry = run_snakemake(tmp_path, "--configfile", str(cfg), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # A shard cell altered after writing: only its subject's shards are read back again
    # (one job), no source is rechecked and no shard rewritten, and the run fails.
    shard = sorted((tmp_path / "out/hub/data").rglob("*.parquet"))[1]
    t1 = sorted(
        bids.glob(f"{shard.parent.name}/ses-{shard.stem.split('_ses-')[1]}/anat/*T1w.nii.gz")
    )[0]
    data = bytearray(shard.read_bytes())
    at = data.find(t1.read_bytes())
    data[at + 200] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    html = out / "report.html"
    assert re.search(rf"validation failed: \d+ hard failure\(s\), see {re.escape(str(html))}", log)
    assert len(re.findall(r"rule check_shards:", log)) == 1
    assert re.search(rf"rule check_shards:(?:(?!\nrule ).)*{shard.parent.name}", log, re.S)
    assert "rule check_sources:" not in log and "rule write_shard:" not in log
    failed = _report(tmp_path)
    assert failed["status"] == "fail"
    rel = shard.relative_to(tmp_path / "out").as_posix()
    round_trip = [f for f in failed["failures"] if f["check"] == "round_trip"]
    assert round_trip == [
        {
            "check": "round_trip",
            "file": rel,
            "message": f"{rel}: column 't1w': cell sha256 differs from {t1.relative_to(bids).as_posix()}",
            "shard": shard.stem,
        }
    ]
    assert {p: p.read_bytes() for p in (out / "sessions").rglob("*.json")} == sessions
    assert not (out / "passed").exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-64])


def test_broken_inputs_fail_and_each_is_in_the_report(
    arc_tree: Path, arc_subjects: list[str], tmp_path: Path
) -> None:
    reference = arc_expected_counts(arc_subjects)
    expected = {k: reference[k] for k in count_names([])}
    expected["n_sessions"] += 1  # a count off by one
    cmap = tmp_path / "arc4.yaml"
    shutil.copy(Path(__file__).resolve().parents[2] / "config/datasets/ds004884.yaml", tmp_path)
    cmap.write_text(yaml.safe_dump({"name": "arc4", "extends": "ds004884", "expected": expected}))
    # a truncated .nii.gz
    t1 = sorted(arc_tree.glob("sub-M2112/ses-*/anat/*_T1w.nii.gz"))[0]
    _truncate(t1)
    # a DWI with 5 volumes and 6 b-values
    dwi = sorted(arc_tree.glob("sub-M2215/ses-*/dwi/*_dwi.nii.gz"))[0]
    img = nib.load(dwi)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[..., :5], img.affine, img.header), dwi)
    stem = dwi.name[: -len(".nii.gz")]
    (dwi.parent / f"{stem}.bval").write_text("0 1000 1000 1000 1000 1000\n")
    (dwi.parent / f"{stem}.bvec").write_text("0 1 0 0 1 0\n0 0 1 0 0 1\n0 0 0 1 0 0\n")
    # a lesion mask whose shape differs from its T2w
    mask = sorted(arc_tree.glob("derivatives/lesion_masks/sub-M2105/*/anat/*_mask.nii.gz"))[0]
    ref = nib.load(
        arc_tree
        / mask.relative_to(arc_tree / "derivatives/lesion_masks")
        .as_posix()
        .replace("_desc-lesion_mask", "")
    )
    nib.save(nib.Nifti1Image(np.zeros([d + 2 for d in ref.shape[:3]], np.uint8), ref.affine), mask)
    # the segmentation plan written at parse time (here by hand)
    plan = tmp_path / "out" / "index" / "segmentation.json"
    plan.parent.mkdir(parents=True)
    plan.write_text(json.dumps({"targets": {}, "excluded": {"M2039": "no DWI run"}}))

    cfg = _config(tmp_path, arc_tree, dataset=str(cmap))
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "--keep-going", check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    report = _report(tmp_path)  # written although one shard could not be
    n = len(report["failures"])
    assert f"validation failed: {n} hard failure(s), see" in log
    by_check = {f["check"]: f for f in report["failures"]}
    # the official validator sees the truncated header and the volume count too
    assert sorted(by_check) == [
        "bids_validator", "counts", "dwi_gradients", "integrity", "mask_grid"
    ]  # fmt: skip
    codes = {i["code"] for i in report["validator"]["issues"] if i["severity"] == "error"}
    assert "VOLUME_COUNT_MISMATCH" in codes and report["validator"]["status"] == "errors"
    assert by_check["counts"]["message"].startswith("n_sessions: expected")
    assert by_check["integrity"]["file"] == t1.relative_to(arc_tree).as_posix()
    gradients = [f for f in report["failures"] if f["check"] == "dwi_gradients"]
    assert {f["file"] for f in gradients} == {dwi.relative_to(arc_tree).as_posix()}
    assert any("5 volume(s) but 6 b-value(s)" in f["message"] for f in gradients)
    assert by_check["mask_grid"]["file"] == mask.relative_to(arc_tree).as_posix()
    blocked = f"sub-M2112_{t1.parent.parent.name}"
    assert report["round_trip"]["not_checked"] == [blocked]
    assert report["round_trip"]["shards_checked"] == 6
    excluded = json.loads(plan.read_text())["excluded"]
    assert [e["subject"] for e in report["segmentation"]["excluded"]] == [
        f"sub-{s}" for s in excluded
    ]
    assert (tmp_path / "out/validation/report.html").is_file()


def test_soft_findings_on_a_subset_pass(arc_tree: Path, tmp_path: Path) -> None:
    sidecar = sorted(arc_tree.glob("sub-M2105/ses-*/anat/*_T2w.json"))[0]
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "PatientName": "DOE^JOHN"}))
    cfg = _config(tmp_path, arc_tree, dataset="ds004884", subjects=["M2105", "sub-M2215"])
    run_snakemake(tmp_path, "--configfile", str(cfg))
    report = _report(tmp_path)
    assert report["status"] == "pass" and report["dataset"]["subset"] is True
    assert {c["status"] for c in report["counts"]} == {"n/a"}
    assert report["identifying"]["findings"] == [
        {"file": sidecar.relative_to(arc_tree).as_posix(), "keys": ["PatientName"]}
    ]
    assert "DOE" not in (tmp_path / "out/validation/report.html").read_text()
    assert report["dataset"]["sessions"] == len(list(tmp_path.glob("out/hub/data/*/*.parquet")))

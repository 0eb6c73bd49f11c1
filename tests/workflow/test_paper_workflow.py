"""Paper artifacts end to end on the demo: real Snakemake runs (two clean ones in separate
folders), numbers recomputed independently from the demo's files, `snakemake --report`
opened in headless chromium."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.browser import distinct_colours, render_page
from tests.conftest import run_snakemake

pytestmark = pytest.mark.workflow

DETERMINISTIC = (
    "cohort.tsv",
    "cohort.md",
    "lesion_volumes.tsv",
    "lesion_overlap.nii.gz",
    "figures/sessions.png",
    "figures/sessions.svg",
    "figures/lesion_volumes.png",
    "figures/lesion_volumes.svg",
    "figures/volume_agreement.png",
    "figures/volume_agreement.svg",
    "figures/lesion_overlap.png",
    "figures/lesion_overlap.svg",
    "qc/sub-M9001.png",
    "qc/sub-M9002.png",
    "qc/sub-M9003.png",
)


def _run_demo(root: Path) -> tuple[Path, Path]:
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(root / "demo" / "bids")
    cfg = root / "config.yaml"
    cfg.write_text(
        yaml.safe_dump({"bids_dir": str(bids), "out_dir": str(root / "out"), "dataset": "demo"})
    )
    run_snakemake(root, "--configfile", str(cfg))
    return bids, cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """Two clean demo runs in separate folders: (root A, bids A, config A, root B)."""
    first = tmp_path_factory.mktemp("paper-a")
    bids, cfg = _run_demo(first)
    second = tmp_path_factory.mktemp("paper-b")
    _run_demo(second)
    return first, bids, cfg, second


def _cohort(root: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    with open(root / "out/paper/cohort.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {(r["variable"], r["level"], r["statistic"]): (r["value"], r["n"]) for r in rows}


def _close(cell: str, want: float) -> bool:
    return abs(float(cell) - want) < 5e-5


def test_every_artifact_exists_and_nothing_reruns(runs) -> None:
    root, _bids, cfg, _ = runs
    paper = root / "out/paper"
    for name in (*DETERMINISTIC, "runtimes.tsv", "figures/runtimes.png", "provenance.json"):
        assert (paper / name).is_file() and (paper / name).stat().st_size > 0, name
    from PIL import Image

    for png in paper.rglob("*.png"):
        with Image.open(png) as img:
            pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 5, png  # drawn, not blank
    dry = run_snakemake(root, "--configfile", str(cfg), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_cohort_numbers_match_an_independent_count(runs) -> None:
    root, bids, _cfg, _ = runs
    got = _cohort(root)
    # Images by glob (raw files only; the kind by the suffix, bold by task).
    sessions = sorted({p.parent.parent for p in bids.glob("sub-*/ses-*/*/*.nii.gz")})
    assert got[("n_subjects", "", "count")][0] == str(len({s.parent for s in sessions}))
    assert got[("n_sessions", "", "count")][0] == str(len(sessions))
    patterns = {
        "t1w": "anat/*_T1w.nii.gz",
        "t2w": "anat/*_T2w.nii.gz",
        "flair": "anat/*_FLAIR.nii.gz",
        "bold_naming40": "func/*task-naming40*_bold.nii.gz",
        "bold_rest": "func/*task-rest*_bold.nii.gz",
        "dwi": "dwi/*_dwi.nii.gz",
        "sbref": "*/*_sbref.nii.gz",
    }
    for kind, pattern in patterns.items():
        per = [len(list(s.glob(pattern))) for s in sessions]
        assert got[(f"n_sessions_{kind}", "", "count")][0] == str(sum(n > 0 for n in per)), kind
        assert got[(f"n_runs_{kind}", "", "count")][0] == str(sum(per)), kind
    experts = sorted(bids.glob("derivatives/lesion_masks/**/*_desc-lesion_mask.nii.gz"))
    assert got[("n_lesion_masks", "", "count")][0] == str(len(experts))

    with open(bids / "participants.tsv", encoding="utf-8", newline="") as fh:
        people = list(csv.DictReader(fh, delimiter="\t"))
    ages = [float(p["age_at_stroke"]) for p in people]
    assert _close(got[("age_at_stroke", "", "mean")][0], statistics.mean(ages))
    assert _close(got[("age_at_stroke", "", "sd")][0], statistics.stdev(ages))
    assert _close(got[("age_at_stroke", "", "min")][0], min(ages))
    assert _close(got[("age_at_stroke", "", "max")][0], max(ages))
    for column in ("wab_aq", "wab_days"):
        vals = [float(p[column]) for p in people]
        assert _close(got[(column, "", "median")][0], float(np.median(vals)))
        assert _close(got[(column, "", "q1")][0], float(np.percentile(vals, 25)))
        assert _close(got[(column, "", "q3")][0], float(np.percentile(vals, 75)))
    for column in ("sex", "race"):
        levels = {p[column] for p in people}
        for level in levels:
            n = sum(p[column] == level for p in people)
            assert got[(column, level, "count")] == (str(n), str(len(people)))
            assert _close(got[(column, level, "percent")][0], 100 * n / len(people))
    assert "n/a" in {p["race"] for p in people}  # the demo has a missing race

    # Expert volumes from the masks' own voxels and affines; predicted from the QC table.
    def ml(path: Path) -> float:
        img = nib.load(path)
        return (
            float((np.asarray(img.dataobj) > 0).sum())
            * abs(np.linalg.det(img.affine[:3, :3]))
            / 1000
        )

    expert = [ml(p) for p in experts]
    with open(root / "out/qc/segmentation.tsv", encoding="utf-8", newline="") as fh:
        qc = list(csv.DictReader(fh, delimiter="\t"))
    predicted = [ml(p) for p in sorted((root / "out/hub/derivatives").rglob("*_mask.nii.gz"))]
    assert len(predicted) == len(qc) == 3
    for name, vals, tol in (
        ("lesion_volume_expert_ml", expert, 5e-4),
        ("lesion_volume_predicted_ml", predicted, 2e-3),  # the QC table rounds to 3 decimals
        ("dice", [float(r["dice"]) for r in qc], 5e-5),
    ):
        assert abs(float(got[(name, "", "median")][0]) - float(np.median(vals))) < tol, name
        assert abs(float(got[(name, "", "q1")][0]) - float(np.percentile(vals, 25))) < tol
        assert abs(float(got[(name, "", "q3")][0]) - float(np.percentile(vals, 75))) < tol
        assert got[(name, "", "median")][1] == str(len(vals))
    md = (root / "out/paper/cohort.md").read_text()
    assert "| Subjects | 4 |" in md and "| Race: n/a | 1 (25.0 %) |" in md


def test_two_clean_runs_give_identical_bytes(runs) -> None:
    first, _bids, _cfg, second = runs
    a, b = first / "out/paper", second / "out/paper"
    different = [n for n in DETERMINISTIC if (a / n).read_bytes() != (b / n).read_bytes()]
    assert different == []
    pa = json.loads((a / "provenance.json").read_text())
    pb = json.loads((b / "provenance.json").read_text())
    run_a, run_b = pa.pop("run"), pb.pop("run")
    assert pa == pb
    assert run_a["out_dir"] != run_b["out_dir"]  # the machine-specific part is in `run` only
    assert run_a["generated_at"].endswith("Z")
    # provenance.json text equals too once `run` is removed (same key order, same numbers).
    strip = [
        json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "run"})
        for p in (a / "provenance.json", b / "provenance.json")
    ]
    assert strip[0] == strip[1]
    # Every hashed output is there, with its real sha256.
    import hashlib

    outs = pa["outputs"]
    assert len([k for k in outs if k.startswith("hub/data/")]) == 6
    assert len([k for k in outs if k.endswith("_desc-lesion_mask.nii.gz")]) == 3
    assert "paper/cohort.tsv" in outs and "paper/figures/lesion_overlap.svg" in outs
    assert "validation/report.json" in run_a["outputs_with_paths"]
    for rel, entry in outs.items():
        assert hashlib.sha256((first / "out" / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert pa["container"]["backend"] == "threshold" and pa["container"]["digest"] is None
    assert pa["input_dataset"]["Name"].startswith("bids2hub demo")
    assert "HF_TOKEN" not in (a / "provenance.json").read_text()
    assert "bids_dir" not in pa["config"] and pa["config"]["dataset"] == "demo"


def test_snakemake_report_is_self_contained_and_renders(runs, tmp_path: Path) -> None:
    root, _bids, cfg, _ = runs
    html = tmp_path / "report.html"
    run_snakemake(root, "--configfile", str(cfg), "--report", str(html))
    text = html.read_text(encoding="utf-8", errors="replace")
    assert "1. Cohort" in text and "5. Provenance" in text
    # Open it, click the "2. Lesions" category and wait for its figures' list.
    ready = """(() => {
      const hit = [...document.querySelectorAll('*')].filter(
        e => e.children.length === 0 && e.textContent.trim() === '2. Lesions');
      if (!hit.length) return false;
      if (!window.__clicked) { hit[0].click(); window.__clicked = true; return false; }
      return document.body.innerText.includes('lesion overlap');
    })()"""
    profile = tmp_path / "profile"
    profile.mkdir()
    shot = tmp_path / "report.png"
    result = render_page(html, shot, profile, size=(1280, 900), ready=ready, timeout=90)
    assert result.errors == [] and result.external == []
    assert distinct_colours(shot) > 20
    keep = Path(__file__).resolve().parents[2] / "results" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "report-demo.png")

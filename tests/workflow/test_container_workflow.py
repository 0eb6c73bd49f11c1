"""The pull_deepisles_image localrule through real Snakemake, with the ``singularity`` double on PATH."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from bids2hub.deepisles import sif_name

from tests.conftest import REPO, run_snakemake
from tests.doubles.fakes import PINNED_URI, docker_labels, write_fake_sif

pytestmark = pytest.mark.workflow

GIB = 1 << 30


@pytest.fixture()
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the double on PATH (inherited by Snakemake and its jobs); return its call log."""
    log = tmp_path / "singularity-calls.jsonl"
    doubles = REPO / "tests" / "doubles"
    monkeypatch.setenv("PATH", f"{doubles}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SINGULARITY_DOUBLE_LOG", str(log))
    for var in ("APPTAINER_TMPDIR", "SINGULARITY_TMPDIR", "SPYTHON_SINGULARITY_VERSION"):
        monkeypatch.delenv(var, raising=False)
    return log


def _calls(log: Path, sub: str) -> list[list[str]]:
    if not log.exists():
        return []
    argvs = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    return [a for a in argvs if a and a[0] == sub]


def _config(tmp: Path, bids: Path, out: Path, **deepisles: object) -> Path:
    cfg = {
        "bids_dir": str(bids),
        "out_dir": str(out),
        "dataset": "ds004884",
        "segment": {"backend": "deepisles", "deepisles": deepisles},
    }
    path = tmp / f"config-{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pull_once_into_the_shared_cache_and_reuse(
    arc_tree_ro: Path, tmp_path: Path, calls: Path
) -> None:
    cache = tmp_path / "shared-cache"
    image = cache / sif_name(PINNED_URI)
    out = tmp_path / "out"
    cfg = _config(tmp_path, arc_tree_ro, out, cache_dir=str(cache))
    run_snakemake(tmp_path, "pull_deepisles_image", "--configfile", str(cfg))

    assert image.stat().st_size == 2 * GIB
    assert sorted(p.name for p in cache.iterdir()) == [image.name]  # nothing temporary left
    (pull,) = _calls(calls, "pull")
    assert pull[-1] == PINNED_URI and Path(pull[2]).parent == cache
    receipt = out / "containers" / "deepisles-image.json"
    assert json.loads(receipt.read_text())["image"] == str(image)
    log = (out / "logs/pull_deepisles_image/pull_deepisles_image.log").read_text()
    assert "runtime: apptainer version 1.3.4" in log and f"pulled {2 * GIB} bytes" in log
    assert (out / "benchmarks/pull_deepisles_image/pull_deepisles_image.tsv").is_file()

    # Same run again: nothing to do, no pull.
    proc = run_snakemake(tmp_path, "pull_deepisles_image", "--configfile", str(cfg))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert len(_calls(calls, "pull")) == 1

    # Another run (another out_dir) with the same cache: verified and reused, not pulled.
    out2 = tmp_path / "out2"
    cfg2 = _config(tmp_path, arc_tree_ro, out2, cache_dir=str(cache))
    run_snakemake(tmp_path, "pull_deepisles_image", "--configfile", str(cfg2))
    assert len(_calls(calls, "pull")) == 1
    assert (
        "reusing cached image"
        in (out2 / "logs/pull_deepisles_image/pull_deepisles_image.log").read_text()
    )

    # A forced rerun deletes only the receipt, never the multi-GB image: the
    # job re-verifies the cached image and writes the same receipt.
    run_snakemake(
        tmp_path, "pull_deepisles_image", "--configfile", str(cfg), "-R", "pull_deepisles_image"
    )
    log = (out / "logs/pull_deepisles_image/pull_deepisles_image.log").read_text()
    assert "reusing cached image" in log and "pulled" not in log
    assert len(_calls(calls, "pull")) == 1 and image.stat().st_size == 2 * GIB
    assert receipt.read_text() == (out2 / "containers/deepisles-image.json").read_text()


def test_given_image_is_verified_not_pulled(arc_tree_ro: Path, tmp_path: Path, calls: Path) -> None:
    (tmp_path / "site").mkdir()
    given = tmp_path / "site" / "deepisles.sif"
    write_fake_sif(given, labels=docker_labels(PINNED_URI), size=3 * GIB)
    out = tmp_path / "out"
    cfg = _config(tmp_path, arc_tree_ro, out, image=str(given), cache_dir=str(tmp_path / "cache"))
    run_snakemake(tmp_path, "pull_deepisles_image", "--configfile", str(cfg))
    receipt = json.loads((out / "containers/deepisles-image.json").read_text())
    assert receipt["image"] == str(given) and receipt["size"] == 3 * GIB
    assert _calls(calls, "pull") == [] and len(_calls(calls, "inspect")) == 1
    assert not (tmp_path / "cache").exists()


def test_stub_pull_fails_the_rule_and_leaves_nothing(
    arc_tree_ro: Path, tmp_path: Path, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SINGULARITY_DOUBLE_PULL", "fail")
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    cfg = _config(tmp_path, arc_tree_ro, out, cache_dir=str(cache))
    proc = run_snakemake(tmp_path, "pull_deepisles_image", "--configfile", str(cfg), check=False)
    assert proc.returncode != 0
    log = (out / "logs/pull_deepisles_image/pull_deepisles_image.log").read_text()
    assert "bids2hub: error: pulling " + PINNED_URI in log
    assert "below segment.deepisles.min_image_bytes" in log
    assert "no space left on device" in log  # the runtime's own message is in the log too
    assert list(cache.iterdir()) == []
    assert not (out / "containers/deepisles-image.json").exists()

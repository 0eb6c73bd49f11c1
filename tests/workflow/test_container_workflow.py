"""The pull_deepisles_image localrule through real Snakemake, with the ``singularity`` double on PATH."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from bids2hub.segment.deepisles import sif_name

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


def _demo_config(tmp: Path, bids: Path, out: Path, backend: str, cache: Path) -> Path:
    cfg = {
        "bids_dir": str(bids),
        "out_dir": str(out),
        "dataset": "demo",
        "segment": {"backend": backend, "deepisles": {"cache_dir": str(cache)}},
    }
    path = tmp / f"config-{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


SEGMENT_TARGETS = ("summarize_segmentation", "write_deepisles_description")


def test_deepisles_backend_gives_the_cpu_backends_derivatives(tmp_path: Path, calls: Path) -> None:
    """The segment rule through the double: contract of every exec, same masks as threshold."""
    import nibabel as nib
    import numpy as np
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(tmp_path / "bids", n_subjects=3)
    cache = tmp_path / "cache"
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    run_snakemake(tmp_path, *SEGMENT_TARGETS, "--configfile",
                  str(_demo_config(tmp_path, bids, cpu, "threshold", cache)))  # fmt: skip
    assert _calls(calls, "exec") == []
    run_snakemake(tmp_path, *SEGMENT_TARGETS, "--configfile",
                  str(_demo_config(tmp_path, bids, gpu, "deepisles", cache)))  # fmt: skip

    plan = json.loads((gpu / "index/segmentation.json").read_text())
    execs = _calls(calls, "exec")
    assert len(execs) == len(plan["targets"]) >= 2
    image = str(cache / sif_name(PINNED_URI))
    for argv in execs:
        # The double already refused any call outside the contract; check the essentials here.
        assert argv[:1] == ["exec"] and "--nv" in argv and "--writable-tmpfs" in argv
        assert "--cleanenv" in argv and argv[argv.index("--pwd") + 1] == "/app"
        bind = argv[argv.index("--bind") + 1]
        assert bind.endswith(":/app/data")
        assert image in argv
        cmd = argv[-1]
        assert cmd.startswith("source activate isles_ensemble && python main.py ")
        assert "--dwi_file_name dwi.nii.gz --adc_file_name adc.nii.gz" in cmd
    flairs = sum(1 for argv in execs if "--flair_file_name flair.nii.gz" in argv[-1])
    assert flairs == sum(1 for t in plan["targets"].values() if t["flair"])

    rel = sorted(p.relative_to(cpu / "hub/derivatives/deepisles") for p in
                 (cpu / "hub/derivatives/deepisles").rglob("*.nii.gz"))  # fmt: skip
    assert len(rel) == len(plan["targets"])
    for r in rel:
        a = nib.load(cpu / "hub/derivatives/deepisles" / r)
        b = nib.load(gpu / "hub/derivatives/deepisles" / r)
        assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
    desc = json.loads((gpu / "hub/derivatives/deepisles/dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "apptainer", "URI": PINNED_URI}
    assert desc["GeneratedBy"][0]["Version"] == PINNED_URI.rsplit("@", 1)[1]
    qc = (gpu / "qc/segmentation.tsv").read_text().splitlines()
    assert len(qc) == 1 + len(plan["targets"]) and all("\tdeepisles\t" in line for line in qc[1:])


def test_deepisles_failure_leaves_nothing_and_logs_the_stderr_tail(
    tmp_path: Path, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(tmp_path / "bids", n_subjects=2)
    out = tmp_path / "out"
    cfg = _demo_config(tmp_path, bids, out, "deepisles", tmp_path / "cache")
    run_snakemake(tmp_path, "pull_deepisles_image", "--configfile", str(cfg))
    assert len(json.loads((out / "index/segmentation.json").read_text())["targets"]) == 1
    for mode, message in (("fail", "exit status 1"), ("nomask", "wrote no /app/data/results"),
                          ("empty", "wrote an empty")):  # fmt: skip
        monkeypatch.setenv("SINGULARITY_DOUBLE_EXEC", mode)
        proc = run_snakemake(tmp_path, *SEGMENT_TARGETS, "--configfile", str(cfg), check=False)
        assert proc.returncode != 0, mode
        (log,) = (out / "logs/segment_lesion").rglob("*.log")
        text = log.read_text()
        assert message in text, (mode, text[-2000:])
        if mode == "fail":
            assert "RuntimeError: CUDA error" in text  # the container's own output tail
        deriv = out / "hub/derivatives/deepisles"
        left = sorted(p.name for p in deriv.rglob("*") if p.is_file()) if deriv.exists() else []
        assert [n for n in left if n != "dataset_description.json"] == [], (mode, left)

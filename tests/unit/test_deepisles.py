"""DeepISLES through spython, against the ``singularity`` test double (tests/doubles).

The double checks the contract of every call (exits 2 on a violation) and
records its argv, so these tests assert on exactly what spython ran.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.cli import main as cli_main
from bids2hub.errors import SegmentationError
from bids2hub.segment import deepisles

from tests.conftest import BIN, REPO
from tests.doubles.fakes import (
    PINNED_URI,
    adc_threshold,
    docker_labels,
    write_fake_sandbox,
    write_fake_sif,
)

DOUBLES = REPO / "tests" / "doubles"
GIB = 1 << 30
OTHER_URI = "docker://isleschallenge/deepisles@sha256:" + "ab" * 32


class Double:
    """The ``singularity`` double on PATH and the calls it recorded."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def calls(self, sub: str | None = None) -> list[list[str]]:
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        argvs = [e["argv"] for e in entries]
        return [a for a in argvs if sub is None or (a and a[0] == sub)]

    def entries(self, sub: str) -> list[dict]:
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e for e in entries if e["argv"] and e["argv"][0] == sub]


@pytest.fixture()
def double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Double:
    log = tmp_path / "singularity-calls.jsonl"
    monkeypatch.setenv("PATH", f"{DOUBLES}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SINGULARITY_DOUBLE_LOG", str(log))
    monkeypatch.setenv("SINGULARITY_DOUBLE_SEGMENTER", "tests.doubles.fakes:adc_threshold")
    for var in ("SPYTHON_SINGULARITY_VERSION", "APPTAINER_TMPDIR", "SINGULARITY_TMPDIR",
                "CUDA_VISIBLE_DEVICES", "HF_TOKEN"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    return Double(log)


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A 3D DWI, ADC (a low-ADC block = lesion) and FLAIR on one grid."""
    src = tmp_path / "work"
    src.mkdir()
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    rng = np.random.default_rng(0)
    adc = np.full((10, 9, 6), 900e-6) + rng.normal(0, 20e-6, (10, 9, 6))
    adc[3:6, 2:5, 1:4] = 400e-6
    files = {
        "dwi": (rng.uniform(100, 200, adc.shape), src / "dwi.nii.gz"),
        "adc": (adc, src / "adc.nii.gz"),
        "flair": (rng.uniform(50, 80, adc.shape), src / "flair.nii.gz"),
    }
    for data, path in files.values():
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return {k: p for k, (_, p) in files.items()}


@pytest.fixture()
def sif(tmp_path: Path) -> Path:
    return write_fake_sif(
        tmp_path / "deepisles.sif", labels=docker_labels(PINNED_URI), size=2 * GIB
    )


def _out(tmp_path: Path) -> Path:
    return tmp_path / "deriv" / "sub-1" / "dwi" / "sub-1_desc-lesion_mask.nii.gz"


def _expected_mask(inputs: dict[str, Path], tmp_path: Path) -> np.ndarray:
    ref = tmp_path / "expected.nii.gz"
    adc_threshold(inputs["dwi"], inputs["adc"], None, ref)
    return np.asarray(nib.load(ref).dataobj)


# ------------------------------------------------------------------ runtime


def test_runtime_version_reads_apptainer(double: Double) -> None:
    assert deepisles.runtime_version() == "apptainer version 1.3.4"
    assert double.calls() == [["--version"]]


@pytest.mark.parametrize(
    ("printed", "error"),
    [
        ("singularity-ce version 4.1.2", None),
        ("singularity version 3.8.7", None),
        ("singularity version 2.6.1", "too old"),
        ("podman version 5.0.0", "not 'apptainer version"),
    ],
)
def test_runtime_version_checks_what_singularity_prints(
    double: Double, monkeypatch: pytest.MonkeyPatch, printed: str, error: str | None
) -> None:
    monkeypatch.setenv("SINGULARITY_DOUBLE_VERSION", printed)
    if error is None:
        assert deepisles.runtime_version() == printed
    else:
        with pytest.raises(SegmentationError, match=error):
            deepisles.runtime_version()


def test_missing_runtime_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no singularity anywhere
    monkeypatch.delenv("SPYTHON_SINGULARITY_VERSION", raising=False)
    with pytest.raises(SegmentationError, match="no 'singularity' command on PATH"):
        deepisles.runtime_version()


# ---------------------------------------------------------------- run: happy


def test_run_builds_the_exact_command_and_moves_the_mask(
    double: Double,
    inputs: dict[str, Path],
    sif: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_never_passed_on")
    out = _out(tmp_path)
    log = io.StringIO()
    deepisles.run_deepisles(sif, inputs["dwi"], inputs["adc"], None, out, fast=False, log=log)

    (argv,) = double.calls("exec")
    bind = argv[3]
    stage = Path(bind.split(":")[0]).parent
    assert bind == f"{stage}/data:/app/data"
    assert stage.parent == out.parent and stage.name.startswith(f".{out.name}.deepisles-")
    # SEALS' writable folders each get a scratch folder of the job (not the 64 MiB tmpfs).
    seals = [
        a
        for sub in ("data", "test_result", "test_result_recover", "test_ensemble")
        for a in ("--bind", f"{stage}/seals/{sub}:/app/src/SEALS/{sub}")
    ]
    assert argv == [
        "exec", "--nv", "--bind", bind, *seals, "--writable-tmpfs", "--cleanenv", "--pwd", "/app",
        str(sif), "bash", "-c",
        "source activate isles_ensemble && python main.py"
        " --dwi_file_name dwi.nii.gz --adc_file_name adc.nii.gz",
    ]  # fmt: skip
    # The log shows the command spython ran, word for word, and the container's output.
    text = log.getvalue()
    assert f"command: {shlex.join(['singularity', *argv])}" in text
    assert "DeepISLES ensemble (test double)" in text and "exit status 0" in text
    assert "hf_secret" not in text
    (entry,) = double.entries("exec")
    assert "HF_TOKEN" not in entry["env_keys"]
    # The mask is the emulated container's, moved to out; nothing else is left.
    mask = nib.load(out)
    assert mask.shape == (10, 9, 6) and np.allclose(mask.affine, nib.load(inputs["dwi"]).affine)
    assert np.array_equal(np.asarray(mask.dataobj), _expected_mask(inputs, tmp_path))
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_run_passes_flair_fast_skull_strip_and_the_gpu(
    double: Double,
    inputs: dict[str, Path],
    sif: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    out = _out(tmp_path)
    deepisles.run_deepisles(
        sif, inputs["dwi"], inputs["adc"], inputs["flair"], out, fast=True, skull_strip=True
    )
    (argv,) = double.calls("exec")
    at = argv.index("--writable-tmpfs")
    assert argv[at : at + 5] == ["--writable-tmpfs", "--cleanenv", "--pwd", "/app", "--env"]
    assert argv[at + 5 : at + 7] == ["CUDA_VISIBLE_DEVICES=1", str(sif)]
    assert argv[-1] == (
        "source activate isles_ensemble && python main.py --dwi_file_name dwi.nii.gz"
        " --adc_file_name adc.nii.gz --flair_file_name flair.nii.gz --fast --skull_strip"
    )
    assert out.is_file()


def test_run_with_a_sandbox_and_uncompressed_inputs(
    double: Double, inputs: dict[str, Path], tmp_path: Path
) -> None:
    sandbox = write_fake_sandbox(tmp_path / "deepisles_sandbox", labels=docker_labels(PINNED_URI))
    dwi = tmp_path / "work" / "trace.nii"
    nib.save(nib.load(inputs["dwi"]), dwi)
    out = _out(tmp_path)
    deepisles.run_deepisles(sandbox, dwi, inputs["adc"], None, out, fast=False)
    (argv,) = double.calls("exec")
    assert argv[-4] == str(sandbox)
    # Staged as gzip under a .nii.gz name: DeepISLES' nibabel 4.0.2 rejects anything else.
    assert "--dwi_file_name dwi.nii.gz --adc_file_name adc.nii.gz" in argv[-1]
    assert np.array_equal(np.asarray(nib.load(out).dataobj), _expected_mask(inputs, tmp_path))


# ---------------------------------------------------------------- run: faults


def test_nonzero_exit_raises_with_the_output_tail(
    double: Double,
    inputs: dict[str, Path],
    sif: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SINGULARITY_DOUBLE_EXEC", "fail")
    out = _out(tmp_path)
    log = io.StringIO()
    with pytest.raises(SegmentationError, match=r"exit 1\).*CUDA error: no kernel image") as exc:
        deepisles.run_deepisles(sif, inputs["dwi"], inputs["adc"], None, out, fast=False, log=log)
    assert str(inputs["dwi"]) in str(exc.value) and "\n" not in str(exc.value)
    assert "Traceback (most recent call last):" in log.getvalue()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize(("mode", "message"), [("nomask", "wrote no"), ("empty", "wrote an empty")])
def test_missing_or_empty_mask_fails_clearly(
    double: Double,
    inputs: dict[str, Path],
    sif: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    message: str,
) -> None:
    monkeypatch.setenv("SINGULARITY_DOUBLE_EXEC", mode)
    out = _out(tmp_path)
    with pytest.raises(SegmentationError, match=f"{message} /app/data/results/lesion_msk.nii.gz"):
        deepisles.run_deepisles(sif, inputs["dwi"], inputs["adc"], None, out, fast=False)
    assert len(double.calls("exec")) == 1
    assert list(out.parent.iterdir()) == []  # no mask, no staging folder


def test_missing_input_or_image_fails_before_any_container_call(
    double: Double, inputs: dict[str, Path], sif: Path, tmp_path: Path
) -> None:
    out = _out(tmp_path)
    with pytest.raises(
        SegmentationError, match=r"flair\.nii\.gz: flair input of DeepISLES not found"
    ):
        deepisles.run_deepisles(
            sif, inputs["dwi"], inputs["adc"], tmp_path / "flair.nii.gz", out, fast=False
        )
    with pytest.raises(SegmentationError, match=r"nope\.sif: DeepISLES image not found"):
        deepisles.run_deepisles(
            tmp_path / "nope.sif", inputs["dwi"], inputs["adc"], None, out, fast=False
        )
    assert double.calls() == []
    assert not out.parent.exists()


def test_unusable_bind_source_fails_before_spython(
    double: Double, inputs: dict[str, Path], sif: Path, tmp_path: Path
) -> None:
    # spython would sys.exit() on a missing bind source, and Apptainer splits
    # --bind on ':' and ','; both are caught first, with the path named.
    with pytest.raises(SegmentationError, match="bind source does not exist"):
        deepisles._check_bind(tmp_path / "gone")
    out = tmp_path / "out:2" / "mask.nii.gz"
    with pytest.raises(
        SegmentationError, match=r"out:2/\.mask\.nii\.gz\.deepisles-.*breaks Apptainer's --bind"
    ):
        deepisles.run_deepisles(sif, inputs["dwi"], inputs["adc"], None, out, fast=False)
    assert double.calls("exec") == []
    assert list(out.parent.iterdir()) == []


# ------------------------------------------------------------------- images


def test_image_path_and_generated_by(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cfg = {"segment": {"deepisles": {"uri": PINNED_URI, "image": None, "cache_dir": None}}}
    digest = PINNED_URI.rsplit("@", 1)[1]
    expected = tmp_path / "xdg/bids2hub/containers" / f"deepisles-{digest.replace(':', '-')}.sif"
    assert deepisles.image_path(cfg) == expected
    cfg["segment"]["deepisles"]["cache_dir"] = str(tmp_path / "shared")
    assert deepisles.image_path(cfg).parent == tmp_path / "shared"
    cfg["segment"]["deepisles"]["uri"] = OTHER_URI  # a new digest is a new file
    assert deepisles.image_path(cfg).name == f"deepisles-sha256-{'ab' * 32}.sif"
    assert not deepisles.image_given(cfg)
    cfg["segment"]["deepisles"]["image"] = str(tmp_path / "my.sif")
    assert deepisles.image_path(cfg) == tmp_path / "my.sif" and deepisles.image_given(cfg)
    assert deepisles.generated_by({}) == {
        "Name": "DeepISLES",
        "Version": digest,
        "CodeURL": "https://github.com/ezequieldlrosa/DeepIsles",
        "Container": {"Type": "apptainer", "URI": PINNED_URI},
    }
    with pytest.raises(SegmentationError, match="not pinned by digest"):
        deepisles.sif_name("docker://isleschallenge/deepisles:latest")


def test_pull_is_atomic_verified_and_reused(double: Double, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    image = cache / deepisles.sif_name(PINNED_URI)
    log = io.StringIO()
    info = deepisles.ensure_image(image, uri=PINNED_URI, min_bytes=GIB, log=log)
    assert info.path == image and info.kind == "sif" and info.size == 2 * GIB
    assert info.labels[deepisles.FROM_LABEL] == PINNED_URI.split("://")[1]
    (pull,) = double.calls("pull")
    tmp = Path(pull[2])
    assert pull == ["pull", "--name", str(tmp), PINNED_URI]
    assert tmp.parent == cache and tmp.name.startswith(".") and tmp != image
    # Verified under its temporary name, before the rename into the cache.
    (inspect,) = double.calls("inspect")
    assert inspect == ["inspect", "-e", "-d", "-l", "-r", "-H", "-t", "--json", str(tmp)]
    (entry,) = double.entries("pull")
    assert "APPTAINER_TMPDIR" in entry["env_keys"]  # the build's scratch is in the cache folder
    assert sorted(p.name for p in cache.iterdir()) == [image.name]
    assert f"pulled {2 * GIB} bytes" in log.getvalue()

    again = deepisles.ensure_image(image, uri=PINNED_URI, min_bytes=GIB)
    assert again == info
    assert len(double.calls("pull")) == 1
    assert double.calls("inspect")[-1][-1] == str(image)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SINGULARITY_DOUBLE_PULL_BYTES": "4096"},
            "4096 bytes, below segment.deepisles.min_image_bytes",
        ),
        ({"SINGULARITY_DOUBLE_PULL": "fail"}, "below segment.deepisles.min_image_bytes"),
        ({"SINGULARITY_DOUBLE_PULL": "nothing"}, "produced no image"),
    ],
)
def test_failed_pull_or_stub_is_rejected_and_not_cached(
    double: Double, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict, message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cache = tmp_path / "cache"
    image = cache / deepisles.sif_name(PINNED_URI)
    with pytest.raises(SegmentationError, match=message) as exc:
        deepisles.ensure_image(image, uri=PINNED_URI, min_bytes=GIB)
    assert PINNED_URI in str(exc.value)
    assert list(cache.iterdir()) == []  # no stub, no temporary file, no build folder


def test_invalid_cached_image_is_replaced(double: Double, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    image = cache / deepisles.sif_name(PINNED_URI)
    write_fake_sif(image, labels=docker_labels(PINNED_URI), size=1000)  # a stub from elsewhere
    log = io.StringIO()
    info = deepisles.ensure_image(image, uri=PINNED_URI, min_bytes=GIB, log=log)
    assert info.size == 2 * GIB and image.stat().st_size == 2 * GIB
    assert "cached image unusable, pulling again" in log.getvalue()
    assert len(double.calls("pull")) == 1


def test_given_images_are_verified_never_pulled(double: Double, tmp_path: Path, sif: Path) -> None:
    assert deepisles.ensure_image(sif, uri=PINNED_URI, min_bytes=GIB, given=True).kind == "sif"
    box = write_fake_sandbox(tmp_path / "box", labels=docker_labels(PINNED_URI))
    info = deepisles.ensure_image(box, uri=PINNED_URI, min_bytes=GIB, given=True)
    assert info.kind == "sandbox" and info.size is None
    with pytest.raises(SegmentationError, match=r"tiny\.sif: 10 bytes, below"):
        tiny = write_fake_sif(tmp_path / "tiny.sif", labels={}, size=10)
        deepisles.ensure_image(tiny, uri=PINNED_URI, min_bytes=GIB, given=True)
    with pytest.raises(SegmentationError, match="not a SIF image"):
        junk = tmp_path / "junk.sif"
        junk.write_bytes(b"<html>rate limited</html>")
        deepisles.ensure_image(junk, uri=PINNED_URI, min_bytes=10, given=True)
    (box / "app" / "main.py").unlink()
    with pytest.raises(SegmentationError, match=r"sandbox has no /app/main\.py"):
        deepisles.ensure_image(box, uri=PINNED_URI, min_bytes=GIB, given=True)
    (tmp_path / "plain").mkdir()
    with pytest.raises(SegmentationError, match="plain: not an Apptainer sandbox"):
        deepisles.ensure_image(tmp_path / "plain", uri=PINNED_URI, min_bytes=GIB, given=True)
    with pytest.raises(SegmentationError, match=r"missing\.sif: DeepISLES image not found"):
        deepisles.ensure_image(tmp_path / "missing.sif", uri=PINNED_URI, min_bytes=GIB, given=True)
    other = write_fake_sif(tmp_path / "other.sif", labels=docker_labels(OTHER_URI), size=2 * GIB)
    with pytest.raises(
        SegmentationError, match=f"other.sif was built from .*{'ab' * 32}.*pins sha256:52f7"
    ):
        deepisles.ensure_image(other, uri=PINNED_URI, min_bytes=GIB, given=True)
    assert double.calls("pull") == []


def test_inspect_failure_is_reported(double: Double, tmp_path: Path) -> None:
    # Large enough and with the SIF magic, but unreadable for the runtime.
    bad = tmp_path / "bad.sif"
    with open(bad, "wb") as fh:
        fh.write(b"#!/usr/bin/env run-singularity\n".ljust(32, b"\0") + b"SIF_MAGIC\x00{broken\n")
    with pytest.raises(
        SegmentationError,
        match=r"'singularity inspect' failed \(exit 255\).*format not recognized",
    ):
        deepisles.verify_image(bad, uri=PINNED_URI, min_bytes=10)


def test_cli_pull_image_writes_a_stable_receipt(
    double: Double, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "cache" / deepisles.sif_name(PINNED_URI)
    receipt = tmp_path / "out" / "containers" / "deepisles-image.json"
    argv = ["pull-image", "--image", str(image), "--uri", PINNED_URI,
            "--min-bytes", str(GIB), "--receipt", str(receipt)]  # fmt: skip
    assert cli_main(argv) == 0
    data = json.loads(receipt.read_text())
    assert data == {
        "image": str(image), "kind": "sif", "size": 2 * GIB, "uri": PINNED_URI,
        "labels": docker_labels(PINNED_URI),
    }  # fmt: skip
    mtime = receipt.stat().st_mtime_ns
    assert cli_main(argv) == 0
    assert receipt.stat().st_mtime_ns == mtime and len(double.calls("pull")) == 1
    assert "receipt" in capsys.readouterr().out

    bad = tmp_path / "stub.sif"
    write_fake_sif(bad, labels=docker_labels(PINNED_URI), size=100)
    argv = ["pull-image", "--image", str(bad), "--uri", PINNED_URI, "--given",
            "--min-bytes", str(GIB), "--receipt", str(tmp_path / "r2.json")]  # fmt: skip
    assert cli_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bids2hub: error: ") and "stub.sif: 100 bytes" in err and "\n" not in err
    assert not (tmp_path / "r2.json").exists()


# ------------------------------------------------------------- the double


def _exec_argv(stage: Path, image: Path, **change: object) -> list[str]:
    opts = {"nv": ["--nv"], "bind": ["--bind", f"{stage}:/app/data"],
            "tmpfs": ["--writable-tmpfs"], "clean": ["--cleanenv"], "pwd": ["--pwd", "/app"]}  # fmt: skip
    opts.update({k: v for k, v in change.items() if k in opts})
    line = change.get(
        "line",
        "source activate isles_ensemble && python main.py"
        " --dwi_file_name dwi.nii.gz --adc_file_name adc.nii.gz",
    )
    return ["exec", *[w for v in opts.values() for w in v], str(image), "bash", "-c", line]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"nv": []}, "--nv missing"),
        ({"tmpfs": []}, "--writable-tmpfs missing"),
        ({"clean": []}, "--cleanenv missing"),
        ({"pwd": ["--pwd", "/"]}, "--pwd must be /app"),
        ({"bind": ["--bind", "STAGE:/data"]}, "expected one --bind SRC:/app/data"),
        ({"bind": ["--bind", "/nonexistent:/app/data"]}, "not an existing absolute folder"),
        ({"bind": []}, "expected one --bind"),
        ({"line": "python main.py --dwi_file_name dwi.nii.gz"}, "must start with"),
        ({"line": "source activate isles_ensemble && python main.py --dwi_file_name dwi.nii.gz"},
         "main.py arguments"),
        ({"line": "source activate isles_ensemble && python main.py --dwi_file_name x.nii.gz"
                  " --adc_file_name adc.nii.gz"}, "'x.nii.gz' is not a file in the bound folder"),
        ({"line": "source activate isles_ensemble && python main.py --dwi_file_name dwi.nii.gz"
                  " --adc_file_name adc.nii.gz --gpu 0"}, "does not take"),
        ({"image": "missing"}, "does not exist"),
    ],
)  # fmt: skip
def test_the_double_rejects_calls_that_break_the_contract(
    double: Double, inputs: dict[str, Path], sif: Path, change: dict, message: str
) -> None:
    stage = inputs["dwi"].parent
    if change.get("bind"):
        change["bind"] = [change["bind"][0], change["bind"][1].replace("STAGE", str(stage))]
    image = sif.with_name("missing.sif") if change.pop("image", None) else sif
    proc = subprocess.run(
        ["singularity", *_exec_argv(stage, image, **change)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "contract violation" in proc.stderr and message in proc.stderr
    assert not (stage / "results").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["pull", "--name", "NAME", "docker://isleschallenge/deepisles:latest"],
            "expected exactly the reference",
        ),
        (["pull", "NAME", PINNED_URI], "expected exactly the reference"),
        (["pull", "--name", "relative.sif", PINNED_URI], "--name must be an absolute .sif path"),
        (["pull", "--name", "EXISTING", PINNED_URI], "exists and --force was not given"),
        (["inspect", "SIF"], "expected --json"),
        (["run", "SIF"], "unexpected subcommand 'run'"),
    ],
)
def test_the_double_checks_pull_and_inspect(
    double: Double, sif: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    subst = {"NAME": str(tmp_path / "new.sif"), "EXISTING": str(sif), "SIF": str(sif)}
    argv = [subst.get(a, a) for a in argv]
    proc = subprocess.run(["singularity", *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "new.sif").exists()


# ------------------------------------------- DeepISLES' own behaviour, caught or avoided


def _seals_inputs(tmp_path: Path, fov_mm: float = 72.0) -> dict[str, Path]:
    """A SOOP-shaped subject's staged trace and ADC (mm^2/s), as prepare_dwi writes them."""
    from bids2hub.index.manifest import load_index
    from bids2hub.segment.plan import FactCache, plan_segmentation
    from bids2hub.segment.prepare import prepare_dwi

    from tests.soop import write_soop_like_tree

    root = write_soop_like_tree(tmp_path / f"soop-{fov_mm:g}", subjects=["2"], fov_mm=fov_mm)
    manifest, _ = load_index(root, tmp_path / f"idx-{fov_mm:g}" / "manifest.parquet")
    plan = plan_segmentation(manifest, ["2"], "earliest", FactCache(manifest, None))
    work = tmp_path / f"work-{fov_mm:g}"
    prepare_dwi(root, plan["targets"]["2"], work / "dwi.nii.gz", work / "adc.nii.gz")
    return {"dwi": work / "dwi.nii.gz", "adc": work / "adc.nii.gz"}


def _double_exec(
    stage: Path, sif: Path, line_extra: str = "", seals: bool = True
) -> subprocess.CompletedProcess:
    binds = ["--bind", f"{stage}:/app/data"]
    if seals:
        for sub in deepisles.SEALS_WRITABLE:
            (stage.parent / sub).mkdir(exist_ok=True)
            binds += ["--bind", f"{stage.parent / sub}:{deepisles.SEALS_DIR}/{sub}"]
    line = (
        "source activate isles_ensemble && python main.py"
        f" --dwi_file_name dwi.nii.gz --adc_file_name adc.nii.gz{line_extra}"
    )
    argv = ["exec", "--nv", *binds, "--writable-tmpfs", "--cleanenv", "--pwd", "/app",
            str(sif), "bash", "-c", line]  # fmt: skip
    return subprocess.run(["singularity", *argv], capture_output=True, text=True, check=False)


def _stage_copy(inputs: dict[str, Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for kind in ("dwi", "adc"):
        (folder / f"{kind}.nii.gz").write_bytes(inputs[kind].read_bytes())
    return folder


@pytest.mark.parametrize("mode", ["seals-gpu", "seals-oom"])
def test_a_silent_seals_failure_gives_an_all_zero_mask_with_exit_0(
    double: Double, inputs: dict[str, Path], sif: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:  # fmt: skip
    """(a) As DeepISLES: SEALS' output is hidden, its exit ignored, an all-zero mask written.
    Nothing in the output tells: the mask passes, and the QC flags it (test_qc, the report,
    the card)."""
    monkeypatch.setenv("SINGULARITY_DOUBLE_EXEC", mode)
    out = _out(tmp_path)
    log = io.StringIO()
    deepisles.run_deepisles(sif, inputs["dwi"], inputs["adc"], None, out, fast=True, log=log)
    assert not np.asarray(nib.load(out).dataobj).any()
    assert "exit status 0" in log.getvalue()
    from bids2hub.segment.qc import FLAG_EMPTY_DEEPISLES, qc_subject

    assert qc_subject("1", "", "deepisles", out, None).flag == FLAG_EMPTY_DEEPISLES


@pytest.mark.parametrize(
    ("mode", "flair", "shown"),
    [
        ("seals-unwritable", False, "Read-only file system"),
        ("seals-gpu", True, "no kernel image is available"),  # NVAUTO's traceback is not hidden
        ("seals-oom", True, "CUDA out of memory"),
    ],
)
def test_a_failure_signature_in_the_output_fails_the_job_with_its_tail(
    double: Double, inputs: dict[str, Path], sif: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, mode: str, flair: bool, shown: str,
) -> None:  # fmt: skip
    """(a) Exit 0 and an all-zero mask, but the output shows the failure: the job fails."""
    monkeypatch.setenv("SINGULARITY_DOUBLE_EXEC", mode)
    out = _out(tmp_path)
    with pytest.raises(SegmentationError, match=r"exited 0 .* but its output shows a failure") as e:
        deepisles.run_deepisles(
            sif, inputs["dwi"], inputs["adc"], inputs["flair"] if flair else None, out, fast=False
        )
    assert shown in str(e.value) and not out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == []  # staging removed


def test_a_256_mm_axis_wraps_seals_grid_so_the_staged_images_are_cropped(
    double: Double, sif: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(b) SEALS' uint8 1 mm grid: 32 voxels x 8 mm = 256 -> 0. The double gives an all-zero
    mask on such a grid; run_deepisles crops to the brain and pastes the mask back."""
    from bids2hub.segment.qc import dice

    from tests.soop import soop_truth

    monkeypatch.setenv("SINGULARITY_DOUBLE_SEGMENTER", "bids2hub.segment.run:segment_threshold")
    wide = _seals_inputs(tmp_path, fov_mm=256.0)
    assert nib.load(wide["dwi"]).shape[0] * nib.load(wide["dwi"]).header.get_zooms()[0] == 256
    stage = _stage_copy(wide, tmp_path / "raw-stage" / "input")
    proc = _double_exec(stage, sif)
    assert proc.returncode == 0, proc.stderr
    assert not np.asarray(nib.load(stage / "results/lesion_msk.nii.gz").dataobj).any()

    out = _out(tmp_path)
    log = io.StringIO()
    deepisles.run_deepisles(sif, wide["dwi"], wide["adc"], None, out, fast=True, log=log)
    mask = nib.load(out)
    ref = nib.load(wide["dwi"])
    assert mask.shape == ref.shape and np.allclose(mask.affine, ref.affine)
    truth = soop_truth("2", 256.0)["acute"]
    assert dice(np.asarray(mask.dataobj) > 0, truth) > 0.7
    assert "cropped to the brain" in log.getvalue()
    (argv,) = [a for a in double.calls("exec") if "--pwd" in a][-1:]
    assert "dwi.nii.gz" in argv[-1]


def test_crop_box_keeps_every_axis_under_256_mm() -> None:
    brain = np.zeros((40, 40, 10), bool)
    brain[5:35, 8:30, 2:8] = True  # 30 x 22 voxels of 8 mm: 240 x 176 mm
    box = deepisles.crop_box(brain, (8.0, 8.0, 6.0), "x.nii.gz")
    assert all((hi - lo) * z < 256 for (lo, hi), z in zip(box, (8.0, 8.0, 6.0), strict=True))
    assert box[1] == (6, 32) and box[2] == (0, 10)  # 10 mm margin: 2 voxels of 8 mm
    brain[:, :, :] = True
    with pytest.raises(SegmentationError, match=r"x\.nii\.gz: the brain spans 320 mm along axis 0"):
        deepisles.crop_box(brain, (8.0, 8.0, 6.0), "x.nii.gz")


def test_an_uncompressed_nii_gz_and_skull_strip_without_flair_crash_deepisles(
    double: Double, inputs: dict[str, Path], sif: Path, tmp_path: Path
) -> None:
    """(c) The double crashes as DeepISLES does; run_deepisles never lets either happen."""
    stage = _stage_copy(inputs, tmp_path / "s1" / "input")
    nib.save(nib.load(inputs["dwi"]), tmp_path / "plain.nii")
    (stage / "dwi.nii.gz").write_bytes((tmp_path / "plain.nii").read_bytes())  # .nii bytes
    proc = _double_exec(stage, sif)
    assert proc.returncode == 1 and "BadGzipFile" in proc.stderr
    stage = _stage_copy(inputs, tmp_path / "s2" / "input")
    proc = _double_exec(stage, sif, " --skull_strip")
    assert proc.returncode == 1 and "'str' object has no attribute 'get_fdata'" in proc.stderr

    out = _out(tmp_path)
    with pytest.raises(SegmentationError, match="--skull_strip needs a FLAIR"):
        deepisles.run_deepisles(
            sif, inputs["dwi"], inputs["adc"], None, out, fast=True, skull_strip=True
        )
    assert len(double.calls("exec")) == 2  # refused before any container call
    deepisles.run_deepisles(sif, tmp_path / "plain.nii", inputs["adc"], None, out, fast=True)
    assert out.is_file()  # staged as gzip


def test_parse_time_error_for_skull_strip_without_flair() -> None:
    from bids2hub.errors import ConfigError
    from bids2hub.segment.plan import check_skull_strip

    plan = {"targets": {"1": {"flair": "sub-1/anat/sub-1_FLAIR.nii.gz"}, "2": {"flair": None}}}
    config = {"segment": {"backend": "deepisles", "deepisles": {"skull_strip": True}}}
    with pytest.raises(
        ConfigError, match=r"skull_strip.*1 segmented subject\(s\) have none \(sub-2\)"
    ):
        check_skull_strip(config, plan)
    check_skull_strip(
        {"segment": {"backend": "threshold", "deepisles": {"skull_strip": True}}}, plan
    )
    del plan["targets"]["2"]
    check_skull_strip(config, plan)


def test_seals_writes_exceed_the_tmpfs_cap_unless_its_folders_are_bound(
    double: Double, inputs: dict[str, Path], sif: Path, tmp_path: Path
) -> None:
    """(d) The double enforces the 64 MiB --writable-tmpfs cap on what SEALS writes (96 MiB):
    without binds an all-zero mask (exit 0); run_deepisles binds scratch folders, then
    removes them."""
    stage = _stage_copy(inputs, tmp_path / "nobind" / "input")
    proc = _double_exec(stage, sif, seals=False)
    assert proc.returncode == 0, proc.stderr
    assert not np.asarray(nib.load(stage / "results/lesion_msk.nii.gz").dataobj).any()
    stage = _stage_copy(inputs, tmp_path / "bound" / "input")
    proc = _double_exec(stage, sif)
    assert (
        proc.returncode == 0
        and np.asarray(nib.load(stage / "results/lesion_msk.nii.gz").dataobj).any()
    )
    assert (tmp_path / "bound" / "test_result" / "seals-footprint.bin").is_file()

    out = _out(tmp_path)
    deepisles.run_deepisles(sif, inputs["dwi"], inputs["adc"], None, out, fast=True)
    assert np.array_equal(np.asarray(nib.load(out).dataobj), _expected_mask(inputs, tmp_path))
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # scratch removed


def test_brain_extraction_zeroes_the_staged_background(tmp_path: Path) -> None:
    """(f) Optional: the staged trace and ADC are zero outside the brain; GeneratedBy says so."""
    from bids2hub.segment.run import generated_by

    staged_in = _seals_inputs(tmp_path)
    for extract in (False, True):
        stage = tmp_path / f"stage-{extract}"
        stage.mkdir()
        result = deepisles.stage_inputs(staged_in, stage, brain_extract=extract)
        assert result.names == {"dwi": "dwi.nii.gz", "adc": "adc.nii.gz"} and result.box is None
        trace = nib.load(stage / "dwi.nii.gz").get_fdata()
        corner = trace[:3, :3, :].ravel()
        assert (corner == 0).all() == extract
    entry = generated_by("deepisles", container_uri=PINNED_URI, brain_extract=True)[1]
    assert entry["BrainExtraction"] is True and "brain-extracted" in entry["Description"]
    assert generated_by("deepisles", container_uri=PINNED_URI)[1]["BrainExtraction"] is False


def test_the_demo_variant_with_a_256_mm_field_of_view(
    double: Double, sif: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(b) on the demo: its default grid stays under 256 mm; the wide variant (86 x 3 mm) is
    cropped for DeepISLES and its mask, pasted back, still matches the expert mask."""
    from bids2hub.demo.data import _DWI_VOXEL_MM, _dwi_shape, write_demo_dataset
    from bids2hub.index.manifest import load_index
    from bids2hub.segment.plan import FactCache, plan_segmentation
    from bids2hub.segment.prepare import prepare_dwi
    from bids2hub.segment.qc import qc_subject

    assert max(_dwi_shape(None)) * _DWI_VOXEL_MM < 256 <= max(_dwi_shape(258.0)) * _DWI_VOXEL_MM
    monkeypatch.setenv("SINGULARITY_DOUBLE_SEGMENTER", "bids2hub.segment.run:segment_threshold")
    root = write_demo_dataset(tmp_path / "demo", n_subjects=2, dwi_fov_mm=258.0)
    manifest, _ = load_index(root, tmp_path / "idx" / "manifest.parquet")
    plan = plan_segmentation(manifest, ["M9001"], "earliest", FactCache(manifest, None))
    target = plan["targets"]["M9001"]
    work = tmp_path / "work"
    prepare_dwi(root, target, work / "dwi.nii.gz", work / "adc.nii.gz")
    assert max(deepisles._extent_mm(nib.load(work / "dwi.nii.gz"))) >= 256
    out = tmp_path / "out" / "mask.nii.gz"
    log = io.StringIO()
    deepisles.run_deepisles(
        sif, work / "dwi.nii.gz", work / "adc.nii.gz", None, out, fast=True, log=log
    )
    assert "cropped to the brain" in log.getvalue()
    row = qc_subject("M9001", target["session"], "deepisles", out, root / target["expert_mask"])
    assert row.dice is not None and row.dice > 0.8, row

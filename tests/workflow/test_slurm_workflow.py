"""`snakemake --profile slurm` on a real single-node SLURM (tests/slurm/cluster.sh).

The cluster has a default `cpu` partition and a `gpu` partition with two fake
GPUs; slurmdbd keeps accounting, which the tests read back with `sacct` (the
profile itself polls job states with `squeue`, see its comments). DeepISLES runs through the `singularity` test
double (tests/doubles), the backend clusters use. Each SLURM job costs ~10 s
of scheduling and polling here, so the DAGs are kept small.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO, job_processes, tool_env

pytestmark = pytest.mark.workflow

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
DOUBLES = REPO / "tests" / "doubles"
SUBMITTED = re.compile(
    r"has been submitted with SLURM jobid (?P<id>\d+) \(log: .*/slurm_logs/(?P<name>[^/]+)/"
)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Start (or reuse) the local cluster; a cluster that does not come up fails the test."""
    proc = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"the local SLURM cluster did not start:\n{proc.stderr}"
    info = subprocess.run(
        ["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True, check=True
    ).stdout
    assert "gpu" in info and "gpu:fake:2" in info, info


def _project(tmp_path: Path, subjects: tuple[str, ...] = ("M9001", "M9002", "M9004")) -> dict:
    """The demo dataset, run on some of its subjects (M9004 has no DWI)."""
    from bids2hub.demo.data import write_demo_dataset

    bids = write_demo_dataset(tmp_path / "bids")
    out = tmp_path / "results"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "bids_dir": str(bids),
                "out_dir": str(out),
                "dataset": "demo",
                # Part of the demo: its expected counts are 'n/a' in the validation report.
                "subjects": list(subjects),
                "segment": {
                    "backend": "deepisles",
                    "deepisles": {"cache_dir": str(tmp_path / "sif")},
                },
            }
        )
    )
    return {"bids": bids, "out": out, "cfg": cfg, "work": tmp_path / "work", "root": tmp_path}


def _env(project: dict[str, Path]) -> dict[str, str]:
    # sbatch exports the submitting environment: the jobs find the venv and the double.
    env = tool_env(SINGULARITY_DOUBLE_LOG=str(project["root"] / "singularity-calls.jsonl"))
    env["PATH"] = f"{DOUBLES}{os.pathsep}{env['PATH']}"
    return env


def _snakemake_cmd(project: dict[str, Path], *targets: Path) -> list[str]:
    # Exactly the README's command, from the repository root, plus the test configfile
    # (and -d, so that each test has its own .snakemake folder). Polling every 2 s
    # instead of the profile's 10 s: each step of these small DAGs waited for a poll
    # (demo run on this cluster: 96.7 s -> 86.6 s); the profile's value is for real
    # clusters, whose controller every poll costs.
    return [
        sys.executable, "-m", "snakemake", "--profile", "slurm",
        "--configfile", str(project["cfg"]), "-d", str(project["work"]),
        "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
        *map(str, targets),
    ]  # fmt: skip


def _run(project: dict[str, Path], *, expect_ok: bool = True) -> str:
    """Run the workflow with the shipped profile; return its output."""
    proc = subprocess.run(
        _snakemake_cmd(project), cwd=REPO, env=_env(project),
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, output[-6000:]
    else:
        assert proc.returncode != 0, output[-6000:]
    return output


def _submitted(output: str) -> dict[str, str]:
    """SLURM job id -> rule or group name (from the slurm_logs folder Snakemake names)."""
    return {m["id"]: m["name"] for m in SUBMITTED.finditer(output)}


def _sacct(job_ids: list[str]) -> dict[str, dict[str, str]]:
    proc = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids),
         "-o", "JobID,Partition,AllocTRES,State"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {}
    for line in proc.stdout.splitlines():
        job, partition, tres, state = line.split("|")
        rows[job] = {"partition": partition, "tres": tres, "state": state}
    return rows


def _executed(output: str) -> list[tuple[str, str]]:
    """(rule, subject) of every job this run scheduled (subject '' for aggregates)."""
    # One "rule X:" block per job, also for the jobs listed inside a group job.
    jobs = []
    for block in re.split(r"^(?=\s*(?:local)?rule \w+:\s*$)", output, flags=re.M):
        rule = re.match(r"\s*(?:local)?rule (\w+):", block)
        if not rule:
            continue
        sub = re.search(r"^\s*wildcards: .*?\bsub=(\w+)", block, re.M)
        jobs.append((rule.group(1), sub.group(1) if sub else ""))
    return jobs


def _status(project: dict[str, Path]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bids2hub", "status", "--configfile", str(project["cfg"]),
         "-d", str(project["work"]), "--tsv"],
        cwd=REPO, env=_env(project), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout


def test_profile_runs_the_demo_with_gpu_jobs_on_the_gpu_partition(
    slurm_cluster: None, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    output = _run(project)

    out = project["out"]
    plan = json.loads((out / "index/segmentation.json").read_text())
    assert len(plan["targets"]) == 2
    for sub, target in plan["targets"].items():
        ses = target["session"]
        assert (out / f"hub/derivatives/deepisles/sub-{sub}/ses-{ses}/dwi/"
                f"sub-{sub}_ses-{ses}_desc-lesion_mask.nii.gz").is_file()  # fmt: skip
    sessions = [
        s for sub in ("M9001", "M9002", "M9004") for s in project["bids"].glob(f"sub-{sub}/ses-*")
    ]
    assert len(list((out / "hub/data").rglob("*.parquet"))) == len(sessions) == 4
    assert (out / "qc/segmentation.tsv").is_file() and (out / "hub/README.md").is_file()

    submitted = _submitted(output)
    accounting = _sacct(list(submitted))
    assert set(accounting) == set(submitted)
    segment_jobs = [j for j, name in submitted.items() if name == "rule_segment_lesion"]
    assert len(segment_jobs) == 2
    for job, name in submitted.items():
        row = accounting[job]
        assert row["state"] == "COMPLETED", (name, row)
        if name == "rule_segment_lesion":
            assert row["partition"] == "gpu" and "gres/gpu=1" in row["tres"], row
        else:
            assert row["partition"] == "cpu" and "gres/gpu" not in row["tres"], (name, row)
    # Per subject: one submission for its shards and DWI preparation, one job checking
    # its sessions' sources, one reading its shards back (after the validation
    # checkpoint) and writing their preview rows.
    groups = sorted(n for n in submitted.values() if n.startswith("group_"))
    assert [g.split("_")[1] for g in groups] == [
        "shards-M9001", "shards-M9002", "shards-M9004"
    ], submitted  # fmt: skip
    assert ["prepare_dwi" in g for g in groups] == [True, True, False]  # M9004: no DWI
    checks = sorted(n for n in submitted.values() if n.startswith("rule_check_"))
    assert checks == ["rule_check_shards"] * 3 + ["rule_check_sources"] * 3, submitted
    assert not (out / "work/preview").exists() or len(
        list((out / "work/preview").rglob("*.parquet"))
    ) == len(sessions)
    assert not {"rule_write_shard", "rule_prepare_dwi"} & set(submitted.values())
    # Localrules never reach SLURM: the image pull ran here, once.
    assert "rule_pull_deepisles_image" not in submitted.values()
    calls = [
        json.loads(x)["argv"]
        for x in (tmp_path / "singularity-calls.jsonl").read_text().splitlines()
    ]
    execs = [c for c in calls if c[0] == "exec"]
    assert len(execs) == 2 and all("--nv" in c for c in execs)
    # SLURM gave each GPU job its device, and it reached the container through --cleanenv.
    assert all(any(a.startswith("CUDA_VISIBLE_DEVICES=") for a in c) for c in execs), execs


def test_failed_subject_is_rerun_alone_after_the_fix(slurm_cluster: None, tmp_path: Path) -> None:
    project = _project(tmp_path)
    plan_subjects = ["M9001", "M9002"]
    bad = next(project["bids"].glob("sub-M9002/ses-*/dwi/*_dwi.nii.gz"))
    original = bad.read_bytes()
    bad.write_bytes(original[: len(original) // 2])  # truncated: header intact, data cut

    _run(project, expect_ok=False)
    out = project["out"]
    plan = json.loads((out / "index/segmentation.json").read_text())
    assert sorted(plan["targets"]) == plan_subjects
    good = plan["targets"]["M9001"]["session"]
    # keep-going: the other subject finished, shards included.
    assert (out / f"hub/derivatives/deepisles/sub-M9001/ses-{good}/dwi/"
            f"sub-M9001_ses-{good}_desc-lesion_mask.nii.gz").is_file()  # fmt: skip
    m9002 = plan["targets"]["M9002"]["session"]
    shards = {p.name for p in (out / "hub/data").rglob("*.parquet")}
    assert f"sub-M9002_ses-{m9002}.parquet" not in shards and len(shards) == 3

    status = _status(project)
    failed = [line.split("\t") for line in status.splitlines() if "\tfailed\t" in line]
    assert {(f[0], f[2]) for f in failed} == {
        ("sub-M9002", "write_shard"),
        ("sub-M9002", "prepare_dwi"),
    }
    for f in failed:
        assert Path(f[4]).is_file() and "sub-M9002" in f[4]
    # The subject's group job stopped at its first failure; that job's log names the file.
    reasons = "".join(Path(f[4]).read_text() for f in failed)
    rel = re.escape(str(bad.relative_to(project["bids"])))
    assert re.search(rf"{rel}: (unreadable image|truncated or corrupt gzip)", reasons), reasons
    blocked = [
        line for line in status.splitlines() if "sub-M9002" in line and "\tsegment_lesion\t" in line
    ]
    assert blocked and blocked[0].split("\t")[3] == "missing"

    bad.write_bytes(original)  # the fix (a newer mtime)
    second = _run(project)
    executed = _executed(second)
    per_subject = {(rule, sub) for rule, sub in executed if sub}
    assert per_subject and {sub for _, sub in per_subject} == {"M9002"}, executed
    assert ("write_shard", "M9002") in per_subject and ("segment_lesion", "M9002") in per_subject
    # Besides, only dataset-level aggregates (the validator and the checkpoint see the
    # changed file too): nothing of M9001 or M9004 reruns.
    assert {rule for rule, sub in executed if not sub} <= {
        "all", "summarize_segmentation", "build_masks_table", "dataset_card",
        "build_preview_table",
        "run_bids_validator", "list_intact_sessions", "write_validation_report",
        "check_validation",
        # the paper's dataset-level tables, figures and provenance
        "measure_lesion_volumes", "write_cohort_table", "plot_sessions", "plot_lesion_volumes",
        "plot_lesion_overlap", "summarize_runtimes", "write_provenance",
        # the viewer page shows the subject with the largest predicted lesion, chosen
        # among every segmented subject's mask: M9002's new mask can change the choice
        "render_viewer",
    }, executed  # fmt: skip
    status = _status(project)
    assert "\tfailed\t" not in status and "\tmissing\t" not in status
    m9002 = [line.split("\t") for line in status.splitlines() if line.startswith("sub-M9002")]
    assert sorted(f[2] for f in m9002) == sorted(
        ["write_shard", "check_sources", "check_shards", "prepare_dwi", "segment_lesion"]
    ) and {f[3] for f in m9002} == {"done"}


def _sparse_nifti(path: Path, slices: int) -> None:
    """A valid uncompressed NIfTI of 2 MiB per slice whose data is a hole (instant to create)."""
    shape = (1024, 1024, slices)
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_zooms((1.0, 1.0, 1.0))
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header.binaryblock)
        fh.write(b"\0" * (352 - len(header.binaryblock)))
        fh.truncate(352 + 2 * int(np.prod(shape)))


def test_scancel_during_a_shard_write_leaves_no_partial_output(
    slurm_cluster: None, tmp_path: Path
) -> None:
    project = _project(tmp_path, subjects=("M9001", "M9002"))
    big_session = next(project["bids"].glob("sub-M9002/ses-*"))
    ses = big_session.name
    big = big_session / "anat" / f"sub-M9002_{ses}_acq-tfl3_run-9_T1w.nii"
    _sparse_nifti(big, slices=768)  # 1.5 GiB: a few seconds of writing
    (big.parent / big.name.replace(".nii", ".json")).write_text('{"RepetitionTime": 2.2}\n')
    shard = project["out"] / "hub/data/sub-M9002" / f"sub-M9002_{ses}.parquet"

    console = tmp_path / "snakemake.out"  # a file, not a pipe nobody reads while waiting
    with open(console, "w") as sink:
        proc = subprocess.Popen(
            # Only the shard: the kill and the retry are this test's subject, not the rest.
            _snakemake_cmd(project, shard), cwd=REPO, env=_env(project), stdout=sink,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        temporaries: list[Path] = []
        while not temporaries:
            assert proc.poll() is None, "the run ended before the shard write started"
            assert time.monotonic() < deadline, "no shard write seen in 300 s"
            temporaries = list(shard.parent.glob(f".{shard.name}.tmp-*"))
            time.sleep(0.05)
        jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                              check=True).stdout.split()  # fmt: skip
        running = job_processes(jobs)
        assert running, f"no process of jobs {jobs} seen before the scancel"
        subprocess.run(["scancel", *jobs], check=True)
        # Wait until the killed job is gone from the queue, then look at what it left.
        while set(jobs) & set(subprocess.run(
            ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True
        ).stdout.split()):  # fmt: skip
            time.sleep(0.2)
        # Every process of the cancelled jobs is gone, also any whose parent died
        # first (proctrack/linuxproc lost those: a job-side Snakemake survived).
        deadline = time.monotonic() + 60  # KillWait=5 s, then SIGKILL
        while (alive := job_processes(jobs)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in alive:  # do not leave them running for the next tests
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not alive, f"processes of cancelled jobs survived 60 s: {alive}"
        # The write is atomic (temporary + rename): at the kill the shard is either absent
        # or whole. On a quiet machine the 1.5 GiB sparse write can finish between the
        # temporary's appearance and the scancel; then it must be the complete file.
        if shard.exists():
            _assert_complete_shard(shard, big)
        # Every process of the job gets SIGTERM at once (proctrack/cgroup), and the
        # job-side Snakemake then SIGKILLs the group's other shell commands, so the
        # writer may die before it removes its temporary: a hidden file, never the
        # shard, that the retried write removes (checked below once the run is done).
        left = [p.name for p in temporaries if p.exists()]
        assert all(n.startswith(f".{shard.name}.tmp-") for n in left), left
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = console.read_text()
    # The profile's retries resubmitted the job: the same run completed the shard.
    assert proc.returncode == 0, output[-6000:]
    # Snakemake saw the cancellation as a failed job and resubmitted it: two submissions
    # of the shard's group, the first cancelled, the second completed (SLURM's accounting).
    assert "Error in group shards-M9002" in output and "Trying to restart job" in output
    submitted = sorted(_submitted(output).items(), key=lambda kv: int(kv[0]))
    assert [name for _, name in submitted] == ["group_shards-M9002_write_shard"] * 2, submitted
    states = _sacct([job for job, _ in submitted])
    first, retry = (states[job]["state"] for job, _ in submitted)
    assert first.startswith("CANCELLED") and retry == "COMPLETED", states
    _assert_complete_shard(shard, big)
    assert not list(shard.parent.glob(".*tmp-*"))


def _assert_complete_shard(shard: Path, big: Path) -> None:
    """The shard is a whole parquet file that embeds the 1.5 GiB run (metadata only)."""
    parquet = pq.ParquetFile(shard)  # a truncated file has no footer: this raises
    assert parquet.metadata.num_rows == 1
    sources = json.loads(parquet.schema_arrow.metadata[b"bids2hub"])["sources"]
    (entry,) = [s for s in sources if s["path"].endswith("run-9_T1w.nii")]
    assert entry["column"] == "t1w" and entry["size"] == big.stat().st_size
    stored = sum(
        parquet.metadata.row_group(i).column(j).total_compressed_size
        for i in range(parquet.metadata.num_row_groups)
        for j in range(parquet.metadata.num_columns)
        if parquet.metadata.row_group(i).column(j).path_in_schema.split(".")[0] == "t1w"
    )
    assert stored >= entry["size"], (stored, entry["size"])  # pages stored uncompressed

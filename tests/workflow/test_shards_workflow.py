"""Real Snakemake runs of the shard stage, read back through ``datasets``."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO, run_snakemake, write_nifti

pytestmark = pytest.mark.workflow


def _config(tmp: Path, bids: Path, out: Path, **extra: object) -> Path:
    if extra.get("dataset") == "ds004884":
        # ARC's columns, with the expected counts of this 4-subject tree (the
        # validation report checks them; ARC's own are 230 subjects, 902 sessions).
        from bids2hub.validate.counts import count_names

        from tests.synthetic import arc_expected_counts

        counts = arc_expected_counts(sorted(p.name[4:] for p in bids.glob("sub-*")))
        shutil.copy(REPO / "config/datasets/ds004884.yaml", tmp / "ds004884.yaml")
        arc = {
            "name": "ds004884",
            "extends": "ds004884",
            "expected": {k: counts[k] for k in count_names([])},
        }
        (tmp / "arc-tree.yaml").write_text(yaml.safe_dump(arc))
        extra["dataset"] = str(tmp / "arc-tree.yaml")
    cfg = {"bids_dir": str(bids), "out_dir": str(out), **extra}
    path = tmp / f"config-{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _shards(out: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((out / "hub/data").glob("sub-*/*.parquet"))}


def _mtimes(out: Path) -> dict[str, int]:
    return {k: p.stat().st_mtime_ns for k, p in _shards(out).items()}


def test_arc_tree_end_to_end_reruns_and_determinism(arc_tree: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "out"
    cfg = _config(tmp_path, arc_tree, out, dataset="ds004884")
    run_snakemake(tmp_path, "--configfile", str(cfg))
    shards = _shards(out)
    assert len(shards) == 7
    assert (out / "index/manifest.parquet").is_file()
    assert all((out / "logs/write_shard" / p.parent.name / f"{k}.log").is_file()
               for k, p in shards.items())  # fmt: skip

    ds = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in shards.values()], split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )  # fmt: skip
    assert ds.num_rows == 7
    assert isinstance(ds.features["t1w"], datasets.List)
    assert isinstance(ds.features["lesion"], datasets.Nifti)
    idx, row = next(
        (i, r) for i, r in enumerate(ds) if r["subject_id"] == "sub-M2112" and len(r["dwi"]) > 1
    )
    raw = pq.read_table(shards[f"sub-M2112_{row['session_id']}"]).to_pylist()[0]
    src_dir = arc_tree / "sub-M2112" / row["session_id"] / "dwi"
    for img, cell, bvals in zip(row["dwi"], raw["dwi"], row["dwi_bvals"], strict=True):
        ref = nib.load(src_dir / cell["path"])
        assert img.shape == ref.shape and img.shape[3] == len(bvals.split())
        assert (img.get_fdata() == ref.get_fdata()).all()
    assert idx >= 0
    lesion_row = next(r for r in ds if r["lesion"] is not None)
    ref = next(
        arc_tree.glob(f"derivatives/lesion_masks/{lesion_row['subject_id']}/*/anat/*.nii.gz")
    )
    assert lesion_row["lesion"].shape == nib.load(ref).shape

    # Nothing changed: Snakemake has nothing to do and no shard is rewritten.
    before = _mtimes(out)
    proc = run_snakemake(tmp_path, "--configfile", str(cfg))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert _mtimes(out) == before

    # Same inputs into another folder: byte-identical shards.
    out2 = tmp_path / "out2"
    run_snakemake(
        tmp_path, "--configfile", str(_config(tmp_path, arc_tree, out2, dataset="ds004884"))
    )
    assert {k: p.read_bytes() for k, p in _shards(out).items()} == {
        k: p.read_bytes() for k, p in _shards(out2).items()
    }

    # Change the bytes of one source file: only its session's shard is rebuilt.
    target = sorted(arc_tree.glob("sub-M2215/ses-*/anat/*_T1w.nii.gz"))[0]
    write_nifti(target, (4, 4, 3), seed=99)
    session = target.parent.parent.name
    proc = run_snakemake(tmp_path, "--configfile", str(cfg))
    after = _mtimes(out)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {f"sub-M2215_{session}"}, proc.stderr[-3000:]
    table = pq.read_table(_shards(out)[f"sub-M2215_{session}"])
    cell = table.column("t1w").to_pylist()[0][0]
    assert (
        hashlib.sha256(cell["bytes"]).hexdigest() == hashlib.sha256(target.read_bytes()).hexdigest()
    )


def test_replaced_file_with_older_mtime_and_edited_phenotype(
    arc_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path, arc_tree, out, dataset="ds004884")
    run_snakemake(tmp_path, "--configfile", str(cfg))
    before = _mtimes(out)
    # cp -p / rsync -a style: new bytes, but an mtime older than the shard's.
    target = sorted(arc_tree.glob("sub-M2105/ses-*/anat/*_T1w.nii.gz"))[0]
    old = target.stat().st_mtime_ns
    write_nifti(target, (4, 4, 3), seed=123)
    os.utime(target, ns=(old - 10**9, old - 10**9))
    run_snakemake(tmp_path, "--configfile", str(cfg))
    after = _mtimes(out)
    assert {k for k in after if after[k] != before[k]} == {f"sub-M2105_{target.parent.parent.name}"}
    # One subject's phenotype edited: only that subject's shards are rebuilt.
    tsv = arc_tree / "participants.tsv"
    lines = tsv.read_text().splitlines(keepends=True)
    i = next(n for n, ln in enumerate(lines) if ln.startswith("sub-M2112\t"))
    cells = lines[i].rstrip("\r\n").split("\t")
    cells[5] = "12.5"  # wab_aq
    lines[i] = "\t".join(cells) + "\r\n"
    tsv.write_text("".join(lines))
    before = after
    run_snakemake(tmp_path, "--configfile", str(cfg))
    after = _mtimes(out)
    changed = {k for k in after if after[k] != before[k]}
    assert changed and all(k.startswith("sub-M2112_") for k in changed)
    assert len(changed) == len(list(arc_tree.glob("sub-M2112/ses-*")))
    row = pq.read_table(_shards(out)[sorted(changed)[0]]).to_pylist()[0]
    assert row["wab_aq"] == 12.5


def test_generic_schema_stays_uniform_when_a_modality_appears(
    arc_tree: Path, tmp_path: Path
) -> None:
    import datasets

    out = tmp_path / "out"
    # the bare ASL image below lacks the sidecar keys the BIDS validator requires
    cfg = _config(tmp_path, arc_tree, out, validation={"tolerate_validator_errors": True})
    run_snakemake(tmp_path, "--configfile", str(cfg))
    ses = sorted(arc_tree.glob("sub-M2105/ses-*"))[0]
    write_nifti(ses / "perf" / f"sub-M2105_{ses.name}_asl.nii.gz", (4, 4, 3, 2))
    run_snakemake(tmp_path, "--configfile", str(cfg))
    schemas = {tuple(pq.read_schema(p).names) for p in _shards(out).values()}
    assert len(schemas) == 1 and "asl" in next(iter(schemas))
    ds = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in _shards(out).values()], split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )  # fmt: skip
    assert sum(len(r) for r in ds["asl"]) == 1


def test_unfetched_annex_file_is_one_clear_line(arc_tree: Path, tmp_path: Path) -> None:
    link = next(arc_tree.glob("sub-M2105/ses-*/anat")) / "sub-M2105_ses-964_acq-x_run-9_T1w.nii.gz"
    link.symlink_to("../../../.git/annex/objects/Xx/Yy/missing/missing")
    cfg = _config(tmp_path, arc_tree, tmp_path / "out", dataset="ds004884")
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), check=False)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("bids2hub: error:")]
    assert len(errors) == 1 and "1 file(s)" in errors[0] and link.name in errors[0]
    assert "datalad get" in errors[0] and "Traceback" not in proc.stderr


def test_broken_files_fail_naming_the_file_and_leave_no_partial_shard(
    arc_tree: Path, tmp_path: Path
) -> None:
    truncated = sorted(arc_tree.glob("sub-M2112/ses-*/dwi/*_dwi.nii.gz"))[0]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    bad_header = sorted(arc_tree.glob("sub-M2215/ses-*/anat/*_T1w.nii.gz"))[0]
    bad_header.write_bytes(gzip.compress(b"\x00" * 600, mtime=0))
    out = tmp_path / "out"
    cfg = _config(tmp_path, arc_tree, out, dataset="ds004884")
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "--keep-going", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    rel_trunc = truncated.relative_to(arc_tree).as_posix()
    rel_head = bad_header.relative_to(arc_tree).as_posix()
    assert f"{rel_trunc}: truncated or corrupt gzip stream" in text
    assert f"{rel_head}: unreadable NIfTI header" in text
    failed = {
        f"sub-M2112_{truncated.parent.parent.name}",
        f"sub-M2215_{bad_header.parent.parent.name}",
    }
    shards = _shards(out)
    assert not failed & set(shards)
    assert len(shards) == 7 - len(failed)
    for path in shards.values():  # the other sessions are complete and readable
        assert pq.read_table(path).num_rows == 1
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_no_sessions_uncompressed_annex_symlinks(tmp_path: Path) -> None:
    import datasets

    from tests.synthetic import write_arc_like_tree

    bids = write_arc_like_tree(
        tmp_path / "bids", ["M2105", "M2215"], sessions=False, compress=False,
        annex_symlinks=True,
    )  # fmt: skip
    out = tmp_path / "out"
    run_snakemake(tmp_path, "--configfile", str(_config(tmp_path, bids, out)))
    shards = _shards(out)
    assert sorted(shards) == ["sub-M2105", "sub-M2215"]
    ds = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in shards.values()], split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )  # fmt: skip
    assert ds["session_id"] == [None, None]
    row = ds[0]
    src = next(bids.glob("sub-M2105/anat/*_T1w.nii"))
    assert src.is_symlink() and ".git/annex/objects" in str(src.readlink())
    assert row["t1w"][0].shape == nib.load(src).shape
    raw = pq.read_table(shards["sub-M2105"]).column("t1w").to_pylist()[0][0]
    assert raw["path"].endswith(".nii") and raw["bytes"] == src.read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"segmnt": {"backend": "threshold"}}, "unknown config key 'segmnt' (did you mean 'segment'?)"),
        ({"bids_dir": None}, "config key 'bids_dir' must be string"),
        ({"hub": {"push": "yes"}}, "config key 'hub.push' must be boolean"),
        ({"bids_dir": "NOT_BIDS"}, "is not a BIDS dataset: it has no dataset_description.json"),
        ({"bids_dir": "MISSING"}, "does not exist or is not a folder"),
        ({"subjects": ["M9999"]}, "config key 'subjects': sub-M9999 not found"),
        ({"dataset": "ds000000"}, "dataset 'ds000000' has no map"),
        ({"out_dir": "/proc/no/such/place"}, "out_dir '/proc/no/such/place' cannot be created"),
    ],
)  # fmt: skip
def test_config_errors_are_one_clear_line(
    arc_tree_ro: Path, tmp_path: Path, extra: dict, message: str
) -> None:
    cfg: dict = {"bids_dir": str(arc_tree_ro), "out_dir": str(tmp_path / "out"), **extra}
    if cfg["bids_dir"] == "NOT_BIDS":
        (tmp_path / "plain").mkdir()
        cfg["bids_dir"] = str(tmp_path / "plain")
    elif cfg["bids_dir"] == "MISSING":
        cfg["bids_dir"] = str(tmp_path / "missing")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "--configfile", str(path), "-n", check=False)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("bids2hub: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_bids_dir_in_configfile(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"out_dir": str(tmp_path / "out")}))
    proc = run_snakemake(tmp_path, "--configfile", str(path), "-n", check=False)
    assert proc.returncode != 0
    assert "bids2hub: error: config key 'bids_dir' is required" in proc.stderr

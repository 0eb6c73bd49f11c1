from pathlib import Path

import pytest
from bids2hub.errors import ConfigError
from bids2hub.plan import prepare

from tests.conftest import REPO, write_nifti

CONFIG_DIR = REPO / "config"


def test_main_then_job_mode(arc_tree: Path, tmp_path: Path) -> None:
    cfg = {"bids_dir": str(arc_tree), "out_dir": str(tmp_path / "out"), "dataset": "ds004884"}
    main = prepare(cfg, config_dir=CONFIG_DIR)
    assert main.index_rebuilt and len(main.shards) == 7
    columns = main.columns_path.read_text()
    mtime = main.columns_path.stat().st_mtime_ns
    shard = next(iter(main.shards))
    fingerprint = main.session_fingerprint(shard)

    # A cluster job re-parses: no walk, same map, same fingerprints.
    write_nifti(arc_tree / "sub-M2039/ses-99/anat/sub-M2039_ses-99_run-1_T1w.nii.gz")
    job = prepare(cfg, config_dir=CONFIG_DIR, refresh_index=False)
    assert not job.index_rebuilt and "sub-M2039_ses-99" not in job.shards
    assert job.cmap == main.cmap and job.session_fingerprint(shard) == fingerprint

    # The next main parse sees the new session; the unchanged map file keeps its mtime.
    again = prepare(cfg, config_dir=CONFIG_DIR)
    assert again.index_rebuilt and "sub-M2039_ses-99" in again.shards
    assert main.columns_path.read_text() == columns
    assert main.columns_path.stat().st_mtime_ns == mtime


def test_subject_filter_and_rows(arc_tree: Path, tmp_path: Path) -> None:
    cfg = {"bids_dir": str(arc_tree), "out_dir": str(tmp_path / "o"), "subjects": ["sub-M2105"]}
    setup = prepare(cfg, config_dir=CONFIG_DIR)
    assert [s for s in setup.shards] == ["sub-M2105_ses-964"]
    assert '"wab_type"' in setup.participant_row("sub-M2105_ses-964")
    assert setup.label_pattern() == "M2105"
    with pytest.raises(ConfigError, match="sub-M0000 not found"):
        prepare({**cfg, "subjects": ["M0000"]}, config_dir=CONFIG_DIR)


def test_target_paths_follow_the_stage_layouts(arc_tree: Path, tmp_path: Path) -> None:
    from bids2hub.segment.run import mask_relpath
    from bids2hub.validate.report import session_result, shard_result

    cfg = {"bids_dir": str(arc_tree), "out_dir": str(tmp_path / "out"), "dataset": "ds004884"}
    setup = prepare(cfg, config_dir=CONFIG_DIR)
    out = setup.out_dir
    for shard, (sub, ses) in setup.shards.items():
        assert setup.check_path(shard) == str(session_result(out, sub, ses))
        assert setup.round_trip_path(shard) == str(shard_result(out, sub, ses))
        assert setup.shard_path(shard) == str(
            out / "hub" / "data" / f"sub-{sub}" / f"{shard}.parquet"
        )
        files = setup.manifest.files_for(sub, ses)
        assert set(setup.session_inputs(shard)) <= {str(arc_tree.resolve() / r.path) for r in files}
    for sub, target in setup.segmentation["targets"].items():
        assert setup.mask_path(sub) == str(
            setup.derivatives_dir / mask_relpath(sub, target["session"])
        )


def test_segmentation_plan_reused_until_an_input_changes(
    arc_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bids2hub.segment import plan as dwi

    cfg = {"bids_dir": str(arc_tree), "out_dir": str(tmp_path / "out"), "dataset": "ds004884"}
    first = prepare(cfg, config_dir=CONFIG_DIR)
    assert first.segmentation["targets"]
    calls = []
    real = dwi.plan_segmentation
    monkeypatch.setattr(
        dwi, "plan_segmentation", lambda *a, **k: calls.append(a[2]) or real(*a, **k)
    )
    # Same files, subjects and session choice: the plan on disk is reused.
    again = prepare(cfg, config_dir=CONFIG_DIR)
    assert calls == [] and again.segmentation == first.segmentation
    # Another session choice, or a changed file, plans again.
    prepare({**cfg, "segment": {"session": "latest"}}, config_dir=CONFIG_DIR)
    assert calls == ["latest"]
    sub, target = next(iter(first.segmentation["targets"].items()))
    bval = arc_tree / target["bval"]
    bval.write_text(bval.read_text() + "\n")
    prepare(cfg, config_dir=CONFIG_DIR)
    assert len(calls) == 2
    # A job reads the plan as it is.
    job = prepare(cfg, config_dir=CONFIG_DIR, refresh_index=False)
    assert len(calls) == 2 and job.segmentation["targets"][sub]


def test_dwi_input_size_from_the_index(arc_tree: Path, tmp_path: Path) -> None:
    cfg = {"bids_dir": str(arc_tree), "out_dir": str(tmp_path / "out"), "dataset": "ds004884"}
    setup = prepare(cfg, config_dir=CONFIG_DIR, refresh_index=False)
    for sub in setup.segmentation["targets"]:
        size = sum(Path(p).stat().st_size for p in setup.dwi_inputs(sub).values())
        assert setup.dwi_input_mb(sub) == size / 1024 / 1024

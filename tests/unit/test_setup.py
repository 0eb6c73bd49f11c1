from pathlib import Path

import pytest
from bids2hub.errors import ConfigError
from bids2hub.setup import prepare

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

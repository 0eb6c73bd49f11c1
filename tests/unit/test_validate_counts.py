"""Expected counts: dataset maps, found counts from the index, comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
from bids2hub.errors import ConfigError
from bids2hub.index.manifest import load_index
from bids2hub.shards.colmap import load_map
from bids2hub.validate.counts import check_expected, compare_counts, count_names, found_counts

from tests.conftest import REPO
from tests.synthetic import arc_expected_counts, write_arc_like_tree

MAPS = REPO / "config" / "datasets"
NAMES = count_names([])


def test_full_arc_shaped_tree_matches_ds004884_expectations(tmp_path: Path) -> None:
    """230 subjects, 902 sessions (tiny NIfTIs): every expected count matches, tolerance 0."""
    root = write_arc_like_tree(tmp_path / "arc", None)
    manifest, _ = load_index(root, tmp_path / "manifest.parquet")
    expected = check_expected(load_map(MAPS / "ds004884.yaml").expected, "ds004884")
    found = found_counts(manifest, manifest.shard_keys())
    lines = compare_counts(found, expected)
    assert [c["name"] for c in lines] == NAMES
    assert {c["status"] for c in lines} == {"ok"}, [c for c in lines if c["status"] != "ok"]
    assert found["n_subjects"] == 230 and found["n_sessions"] == 902
    assert found["n_lesion_masks"] == 228 and found["n_runs_dwi"] == 2089
    reference = arc_expected_counts(None)
    assert {k: reference[k] for k in NAMES} == expected


def test_subset_counts_match_the_synthetic_generator(
    arc_tree_ro: Path, arc_subjects: list[str], tmp_path: Path
) -> None:
    manifest, _ = load_index(arc_tree_ro, tmp_path / "manifest.parquet")
    found = found_counts(manifest, manifest.shard_keys())
    reference = arc_expected_counts(arc_subjects)
    assert found == {k: reference[k] for k in NAMES}


def test_comparison_statuses() -> None:
    found = {"n_subjects": 4, "n_sessions": 7}
    off = compare_counts(found, {"n_subjects": 4, "n_sessions": 8})
    assert [c["status"] for c in off] == ["ok", "mismatch"]
    assert off[1] == {"name": "n_sessions", "expected": 8, "found": 7, "status": "mismatch"}
    assert compare_counts(found, {"n_sessions": 8}, tolerance=1)[1]["status"] == "ok"
    assert [c["status"] for c in compare_counts(found, {"n_sessions": 8}, subset=True)] == [
        "found-only",
        "n/a",
    ]
    extra = compare_counts(found, {"n_runs_bold_foo": 2})
    assert extra[-1] == {"name": "n_runs_bold_foo", "expected": 2, "found": 0, "status": "mismatch"}


def test_other_bold_tasks_are_counted_after_rest() -> None:
    names = count_names(["bold_motor", "t1w"])
    assert names.index("n_sessions_bold_motor") == names.index("n_runs_bold_rest") + 1


@pytest.mark.parametrize(
    ("expected", "match"),
    [
        ([1, 2], "must map count names"),
        ({"subjects": 3}, "must be named n_"),
        ({"n_subjects": -1}, "non-negative integer"),
        ({"n_subjects": "230"}, "non-negative integer"),
        ({"n_subjects": True}, "non-negative integer"),
    ],
)
def test_bad_expected_blocks_are_config_errors(expected: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_expected(expected, "dataset map 'x'")


@pytest.mark.parametrize("name", ["ds004884", "demo", "ds004889"])
def test_shipped_maps_have_valid_expected_counts(name: str) -> None:
    expected = check_expected(load_map(MAPS / f"{name}.yaml").expected, name)
    assert set(expected) == set(NAMES)


def test_demo_map_overrides_arc_counts() -> None:
    demo = load_map(MAPS / "demo.yaml").expected
    assert demo["n_subjects"] == 4 and demo != load_map(MAPS / "ds004884.yaml").expected

"""Paper artifacts' package logic: Table 1 statistics against an independent computation,
provenance pieces, runtimes aggregation, deterministic figure bytes."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from bids2hub.errors import BidsError
from bids2hub.index.manifest import build_manifest
from bids2hub.paper import PHENOTYPE_DEFAULTS
from bids2hub.paper.cohort import (
    VOLUME_COLUMNS,
    Volume,
    cohort_markdown,
    cohort_rows,
    cohort_tsv,
    numeric_summary,
    parse_number,
    read_volumes,
    write_tsv,
)
from bids2hub.paper.provenance import git_commit, hash_outputs, listing_hash, scrub
from bids2hub.paper.runtimes import collect

LISTING = [
    ("participants.tsv", 10, 1),
    ("sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz", 100, 1),
    ("sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.nii.gz", 100, 1),
    ("sub-01/ses-2/dwi/sub-01_ses-2_dwi.nii.gz", 100, 1),
    ("sub-02/ses-1/anat/sub-02_ses-1_FLAIR.nii.gz", 100, 1),
    ("sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.nii.gz", 100, 1),
    ("sub-03/ses-1/anat/sub-03_ses-1_T1w.nii.gz", 100, 1),
    (
        "derivatives/lesion_masks/sub-01/ses-1/anat/sub-01_ses-1_T2w_desc-lesion_mask.nii.gz",
        50,
        1,
    ),
]
PEOPLE = {
    "01": {"age_at_stroke": "50", "sex": "F", "race": "w", "wab_aq": "70.5", "wab_days": "100"},
    "02": {"age_at_stroke": "89+", "sex": "M", "race": "n/a", "wab_aq": "n/a", "wab_days": "30"},
    "03": {"age_at_stroke": "61", "sex": "M", "race": "b", "wab_aq": "42", "wab_days": "2000"},
    "99": {"age_at_stroke": "20", "sex": "F", "race": "w", "wab_aq": "1", "wab_days": "1"},
}


def _table(people=PEOPLE, volumes=()):
    manifest = build_manifest(Path("/data"), LISTING)
    keys = manifest.shard_keys()
    rows = cohort_rows(manifest, keys, people, dict(PHENOTYPE_DEFAULTS), list(volumes))
    return {(r.variable, r.level, r.statistic): r for r in rows}, rows


def test_parse_number_handles_capped_and_missing_values() -> None:
    assert parse_number("89+", "x") == (89.0, True)
    assert parse_number(" 61 ", "x") == (61.0, False)
    assert parse_number("n/a", "x") == (None, False) and parse_number("", "x") == (None, False)
    with pytest.raises(BidsError, match=r"participants\.tsv: column 'age': value 'old'"):
        parse_number("old", "participants.tsv: column 'age'")


def test_numeric_summary_matches_numpy_and_statistics() -> None:
    vals = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    got = numeric_summary(vals)
    assert got["mean"] == pytest.approx(np.mean(vals))
    assert got["sd"] == pytest.approx(np.std(vals, ddof=1))
    assert got["median"] == pytest.approx(np.median(vals))
    assert got["q1"] == pytest.approx(np.percentile(vals, 25))
    assert got["q3"] == pytest.approx(np.percentile(vals, 75))
    one = numeric_summary([5.0])
    assert one["sd"] is None and one["q1"] == one["q3"] == 5.0
    assert numeric_summary([])["mean"] is None


def test_cohort_rows_against_an_independent_computation() -> None:
    vols = [
        Volume("01", "1", "expert", 10.0, None, "a"),
        Volume("01", "1", "predicted", 12.0, 0.8, "b"),
        Volume("03", "1", "predicted", 4.0, None, "c"),
    ]
    table, rows = _table(volumes=vols)
    # Counts: 3 subjects, 4 sessions (sub-99 has no imaging and is not counted anywhere).
    assert table[("n_subjects", "", "count")].value == 3
    assert table[("n_sessions", "", "count")].value == 4
    assert table[("n_sessions_t1w", "", "count")].value == 2
    assert table[("n_runs_t1w", "", "count")].value == 3
    assert table[("n_sessions_bold_rest", "", "count")].value == 1
    assert table[("n_lesion_masks", "", "count")].value == 1
    ages = [50.0, 89.0, 61.0]  # "89+" counts as 89
    assert table[("age_at_stroke", "", "mean")].value == pytest.approx(statistics.mean(ages))
    assert table[("age_at_stroke", "", "sd")].value == pytest.approx(statistics.stdev(ages))
    assert table[("age_at_stroke", "", "capped")].value == 1
    aq = [70.5, 42.0]  # one n/a
    assert table[("wab_aq", "", "median")].value == pytest.approx(np.median(aq))
    assert table[("wab_aq", "", "missing")].value == 1
    assert table[("wab_aq", "", "median")].n == 2
    assert table[("wab_days", "", "q3")].value == pytest.approx(np.percentile([100, 30, 2000], 75))
    assert table[("sex", "M", "count")].value == 2
    assert table[("sex", "M", "percent")].value == pytest.approx(200 / 3)
    assert table[("race", "n/a", "count")].value == 1
    assert table[("lesion_volume_predicted_ml", "", "median")].value == pytest.approx(8.0)
    assert table[("dice", "", "median")].value == pytest.approx(0.8)
    text = cohort_tsv(rows)
    assert text.splitlines()[0] == "variable\tlevel\tstatistic\tvalue\tn"
    assert "age_at_stroke\t\tmean\t66.6667\t3" in text
    md = cohort_markdown(rows, dict(PHENOTYPE_DEFAULTS), "T")
    assert "| Subjects | 3 |" in md and "1 capped" in md and "| Race: n/a | 1 (33.3 %) |" in md


def test_table_1_names_the_expert_mask_the_dice_is_against(tmp_path: Path) -> None:
    """SOOP compares with desc-lesionAcute: Table 1 and lesion_volumes.tsv say so."""
    vols = [
        Volume("01", "1", "expert", 10.0, None, "a", "lesionAcute"),
        Volume("01", "1", "predicted", 12.0, 0.8, "b", "lesionAcute"),
        Volume("02", "1", "predicted", 0.0, 0.0, "c", "lesionAcute"),
        Volume("03", "1", "predicted", 4.0, None, "d"),
    ]
    table, rows = _table(volumes=vols)
    assert table[("dice_expert_desc", "lesionAcute", "count")].value == 2
    assert table[("predicted_masks_empty", "", "count")].value == 1
    md = cohort_markdown(rows, dict(PHENOTYPE_DEFAULTS), "T")
    assert "| Dice, predicted vs expert (desc-lesionAcute): median [IQR] |" in md
    tsv = tmp_path / "lesion_volumes.tsv"
    write_tsv(tsv, VOLUME_COLUMNS, [v.cells() for v in vols])
    assert read_volumes(tsv) == vols
    _plain, plain_rows = _table(volumes=[Volume("01", "1", "predicted", 1.0, 0.5, "b")])
    assert "| Dice, predicted vs expert: median" in cohort_markdown(
        plain_rows, dict(PHENOTYPE_DEFAULTS), "T"
    )


def test_missing_phenotype_columns_give_na_rows_not_a_crash() -> None:
    people = {k: {"sex": v["sex"]} for k, v in PEOPLE.items()}
    table, rows = _table(people=people)
    assert table[("age_at_stroke", "", "missing_column")].value is None
    assert "age_at_stroke\t\tmissing_column\tn/a\t0" in cohort_tsv(rows)
    md = cohort_markdown(rows, dict(PHENOTYPE_DEFAULTS), "T")
    assert "| wab_aq | n/a (no such column in participants.tsv) |" in md
    assert "| Lesion volume, expert (mL): median [IQR] | n/a; n=0 |" in md


def test_provenance_pieces(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None  # not a checkout: no crash
    assert git_commit(Path(__file__).parent) is None or len(git_commit(Path(__file__).parent)) == 40
    cfg = {"hub": {"repo_id": "a/b", "token": "hf_x", "HF_TOKEN": "y"}, "api_secret": 1}
    assert scrub(cfg) == {"hub": {"repo_id": "a/b"}}
    f = tmp_path / "out" / "x.bin"
    f.parent.mkdir()
    f.write_bytes(b"abc")
    cache = tmp_path / "cache.json"
    first = hash_outputs(tmp_path / "out", [f], cache)
    assert first == {
        "x.bin": {
            "size": 3,
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        }
    }
    assert json.loads(cache.read_text())["x.bin"]["sha256"] == first["x.bin"]["sha256"]
    with pytest.raises(BidsError, match="output missing"):
        hash_outputs(tmp_path / "out", [tmp_path / "out" / "nope"])
    a = build_manifest(Path("/a"), [("x.tsv", 1, 5)])
    b = build_manifest(Path("/b"), [("x.tsv", 1, 9)])
    assert listing_hash(a) == listing_hash(b) and a.signature != b.signature


def test_runtimes_aggregate_per_rule(tmp_path: Path) -> None:
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, s in (("write_shard/sub-1/a.tsv", 1.0), ("write_shard/sub-2/b.tsv", 3.0),
                   ("segment_lesion/sub-1.tsv", 2.5)):  # fmt: skip
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(head + f"{s}\t0:00:0{int(s)}\t10.0\t1\t1\t1\t0\t0\t0\t0.5\n")
    rows = {r.rule: r for r in collect(tmp_path)}
    assert rows["write_shard"].jobs == 2 and rows["write_shard"].total_s == 4.0
    assert rows["write_shard"].median_s == 2.0 and rows["segment_lesion"].max_s == 2.5
    assert rows["write_shard"].cpu_s == 1.0 and rows["write_shard"].max_rss_mb == 10.0


def test_figures_have_the_same_bytes_twice(tmp_path: Path) -> None:
    from bids2hub.paper.figures import plot_lesion_volumes

    vols = [Volume(str(i), "1", "expert", float(i), None, "x") for i in range(1, 8)]
    one = plot_lesion_volumes(vols, tmp_path / "a" / "v")
    two = plot_lesion_volumes(vols, tmp_path / "b" / "v")
    assert [p.name for p in one] == ["v.png", "v.svg"]
    for p, q in zip(one, two, strict=True):
        assert p.read_bytes() == q.read_bytes()
    svg = one[1].read_text()
    assert "<dc:date>" not in svg
    assert b"Software" not in one[0].read_bytes()

import pytest
from bids2hub.index.bidsname import (
    _ENTITY,
    _entity,
    is_valid_label,
    natural_key,
    parse_name,
    split_extension,
)


def test_natural_key_orders_runs_numerically() -> None:
    names = ["x_run-10_T1w", "x_run-2_T1w", "x_run-1_T1w"]
    assert sorted(names, key=natural_key) == ["x_run-1_T1w", "x_run-2_T1w", "x_run-10_T1w"]


def test_split_extension_keeps_nii_gz_whole() -> None:
    assert split_extension("a_T1w.nii.gz") == ("a_T1w", ".nii.gz")
    assert split_extension("a_dwi.bval") == ("a_dwi", ".bval")
    assert split_extension("README") == ("README", "")


def test_parse_arc_lesion_mask_name() -> None:
    parsed = parse_name("sub-M2001_ses-1253_acq-spc3_run-3_T2w_desc-lesion_mask.nii.gz")
    assert parsed is not None
    assert parsed.suffix == "mask"
    assert parsed.extension == ".nii.gz"
    assert dict(parsed.entities) == {
        "sub": "M2001", "ses": "1253", "acq": "spc3", "run": "3", "desc": "lesion",
    }  # fmt: skip


def test_parse_rejects_non_bids_names() -> None:
    assert parse_name("participants.tsv") is None
    assert parse_name("task-rest_bold.json") is None


def test_labels() -> None:
    assert is_valid_label("M2001")
    assert not is_valid_label("M_2001")
    assert not is_valid_label("")


@pytest.mark.parametrize(
    "token",
    ["sub-01", "acq-spc3p2", "run-10", "desc-lesion", "x-a+b", "x-+", "T1w", "mask", "a-", "-b",
     "a-b-c", "a1-b", "é-1", "acq-é", "ac q-1", "a-b c", "", "-", "dir-AP", "A-B"],
)  # fmt: skip
def test_entity_token_is_the_regular_expression(token: str) -> None:
    match = _ENTITY.fullmatch(token)
    assert _entity(token) == (match.groups() if match else None)


def test_entities_json_is_json_dumps() -> None:
    import json

    from bids2hub.index.manifest import _entities_json

    for ents in [(), (("sub", "01"),), (("sub", "1"), ("ses", "2"), ("acq", "a+b")),
                 (("sub", "1"), ("run", "1"), ("run", "2"))]:  # fmt: skip
        assert _entities_json(ents) == json.dumps(dict(ents), separators=(",", ":"))

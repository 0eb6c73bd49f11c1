import pytest
from bids2hub.config import validate_config
from bids2hub.errors import ConfigError


def test_defaults_filled_in() -> None:
    cfg = validate_config({"bids_dir": "x"})
    assert cfg["out_dir"] == "results"
    assert cfg["dataset"] is None
    assert cfg["segment"]["backend"] == "threshold"
    assert cfg["segment"]["deepisles"] == {
        "uri": "docker://isleschallenge/deepisles@sha256:52f7ec71c60d50b94710f04b5e4558966060a68068fed463f665880664a783a8",
        "image": None,
        "cache_dir": None,
        "min_image_bytes": 1 << 30,
        "fast": False,
        "skull_strip": False,
        "brain_extract": False,
    }
    assert cfg["segment"]["session"] == "earliest"
    assert cfg["segment"]["allow_any_shell"] is False
    assert cfg["hub"]["push"] is False and cfg["hub"]["repo_id"] is None
    assert cfg["hub"]["private"] is True and cfg["hub"]["revision"] == "main"
    assert cfg["hub"]["retry"]["max_attempts"] == 5 and cfg["hub"]["delete_remote"] is False
    assert cfg["shards"] == {"content_defined_chunking": False}


def test_subjects_accept_prefixed_labels() -> None:
    assert validate_config({"bids_dir": "x", "subjects": ["sub-01", "02"]})["subjects"] == [
        "01",
        "02",
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bids_dir": "x", "segmnt": {}}, "unknown config key 'segmnt' (did you mean 'segment'?)"),
        ({"bids_dir": "x", "hub": {"pussh": True}}, "unknown config key 'hub.pussh' (did you mean 'hub.push'?)"),
        ({}, "config key 'bids_dir' is required"),
        ({"bids_dir": "x", "hub": {"push": "yes"}}, "config key 'hub.push' must be boolean, got 'yes'"),
        ({"bids_dir": "x", "segment": {"backend": "gpu"}}, "config key 'segment.backend' must be one of"),
        ({"bids_dir": "x", "subjects": ["a_b"]}, "config key 'subjects.0'"),
    ],
)  # fmt: skip
def test_errors_are_one_clear_line(config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    text = str(info.value)
    assert message in text
    assert "\n" not in text

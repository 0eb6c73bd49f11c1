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


# ------------------------------------------------------------ one source of defaults


def _schema_defaults(node: dict, path: tuple[str, ...] = ()):
    """(key path, default) of every property of the schema that has a default."""
    for key, sub in node.get("properties", {}).items():
        if "default" in sub:
            yield (*path, key), sub["default"]
        yield from _schema_defaults(sub, (*path, key))


def test_every_schema_default_is_filled_by_validation() -> None:
    from bids2hub.config import load_schema, schema_defaults

    defaults = list(_schema_defaults(load_schema()))
    assert len(defaults) > 30
    cfg = validate_config({"bids_dir": "x"})
    for path, default in defaults:
        node = cfg
        for key in path:
            assert key in node, f"config key '{'.'.join(path)}' not filled"
            node = node[key]
        if not isinstance(default, dict):
            assert node == default, ".".join(path)
            assert schema_defaults(*path) == default


def test_no_config_default_is_spelled_in_the_code() -> None:
    """No ``section.get("key", <default>)`` for a key of the schema: the validated config
    has every default; a second copy of one could drift from the schema's."""
    import ast

    from bids2hub.config import load_schema

    from tests.conftest import REPO

    keys = {path[-1] for path, _ in _schema_defaults(load_schema())}
    found = []
    for path in sorted((REPO / "workflow" / "bids2hub").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in keys
            ):
                found.append(f"{rel}:{node.lineno}: .get({node.args[0].value!r}, ...)")
    assert not found, "\n".join(found)


def test_the_code_reads_its_defaults_from_the_schema() -> None:
    from bids2hub.config import schema_defaults
    from bids2hub.segment import deepisles, run
    from bids2hub.shards.writer import ShardOptions

    assert run.ADC_THRESHOLD == schema_defaults("segment", "adc_threshold") == 0.00062
    assert schema_defaults("segment", "min_lesion_ml") == run.MIN_LESION_ML
    assert schema_defaults("segment", "deepisles", "uri") == deepisles.DEFAULT_URI
    assert deepisles.DEFAULT_MIN_IMAGE_BYTES == 1 << 30
    assert ShardOptions() == ShardOptions(content_defined_chunking=False)
    assert deepisles.image_given({}) is False

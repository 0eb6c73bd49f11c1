from pathlib import Path

import pytest
from bids2hub.errors import ConfigError
from bids2hub.shards.colmap import ColumnMap, load_map, resolve_map_path

from tests.conftest import REPO

CONFIG = REPO / "config"


@pytest.mark.parametrize("value", [None, "", "null", "None", "generic"])
def test_generic_spellings(value: str | None) -> None:
    assert resolve_map_path(value, CONFIG) is None


def test_named_and_path_maps() -> None:
    assert resolve_map_path("ds004884", CONFIG) == (CONFIG / "datasets/ds004884.yaml").resolve()
    path = CONFIG / "datasets/demo.yaml"
    assert resolve_map_path(str(path), CONFIG) == path.resolve()
    with pytest.raises(ConfigError, match=r"dataset 'nope' has no map .*known: demo, ds004884"):
        resolve_map_path("nope", CONFIG)


def test_extends_inherits_columns_and_json_roundtrip() -> None:
    demo = load_map(CONFIG / "datasets/demo.yaml")
    arc = load_map(CONFIG / "datasets/ds004884.yaml")
    assert demo.name == "demo" and demo.columns == arc.columns
    assert ColumnMap.from_json(arc.to_json()) == arc
    assert arc.scopes() == {"raw", "derivatives/lesion_masks"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns: []\nsidecar: false\n", r"unknown key\(s\) \['sidecar'\]"),
        ("columns:\n  - {name: a, kind: imagez}\n", "column 'a' has unknown kind 'imagez'"),
        ("columns:\n  - {name: a, kind: companion, of: b, extension: .bval}\n", "unknown image column 'b'"),
        ("columns:\n  - {name: a, kind: subject}\n  - {name: a, kind: session}\n", "duplicate column names"),
        ("unmapped_images: maybe\ncolumns: []\n", "unmapped_images must be"),
        ("- 1\n", "must be a mapping"),
    ],
)  # fmt: skip
def test_bad_maps_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_map(path)
    assert str(path) in str(info.value)

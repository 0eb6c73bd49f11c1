"""Column maps: which BIDS files and phenotype fields become which shard column.

A dataset map lives in ``config/datasets/<name>.yaml`` (ARC's reproduces the
published ARC v2 schema). Without one, :func:`generic_map` derives a map from
the indexed data: one list column per datatype/suffix(/task).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids2hub.config import read_yaml_mapping
from bids2hub.errors import ConfigError
from bids2hub.index.bidsname import natural_key
from bids2hub.index.manifest import FileRecord, Manifest

IMAGE_KINDS = ("images", "image")
_KINDS = ("subject", "session", "images", "image", "companion", "entity", "phenotype")
_DTYPES = ("string", "float32", "float64", "int64")
_SELECT_FIXED = ("scope", "datatype", "suffix")
_MAP_KEYS = {
    "name",
    "pretty_name",
    "extends",
    "sidecars",
    "unmapped_images",
    "columns",
    "expected",
    "expert_masks",
}
#: Values of the ``dataset`` config key that mean "derive a generic map".
GENERIC = ("", "null", "none", "generic")


@dataclass(frozen=True)
class Column:
    """One shard column.

    Attributes
    ----------
    name
        Column name in the parquet file.
    kind
        ``subject``/``session`` (ids), ``images`` (list of Nifti), ``image``
        (one Nifti or null), ``companion`` (text of a file next to each image
        of column ``of``, e.g. ``.bval``), ``entity`` (an entity of the first
        image of ``of``, optionally mapped), ``phenotype`` (participants.tsv).
    select
        For image columns: ``scope`` (default ``raw``), ``datatype``, ``suffix``
        and any entity (``task: rest``) the file must match.
    """

    name: str
    kind: str
    select: dict[str, str] = field(default_factory=dict)
    of: str = ""
    extension: str = ""
    entity: str = ""
    mapping: dict[str, str] = field(default_factory=dict)
    source: str = ""
    dtype: str = "string"
    description: str = ""

    def matches(self, rec: FileRecord) -> bool:
        """True when ``rec`` is an image selected by this column."""
        if self.kind not in IMAGE_KINDS or not rec.is_image:
            return False
        sel = self.select
        if rec.scope != sel.get("scope", "raw"):
            return False
        if "datatype" in sel and rec.datatype != sel["datatype"]:
            return False
        if "suffix" in sel and rec.suffix != sel["suffix"]:
            return False
        extra = {k: v for k, v in sel.items() if k not in _SELECT_FIXED}
        if extra:
            ents = json.loads(rec.entities)
            return all(ents.get(k) == v for k, v in extra.items())
        return True


@dataclass(frozen=True)
class ColumnMap:
    """An ordered set of columns plus dataset-level options."""

    name: str
    columns: tuple[Column, ...]
    sidecars: bool = True
    unmapped_images: str = "error"  # error | warn | ignore
    pretty_name: str = ""
    expected: dict[str, Any] = field(default_factory=dict)
    #: ``desc`` labels of the dataset's expert lesion masks (``_desc-<label>_mask``) the
    #: QC compares predicted masks with; the first is the primary comparison.
    expert_masks: tuple[str, ...] = ("lesion",)

    def image_columns(self) -> list[Column]:
        """Columns holding Nifti cells, in order."""
        return [c for c in self.columns if c.kind in IMAGE_KINDS]

    def scopes(self) -> set[str]:
        """Scopes (``raw``, ``derivatives/<name>``) that the image columns read from."""
        return {c.select.get("scope", "raw") for c in self.image_columns()}

    def to_json(self) -> str:
        """Deterministic JSON of the resolved map (what every shard job reads)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ColumnMap:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        raw["columns"] = tuple(Column(**c) for c in raw["columns"])
        raw["expert_masks"] = tuple(raw.get("expert_masks") or ("lesion",))
        return cls(**raw)


def sidecar_name(col: Column) -> str:
    """Name of the JSON-sidecar column that accompanies image column ``col``."""
    return f"{col.name}_sidecar"


def _column_from_dict(raw: dict[str, Any], where: str) -> Column:
    if not isinstance(raw, dict) or "name" not in raw or "kind" not in raw:
        raise ConfigError(f"{where}: every column needs 'name' and 'kind'")
    kind = raw["kind"]
    if kind not in _KINDS:
        raise ConfigError(f"{where}: column '{raw['name']}' has unknown kind '{kind}'")
    dtype = raw.get("dtype", "string")
    if dtype not in _DTYPES:
        raise ConfigError(f"{where}: column '{raw['name']}' has unknown dtype '{dtype}'")
    known = {"name", "kind", "select", "of", "extension", "entity", "map", "source"}
    unknown = set(raw) - known - {"dtype", "description"}
    if unknown:
        raise ConfigError(f"{where}: column '{raw['name']}' has unknown keys {sorted(unknown)}")
    return Column(
        name=str(raw["name"]),
        kind=kind,
        select={str(k): str(v) for k, v in (raw.get("select") or {}).items()},
        of=str(raw.get("of", "")),
        extension=str(raw.get("extension", "")),
        entity=str(raw.get("entity", "")),
        mapping={str(k): str(v) for k, v in (raw.get("map") or {}).items()},
        source=str(raw.get("source", raw["name"])),
        dtype=dtype,
        description=str(raw.get("description", "")),
    )


def _check(cmap: ColumnMap, where: str) -> ColumnMap:
    names = [c.name for c in cmap.columns]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"{where}: duplicate column names {sorted(dupes)}")
    images = {c.name for c in cmap.image_columns()}
    for c in cmap.columns:
        if c.kind in ("companion", "entity") and c.of not in images:
            raise ConfigError(f"{where}: column '{c.name}' refers to unknown image column '{c.of}'")
        if c.kind == "companion" and not c.extension.startswith("."):
            raise ConfigError(f"{where}: column '{c.name}' needs an extension such as '.bval'")
    if cmap.unmapped_images not in ("error", "warn", "ignore"):
        raise ConfigError(f"{where}: unmapped_images must be error, warn or ignore")
    bad = [d for d in cmap.expert_masks if not (isinstance(d, str) and d.isalnum())]
    if not cmap.expert_masks or bad:
        raise ConfigError(
            f"{where}: expert_masks must be a non-empty list of desc labels "
            f"(letters and digits, e.g. [lesion]), got {list(cmap.expert_masks)}"
        )
    return cmap


def load_map(path: Path) -> ColumnMap:
    """Load a dataset map YAML (``extends: <other map>`` inherits from a sibling file).

    Raises
    ------
    ConfigError
        Naming the file and what is wrong.
    """
    raw = read_yaml_mapping(path, "dataset map")
    unknown = sorted(set(raw) - _MAP_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown}; known: {', '.join(sorted(_MAP_KEYS))}"
        )
    base: ColumnMap | None = None
    if raw.get("extends"):
        base = load_map(Path(path).with_name(f"{raw['extends']}.yaml"))
    cols_raw = raw.get("columns")
    if cols_raw is None and base is None:
        raise ConfigError(f"{path}: no 'columns' list")
    columns = (
        tuple(_column_from_dict(c, str(path)) for c in cols_raw)
        if cols_raw is not None
        else base.columns  # type: ignore[union-attr]
    )
    inherit = base or ColumnMap("", ())
    cmap = ColumnMap(
        name=str(raw.get("name", Path(path).stem)),
        columns=columns,
        sidecars=bool(raw.get("sidecars", inherit.sidecars)),
        unmapped_images=str(raw.get("unmapped_images", inherit.unmapped_images)),
        pretty_name=str(raw.get("pretty_name", inherit.pretty_name)),
        expected=dict(raw.get("expected", inherit.expected) or {}),
        expert_masks=_descs(raw.get("expert_masks", inherit.expert_masks), str(path)),
    )
    return _check(cmap, str(path))


def _descs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expert_masks must be a list of desc labels, got {value!r}")
    return tuple(str(v) for v in value)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")


def generic_map(manifest: Manifest, participants_fields: list[tuple[str, str]]) -> ColumnMap:
    """Derive a column map from the data itself.

    One ``images`` column per (scope, datatype, suffix, task) found among the
    NIfTI files, named ``<suffix>[_<task>]`` (prefixed with the datatype or
    derivative pipeline when that name would be ambiguous); ``.bval``/``.bvec``
    companions for DWI columns; one phenotype column per participants.tsv field.

    Parameters
    ----------
    manifest
        The whole dataset (not a subset), so every shard gets the same schema.
    participants_fields
        (name, dtype) of participants.tsv columns other than participant_id.
    """
    keys = sorted(
        {
            (r.scope, r.datatype, r.suffix, r.entity("task"))
            for r in manifest.records
            if r.sub and r.is_image
        },
        key=lambda k: (k[0] != "raw", *(natural_key(x) for x in k)),
    )
    base_names = [_slug("_".join(x for x in (k[2], k[3]) if x)) for k in keys]
    columns = [Column("subject_id", "subject"), Column("session_id", "session")]
    for (scope, datatype, suffix, task), base in zip(keys, base_names, strict=True):
        prefix = datatype if scope == "raw" else scope.split("/", 1)[1]
        name = base if base_names.count(base) == 1 and scope == "raw" else _slug(f"{prefix}_{base}")
        select = {"scope": scope, "datatype": datatype, "suffix": suffix}
        if task:
            select["task"] = task
        columns.append(Column(name, "images", select))
        if suffix == "dwi":
            columns.append(Column(f"{name}_bvals", "companion", of=name, extension=".bval"))
            columns.append(Column(f"{name}_bvecs", "companion", of=name, extension=".bvec"))
    used = {c.name for c in columns}
    for fname, dtype in participants_fields:
        cname = fname if fname not in used else f"participant_{fname}"
        columns.append(Column(cname, "phenotype", source=fname, dtype=dtype))
    return _check(ColumnMap("generic", tuple(columns), unmapped_images="ignore"), "generic map")


def resolve_map_path(dataset: str | None, config_dir: Path) -> Path | None:
    """Path of the dataset map named by the ``dataset`` config key, or None.

    ``dataset`` is either a name (``ds004884`` -> ``config/datasets/ds004884.yaml``)
    or a path to a YAML file.
    """
    if dataset is None or dataset.strip().lower() in GENERIC:
        return None
    candidate = Path(dataset)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"dataset map '{dataset}' does not exist")
        return candidate.resolve()
    path = config_dir / "datasets" / f"{dataset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir / "datasets").glob("*.yaml"))
        raise ConfigError(
            f"dataset '{dataset}' has no map {path} (known: {', '.join(known) or 'none'})"
        )
    return path.resolve()

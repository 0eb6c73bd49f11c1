"""Validation of the workflow configuration, with one-line messages.

Snakemake's own ``validate`` reports a schema error as a long dump; users
get instead one line that names the key, what is wrong and, for a typo,
the key they probably meant.
"""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import Any

import yaml

from bids2hub.errors import ConfigError

# workflow/schemas/config.schema.yaml (the catalog's place), reached through the package's
# data/ link so that a wheel, which carries only the package, has it too.
SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "config.schema.yaml"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Load the JSON schema (YAML) of the configuration."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key_path(parts: list[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _subschema(schema: dict[str, Any], parts: list[Any]) -> dict[str, Any]:
    node = schema
    for part in parts:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return node


def _message(error: Any, schema: dict[str, Any]) -> str:
    parts = list(error.absolute_path)
    where = _key_path(parts)
    if error.validator == "additionalProperties":
        known = sorted(_subschema(schema, parts).get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        key = extra[0] if extra else "?"
        full = _key_path([*parts, key])
        hint = difflib.get_close_matches(key, known, n=1)
        tip = f" (did you mean '{_key_path([*parts, hint[0]])}'?)" if hint else ""
        return f"unknown config key '{full}'{tip}; known keys here: {', '.join(known)}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        full = _key_path([*parts, missing])
        return f"config key '{full}' is required (set it in --configfile or --config {full}=...)"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"config key '{where}' must be {expected}, got {error.instance!r}"
    if error.validator == "enum":
        return (
            f"config key '{where}' must be one of {error.validator_value}, got {error.instance!r}"
        )
    return f"config key '{where}': {error.message}"


def _apply_defaults(config: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _apply_defaults(config[key], sub)


def validate_config(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``config`` and return a copy with defaults filled in.

    Raises
    ------
    ConfigError
        One line naming the first offending key.
    """
    import jsonschema

    schema = schema or _schema()
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_message(errors[0], schema))
    out = copy.deepcopy(config)
    _apply_defaults(out, schema)
    if out["subjects"]:
        out["subjects"] = [s.removeprefix("sub-") for s in out["subjects"]]
    return out


def schema_defaults(*keys: str) -> Any:
    """What the validated config holds at ``keys`` (e.g. ``"paper", "phenotype"``) when the
    user sets nothing there: the schema's defaults, the one source of them."""
    return with_defaults({}, *keys)


def with_defaults(config: dict[str, Any], *keys: str) -> Any:
    """``config[keys...]`` with the schema's defaults filled in where it sets nothing (a copy).

    For callers given a partial config (a library user, a test); the workflow's config
    is validated once with every default filled (:func:`validate_config`).
    """
    node: Any = copy.deepcopy(config)
    _apply_defaults(node, _schema())
    for key in keys:
        node = node[key]
    return node


@functools.cache
def _schema() -> dict[str, Any]:
    return load_schema()


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is an empty mapping).

    Raises
    ------
    ConfigError
        ``<path>: cannot read <what> (...)`` or ``<path>: <what> must be a mapping``.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} must be a mapping")
    return data

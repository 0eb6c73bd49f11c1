"""Counts of subjects, sessions and images: expected (dataset map) against found (index).

The names follow :func:`tests.synthetic.arc_expected_counts`: ``n_subjects``,
``n_sessions``, ``n_sessions_<kind>`` (sessions with at least one such image) and
``n_runs_<kind>`` (number of such images) for ``t1w``, ``t2w``, ``flair``,
``bold_<task>`` (``naming40`` and ``rest`` always, other tasks when found), ``dwi``
and ``sbref``, and ``n_lesion_masks`` (derivative images ``*_desc-lesion_mask``).
Kinds are told by suffix (raw files); a dataset without sessions counts one
session per subject.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bids2hub.errors import ConfigError
from bids2hub.index.manifest import FileRecord, Manifest
from bids2hub.validate.model import CountLine

_SUFFIX_KINDS = {"T1w": "t1w", "T2w": "t2w", "FLAIR": "flair", "dwi": "dwi", "sbref": "sbref"}
#: Kinds always reported, in report order (other bold tasks follow ``bold_rest``).
KINDS = ("t1w", "t2w", "flair", "bold_naming40", "bold_rest", "dwi", "sbref")


def count_kind(rec: FileRecord) -> str | None:
    """The kind a file counts as (``t1w``, ``bold_rest``, ``lesion_masks``...), or None."""
    if not rec.is_image:
        return None
    if rec.scope != "raw":
        return "lesion_masks" if rec.suffix == "mask" and rec.entity("desc") == "lesion" else None
    if rec.suffix == "bold":
        task = rec.entity("task")
        return f"bold_{task}" if task else "bold"
    return _SUFFIX_KINDS.get(rec.suffix)


def count_names(kinds: Iterable[str]) -> list[str]:
    """Names of the counts, in report order, for the kinds given."""
    extra = sorted(set(kinds) - set(KINDS) - {"lesion_masks"})
    ordered = [*KINDS[:5], *extra, *KINDS[5:]]
    names = ["n_subjects", "n_sessions"]
    for kind in ordered:
        names += [f"n_sessions_{kind}", f"n_runs_{kind}"]
    return [*names, "n_lesion_masks"]


def found_counts(manifest: Manifest, keys: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Count what the index holds for the given (subject, session) keys.

    Returns
    -------
    dict
        Every name of :func:`count_names`, in that order.
    """
    keys = list(keys)
    sessions: dict[str, set[tuple[str, str]]] = {}
    runs: dict[str, int] = {}
    for key in keys:
        for rec in manifest.files_for(*key):
            kind = count_kind(rec)
            if kind is None:
                continue
            sessions.setdefault(kind, set()).add(key)
            runs[kind] = runs.get(kind, 0) + 1
    out = {"n_subjects": len({sub for sub, _ in keys}), "n_sessions": len(keys)}
    for name in count_names(sessions)[2:-1]:
        kind = name.removeprefix("n_sessions_").removeprefix("n_runs_")
        out[name] = (
            len(sessions.get(kind, ())) if name.startswith("n_sessions_") else runs.get(kind, 0)
        )
    out["n_lesion_masks"] = runs.get("lesion_masks", 0)
    return out


def check_expected(expected: Any, where: str) -> dict[str, int]:
    """Validate the ``expected:`` block of a dataset map: names to non-negative integers.

    Raises
    ------
    ConfigError
        Naming the map and the offending entry.
    """
    if not expected:
        return {}
    if not isinstance(expected, dict):
        raise ConfigError(f"{where}: 'expected' must map count names to integers")
    out: dict[str, int] = {}
    for name, value in expected.items():
        if not str(name).startswith("n_"):
            raise ConfigError(f"{where}: expected count '{name}' must be named n_... (n_sessions)")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{where}: expected count '{name}' must be a non-negative integer, got {value!r}"
            )
        out[str(name)] = value
    return out


def compare_counts(
    found: dict[str, int],
    expected: dict[str, int],
    *,
    tolerance: int = 0,
    subset: bool = False,
) -> list[CountLine]:
    """One line per count: ``{name, expected, found, status}``.

    ``status`` is ``ok`` (within ``tolerance``), ``mismatch``, ``n/a`` (the run
    covers a subset of the subjects, so the dataset's numbers do not apply) or
    ``found-only`` (the dataset map expects nothing for it).
    """
    lines = []
    for name in [*found, *(n for n in expected if n not in found)]:
        got = found.get(name, 0)
        want = expected.get(name)
        if want is None:
            status = "found-only"
        elif subset:
            status = "n/a"
        else:
            status = "ok" if abs(got - want) <= tolerance else "mismatch"
        lines.append({"name": name, "expected": want, "found": got, "status": status})
    return lines

"""Table 1 of the dataset: counts, phenotype summaries and lesion volumes.

Counts are the validation report's (:func:`bids2hub.validate.counts.found_counts`,
same names). Phenotype values come from ``participants.tsv`` for the subjects of
the run (participants without imaging are not in the table); a value ``n/a`` or
empty is missing, a capped value such as ``89+`` counts as 89 and is reported in
a ``capped`` row. Lesion volumes come from ``paper/lesion_volumes.tsv``
(:func:`measure_volumes`): every expert mask of the run's sessions, measured on
its own grid, and the predicted masks' volumes and Dice from
``qc/segmentation.tsv``.

Statistics: mean and sample SD (``statistics.stdev``), median and quartiles by
linear interpolation between order statistics (``statistics.quantiles``,
``method="inclusive"``, equal to numpy's default percentile).
"""

from __future__ import annotations

import collections
import csv
import io
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids2hub.errors import BidsError
from bids2hub.fsutil import atomic_path
from bids2hub.index.bidsname import natural_key
from bids2hub.index.manifest import FileRecord, Manifest
from bids2hub.index.phenotype import NA_VALUES
from bids2hub.layout import RELATIVE
from bids2hub.validate.counts import KINDS, count_kind, count_names, found_counts

#: Columns of cohort.tsv (long format: one number per line).
TSV_COLUMNS = ("variable", "level", "statistic", "value", "n")
#: Columns of lesion_volumes.tsv.
VOLUME_COLUMNS = (
    "subject_id",
    "session_id",
    "source",
    "volume_ml",
    "dice",
    "path",
    "expert_desc",
)

_CAPPED = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*\+\s*$")


@dataclass(frozen=True)
class Row:
    """One line of cohort.tsv."""

    variable: str
    level: str
    statistic: str
    value: float | int | None
    n: int | None = None

    def cells(self) -> list[str]:
        n = "" if self.n is None else fmt(self.n)
        return [self.variable, self.level, self.statistic, fmt(self.value), n]


def fmt(value: float | int | None) -> str:
    """A number as written in the TSV: integers as such, floats with 4 decimals, ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def parse_number(raw: str | None, where: str) -> tuple[float | None, bool]:
    """A participants.tsv cell as a number: ``(value, capped)``.

    ``n/a`` and empty give ``(None, False)``; ``89+`` gives ``(89.0, True)``.

    Raises
    ------
    BidsError
        When the cell is neither a number, a capped number nor missing.
    """
    text = (raw or "").strip()
    if text in NA_VALUES:
        return None, False
    match = _CAPPED.match(text)
    if match:
        return float(match.group(1)), True
    try:
        return float(text), False
    except ValueError:
        raise BidsError(f"{where}: value '{text}' is not a number") from None


def numeric_summary(values: Sequence[float]) -> dict[str, float | None]:
    """n, mean, sd, min, max, median, q1, q3 of ``values`` (None where undefined)."""
    vals = [float(v) for v in values]
    out: dict[str, float | None] = dict.fromkeys(("mean", "sd", "min", "max", "median", "q1", "q3"))
    if not vals:
        return out
    out["mean"] = statistics.fmean(vals)
    out["sd"] = statistics.stdev(vals) if len(vals) > 1 else None
    out["min"], out["max"] = min(vals), max(vals)
    out["median"] = statistics.median(vals)
    if len(vals) > 1:
        q1, _q2, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    out["q1"], out["q3"] = q1, q3
    return out


# ------------------------------------------------------------------ volumes


@dataclass(frozen=True)
class Volume:
    """One lesion mask's volume (``source`` expert or predicted)."""

    subject: str
    session: str
    source: str
    volume_ml: float
    dice: float | None
    path: str
    #: The expert mask's ``desc`` (an expert row), or the one the Dice was computed
    #: against (a predicted row: SOOP's ``lesionAcute``, ARC's ``lesion``); empty without.
    expert_desc: str = ""

    def cells(self) -> list[str]:
        return [
            f"sub-{self.subject}",
            f"ses-{self.session}" if self.session else "",
            self.source,
            f"{self.volume_ml:.3f}",
            "" if self.dice is None else f"{self.dice:.4f}",
            self.path,
            self.expert_desc,
        ]


def expert_masks(manifest: Manifest, keys: Iterable[tuple[str, str]]) -> list[FileRecord]:
    """Expert lesion masks of the given sessions (what ``n_lesion_masks`` counts)."""
    return [
        rec for key in keys for rec in manifest.files_for(*key) if count_kind(rec) == "lesion_masks"
    ]


def measure_volumes(
    manifest: Manifest, keys: Iterable[tuple[str, str]], qc_tsv: Path | None
) -> list[Volume]:
    """Volumes of every expert mask (own grid) and every predicted mask (the QC table)."""
    from bids2hub.segment.prepare import read_image
    from bids2hub.segment.qc import voxel_ml

    rows = []
    for rec in expert_masks(manifest, keys):
        img, data = read_image(manifest.absolute(rec), rec.path)
        volume = float((data > 0).sum()) * voxel_ml(img)
        desc = rec.entity("desc")
        rows.append(Volume(rec.sub, rec.ses, "expert", volume, None, rec.path, desc))
    if qc_tsv is not None:
        for line in read_tsv(qc_tsv):
            sub = line["subject_id"].removeprefix("sub-")
            ses = line["session_id"].removeprefix("ses-")
            dice = float(line["dice"]) if line.get("dice") else None
            desc = (line.get("expert_desc") or "") if dice is not None else ""
            volume = float(line["volume_ml"])
            rows.append(Volume(sub, ses, "predicted", volume, dice, _mask_rel(sub, ses), desc))
    order = {"expert": 0, "predicted": 1}
    return sorted(rows, key=lambda r: (order[r.source], natural_key(r.subject), r.session))


def _mask_rel(sub: str, ses: str) -> str:
    from bids2hub.layout import out_mask_relpath

    return out_mask_relpath(sub, ses)


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a TSV with a header line."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, csv.Error) as exc:
        raise BidsError(f"{path}: cannot read table ({exc})") from None


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Write a TSV atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def read_volumes(path: Path) -> list[Volume]:
    """lesion_volumes.tsv back into :class:`Volume` rows."""
    return [
        Volume(
            line["subject_id"].removeprefix("sub-"),
            line["session_id"].removeprefix("ses-"),
            line["source"],
            float(line["volume_ml"]),
            float(line["dice"]) if line["dice"] else None,
            line["path"],
            line.get("expert_desc") or "",
        )
        for line in read_tsv(path)
    ]


# ------------------------------------------------------------------- table 1


def cohort_rows(
    manifest: Manifest,
    keys: Sequence[tuple[str, str]],
    participants: dict[str, dict[str, str]],
    phenotype: dict[str, str],
    volumes: Sequence[Volume],
    *,
    where: str = "participants.tsv",
) -> list[Row]:
    """Every line of cohort.tsv.

    Parameters
    ----------
    manifest, keys
        The index and the run's (subject, session) pairs.
    participants
        ``participants.tsv`` rows by subject label
        (:func:`bids2hub.index.phenotype.read_participants`).
    phenotype
        Role (``age``, ``sex``, ``race``, ``wab_aq``, ``days``) -> participants.tsv column.
    volumes
        Lesion volumes (:func:`measure_volumes`).
    """
    rows = [Row(name, "", "count", value) for name, value in found_counts(manifest, keys).items()]
    subjects = sorted({sub for sub, _ in keys}, key=natural_key)
    columns = {c for person in participants.values() for c in person}
    for role in ("age", "sex", "race", "wab_aq", "days"):
        column = phenotype.get(role, "")
        if not column or column not in columns:
            rows.append(Row(column or role, "", "missing_column", None, 0))
            continue
        cells = [participants.get(sub, {}).get(column) for sub in subjects]
        if role in ("sex", "race"):
            rows += _categorical(column, cells)
        else:
            stats = ("mean", "sd", "min", "max") if role == "age" else ("median", "q1", "q3")
            rows += _numeric(column, cells, stats, f"{where}: column '{column}'")
    for source in ("expert", "predicted"):
        vals = [v.volume_ml for v in volumes if v.source == source]
        rows += _stats(f"lesion_volume_{source}_ml", vals, ("median", "q1", "q3"))
    compared = [v for v in volumes if v.source == "predicted" and v.dice is not None]
    rows += _stats("dice", [v.dice for v in compared], ("median", "q1", "q3"))
    # Which expert mask the Dice is against (SOOP: desc-lesionAcute; ARC: desc-lesion).
    for desc, n in sorted(collections.Counter(v.expert_desc for v in compared).items()):
        rows.append(Row("dice_expert_desc", desc, "count", n))
    predicted = [v for v in volumes if v.source == "predicted"]
    if predicted:  # empty is a status, not always an error: say how many
        rows.append(Row("predicted_masks", "", "count", len(predicted)))
        rows.append(
            Row("predicted_masks_empty", "", "count", sum(v.volume_ml == 0 for v in predicted))
        )
    return rows


def _stats(variable: str, vals: Sequence[float], stats: Sequence[str]) -> list[Row]:
    summary = numeric_summary(vals)
    return [Row(variable, "", s, summary[s], len(vals)) for s in stats]


def _numeric(
    column: str, cells: Sequence[str | None], stats: Sequence[str], where: str
) -> list[Row]:
    vals, capped, missing = [], 0, 0
    for cell in cells:
        value, was_capped = parse_number(cell, where)
        if value is None:
            missing += 1
            continue
        vals.append(value)
        capped += was_capped
    rows = _stats(column, vals, stats)
    rows.append(Row(column, "", "missing", missing, len(cells)))
    if capped:
        rows.append(Row(column, "", "capped", capped, len(vals)))
    return rows


def _categorical(column: str, cells: Sequence[str | None]) -> list[Row]:
    counts: dict[str, int] = {}
    for cell in cells:
        level = (cell or "").strip()
        level = "n/a" if level in NA_VALUES else level
        counts[level] = counts.get(level, 0) + 1
    total = len(cells)
    rows = []
    for level in sorted(counts, key=lambda lv: (lv == "n/a", natural_key(lv))):
        rows.append(Row(column, level, "count", counts[level], total))
        rows.append(Row(column, level, "percent", 100.0 * counts[level] / total, total))
    return rows


def cohort_tsv(rows: Iterable[Row]) -> str:
    """cohort.tsv text."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    writer.writerows(r.cells() for r in rows)
    return buf.getvalue()


# ------------------------------------------------------------------ markdown

_KIND_LABELS = {
    "t1w": "T1w",
    "t2w": "T2w",
    "flair": "FLAIR",
    "dwi": "DWI",
    "sbref": "SBRef",
}
_ROLE_LABELS = {
    "age": ("Age at stroke, years", 1),
    "wab_aq": ("WAB-AQ", 1),
    "days": ("Days after stroke (WAB)", 0),
}


def _kind_label(kind: str) -> str:
    if kind.startswith("bold_"):
        return f"BOLD {kind.removeprefix('bold_')}"
    return _KIND_LABELS.get(kind, kind)


def _f(value: float | int | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _against(rows: Sequence[Row]) -> str:
    """`` (desc-lesionAcute)``: the expert masks the Dice row compares with, if known."""
    descs = [f"desc-{r.level}" for r in rows if r.variable == "dice_expert_desc" and r.level]
    return f" ({', '.join(descs)})" if descs else ""


def cohort_markdown(rows: Sequence[Row], phenotype: dict[str, str], title: str) -> str:
    """cohort.md: the human-readable Table 1 (from the same rows as cohort.tsv)."""
    by: dict[tuple[str, str, str], Row] = {(r.variable, r.level, r.statistic): r for r in rows}

    def get(variable: str, statistic: str, level: str = "") -> Row | None:
        return by.get((variable, level, statistic))

    def val(variable: str, statistic: str, level: str = "") -> float | int | None:
        row = get(variable, statistic, level)
        return None if row is None else row.value

    lines = [f"# Table 1. {title}", "", "| Characteristic | Value |", "|---|---|"]
    lines.append(f"| Subjects | {val('n_subjects', 'count')} |")
    lines.append(f"| Sessions | {val('n_sessions', 'count')} |")
    kinds = [
        n.removeprefix("n_sessions_")
        for n in count_names([r.variable.removeprefix("n_sessions_") for r in rows])
        if n.startswith("n_sessions_")
    ]
    for kind in kinds:
        s, r = val(f"n_sessions_{kind}", "count"), val(f"n_runs_{kind}", "count")
        if kind in KINDS or s:
            lines.append(f"| Sessions with {_kind_label(kind)} (images) | {s} ({r}) |")
    lines.append(f"| Expert lesion masks | {val('n_lesion_masks', 'count')} |")
    for role in ("age", "sex", "race", "wab_aq", "days"):
        column = phenotype.get(role, "") or role
        if get(column, "missing_column") is not None:
            lines.append(f"| {column} | n/a (no such column in participants.tsv) |")
            continue
        if role in ("sex", "race"):
            levels = [r for r in rows if r.variable == column and r.statistic == "count"]
            for r in levels:
                pct = val(column, "percent", r.level)
                lines.append(f"| {column.capitalize()}: {r.level} | {r.value} ({_f(pct, 1)} %) |")
            continue
        label, digits = _ROLE_LABELS[role]
        n = get(column, "missing")
        n_valid = (n.n or 0) - int(n.value or 0) if n else 0
        capped = get(column, "capped")
        note = f"; {capped.value} capped (e.g. 89+)" if capped else ""
        if role == "age":
            text = (
                f"{_f(val(column, 'mean'), digits)} ({_f(val(column, 'sd'), digits)}), "
                f"range {_f(val(column, 'min'), digits)}-{_f(val(column, 'max'), digits)}"
            )
            lines.append(f"| {label} ({column}): mean (SD), range | {text}; n={n_valid}{note} |")
        else:
            lines.append(f"| {label} ({column}): median [IQR] | {_iqr(by, column, digits)}; "
                         f"n={n_valid}{note} |")  # fmt: skip
    for variable, label, digits in (
        ("lesion_volume_expert_ml", "Lesion volume, expert (mL)", 1),
        ("lesion_volume_predicted_ml", "Lesion volume, predicted (mL)", 1),
        ("dice", "Dice, predicted vs expert" + _against(rows), 3),
    ):
        row = get(variable, "median")
        n = row.n if row else 0
        lines.append(f"| {label}: median [IQR] | {_iqr(by, variable, digits)}; n={n} |")
    if get("predicted_masks", "count"):
        lines.append(
            f"| Predicted masks (empty) | {val('predicted_masks', 'count')} "
            f"({val('predicted_masks_empty', 'count')}) |"
        )
    lines += [
        "",
        "Counts as in the validation report (sessions with at least one image of the kind, "
        "and the number of images). Phenotype of the subjects with imaging, from "
        "participants.tsv; SD is the sample SD, IQR the 25th-75th percentiles (linear "
        "interpolation). Expert volumes on each mask's own grid; predicted volumes and Dice "
        f"from {RELATIVE.qc_table}.",
        "",
    ]
    return "\n".join(lines)


def _iqr(by: dict[tuple[str, str, str], Row], variable: str, digits: int) -> str:
    med, q1, q3 = (by.get((variable, "", s)) for s in ("median", "q1", "q3"))
    if med is None or med.value is None:
        return "n/a"
    return (
        f"{_f(med.value, digits)} [{_f(q1.value if q1 else None, digits)}-"
        f"{_f(q3.value if q3 else None, digits)}]"
    )


def write_cohort(
    rows: Sequence[Row], phenotype: dict[str, str], title: str, tsv: Path, md: Path
) -> None:
    """Write cohort.tsv and cohort.md atomically."""
    with atomic_path(tsv) as tmp:
        tmp.write_text(cohort_tsv(rows), encoding="utf-8")
    with atomic_path(md) as tmp:
        tmp.write_text(cohort_markdown(rows, phenotype, title), encoding="utf-8")


def dataset_title(description: dict[str, Any] | None, n_subjects: int) -> str:
    """Table title: the dataset's Name and its subject count."""
    name = (description or {}).get("Name") or "BIDS dataset"
    return f"{name}: {n_subjects} subjects"

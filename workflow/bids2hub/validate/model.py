"""The one shape of ``validation/report.json``, shared by its writer and every reader.

:func:`bids2hub.validate.report.build_report` returns a :class:`Report`; the HTML page
(:mod:`bids2hub.validate.html`), the dataset card (:mod:`bids2hub.hub.card`) and the
workflow's gate (:func:`bids2hub.validate.report.check_report`) read one through
:func:`load_report`, which checks the file's version and shape against these types and
says in one line, naming the file, what does not fit. The types are ``TypedDict``: a
report is plain JSON data (its bytes are what ``config/README.md`` documents), and the
types say which keys it has and what they hold. Keys beyond these are allowed (a reader
ignores them).
"""

# No `from __future__ import annotations`: on Python 3.11 it hides NotRequired from
# TypedDict's __required_keys__, and the checks below read those.
import json
import types
from pathlib import Path
from typing import (
    Any,
    Literal,
    NotRequired,
    TypedDict,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from bids2hub.errors import ValidationError
from bids2hub.validate import RESULT_VERSION

ReportStatus = Literal["pass", "fail"]
CountStatus = Literal["ok", "mismatch", "n/a", "found-only"]
ValidatorStatus = Literal["ok", "errors", "errors-tolerated", "not-run"]


class Finding(TypedDict):
    """One entry of ``failures`` or ``warnings`` (also of the per-session results)."""

    check: str
    file: str
    message: str
    shard: NotRequired[str]  # the shard it belongs to
    keys: NotRequired[list[str]]  # check `identifying`: the identifying keys found
    reference: NotRequired[str]  # check `mask_grid`: the reference image


class CheckTally(TypedDict):
    """How many failures and warnings one check found."""

    failures: int
    warnings: int


class Summary(TypedDict):
    """``summary``: lengths of ``failures`` and ``warnings``, and per check."""

    hard_failures: int
    warnings: int
    by_check: dict[str, CheckTally]


class DatasetInfo(TypedDict):
    """``dataset``: what was checked."""

    name: str
    pretty_name: str | None
    bids_dir: str
    subjects: int
    sessions: int
    subset: bool


class ValidatorIssue(TypedDict):
    """One severity and code of the BIDS validator's issues."""

    severity: str
    code: str
    sub_code: str | None
    count: int
    message: str
    examples: list[str]


class ValidatorSummary(TypedDict):
    """``validator``: the BIDS validator's result, summarised by code."""

    tool: str
    version: str | None
    schema_version: NotRequired[str | None]
    exit_code: NotRequired[int | None]
    status: ValidatorStatus
    tolerated: NotRequired[bool]
    errors: int
    warnings: int
    issues: list[ValidatorIssue]
    detail: NotRequired[str]  # status not-run: the end of its error output


class CountLine(TypedDict):
    """One entry of ``counts``: an expected count against what the index holds."""

    name: str
    expected: int | None
    found: int
    status: CountStatus


class Integrity(TypedDict):
    """``integrity``: the source files' checks."""

    nifti_checked: int
    dwi_checked: int
    masks_checked: int
    failures: int


class RoundTrip(TypedDict):
    """``round_trip``: the shards read back."""

    shards_checked: int
    cells_checked: int
    columns_decoded: int
    null_cells: int
    not_checked: list[str]
    failures: int


class IdentifyingFile(TypedDict):
    """A file holding DICOM identifying keys (the keys, never their values)."""

    file: str
    keys: list[str]


class Identifying(TypedDict):
    """``identifying``: the scan of sidecars and TSV files for identifying keys."""

    files_scanned: int
    files_flagged: int
    findings: list[IdentifyingFile]


class Excluded(TypedDict):
    """A subject left out of segmentation, and why."""

    subject: str
    reason: str


class FlaggedMask(TypedDict):
    """A predicted mask whose QC ``flag`` says it needs a look (e.g. an empty DeepISLES mask)."""

    subject: str
    session: str
    flag: str


class Masks(TypedDict):
    """``segmentation.masks``: what ``qc/segmentation.tsv`` says of the predicted masks."""

    n: int
    empty: int
    flagged: list[FlaggedMask]


class Segmentation(TypedDict):
    """``segmentation``: the segmentation plan's exclusions (when there is a plan)."""

    available: bool
    targets: NotRequired[int]
    excluded: list[Excluded]
    masks: NotRequired[Masks | None]


class Report(TypedDict):
    """``validation/report.json`` (keys documented in ``config/README.md``)."""

    version: int
    status: ReportStatus
    summary: Summary
    dataset: DatasetInfo
    validator: ValidatorSummary
    count_tolerance: int
    counts: list[CountLine]
    integrity: Integrity
    round_trip: RoundTrip
    identifying: Identifying
    segmentation: Segmentation
    failures: list[Finding]
    warnings: list[Finding]


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if is_typeddict(tp) or get_origin(tp) is dict:
        return "an object"
    if get_origin(tp) is list:
        return "a list"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    return _NAMES.get(tp, str(tp))


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of the scalar type ``tp`` (a bool is no integer here)."""
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def shape_problem(value: Any, tp: Any, where: str) -> str | None:
    """The first place where ``value`` does not fit the type ``tp``, or None when it fits.

    Parameters
    ----------
    value
        Data read from JSON.
    tp
        One of this module's ``TypedDict`` classes, or a type built from them
        (``list[...]``, ``dict[str, ...]``, ``X | None``, ``Literal[...]``, scalars).
    where
        The key path of ``value``, for the message.

    Returns
    -------
    str or None
        ``"<where> must be <what>, got <value>"`` or ``"<where> is missing"``.
    """
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if any(shape_problem(value, alt, where) is None for alt in get_args(tp)):
            return None
    elif origin is Literal:
        if value in get_args(tp) and isinstance(value, str):
            return None
    elif is_typeddict(tp):
        if isinstance(value, dict):
            for key, sub in get_type_hints(tp).items():
                if key not in value:
                    if key in tp.__required_keys__:
                        return f"{where}.{key} is missing"
                    continue
                problem = shape_problem(value[key], sub, f"{where}.{key}")
                if problem:
                    return problem
            return None
    elif origin is list:
        if isinstance(value, list):
            (item,) = get_args(tp)
            for i, entry in enumerate(value):
                problem = shape_problem(entry, item, f"{where}[{i}]")
                if problem:
                    return problem
            return None
    elif origin is dict:
        if isinstance(value, dict):
            _key, item = get_args(tp)
            for key, entry in value.items():
                problem = shape_problem(entry, item, f"{where}.{key}")
                if problem:
                    return problem
            return None
    elif _fits(value, tp):
        return None
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{where} must be {_describe(tp)}, got {shown}"


def read_json(path: Path) -> Any:
    """The JSON data of ``path``.

    Raises
    ------
    ValidationError
        ``<path>: missing (run the validation rules first)`` or ``<path>: not valid JSON``.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"{path}: missing (run the validation rules first)") from None
    except ValueError as exc:
        raise ValidationError(f"{path}: not valid JSON ({exc})") from None


def load_report(path: Path, sections: tuple[str, ...] | None = None) -> Report:
    """Read ``report.json``, checked against :class:`Report`.

    Parameters
    ----------
    path
        The report.
    sections
        Only these top-level keys must be there and fit (a reader that needs only
        them, e.g. the card's ``status`` and ``counts``); default all of them. The
        version is always checked.

    Raises
    ------
    ValidationError
        One line naming the file: missing, not JSON, another version, or the first
        key that does not fit.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValidationError(f"{path}: not a validation report (a JSON object is expected)")
    version = data.get("version")
    if version != RESULT_VERSION or isinstance(version, bool):
        raise ValidationError(
            f"{path}: validation report version {json.dumps(version)}, this bids2hub reads "
            f"version {RESULT_VERSION} (rerun the validation rules to rebuild it)"
        )
    hints = get_type_hints(Report)
    for key in sections or tuple(hints):
        if key not in data:
            problem: str | None = f"{key} is missing"
        else:
            problem = shape_problem(data[key], hints[key], key)
        if problem:
            raise ValidationError(f"{path}: not a validation report of this layout ({problem})")
    return data  # type: ignore[return-value]

"""The segmentation plan: which DWI run of which session each subject is segmented from.

* The **segmentation plan** (:func:`plan_segmentation`), made at parse time in
  the main Snakemake process from the index and small reads (``.bval``/``.bvec``
  text, NIfTI headers), decides per subject which session and DWI run to
  segment, which b-shell to use and which FLAIR and expert mask go with it, or
  why the subject cannot be segmented. Per-file facts are cached keyed by
  (path, size, mtime) so that a warm parse reads no image.
* The job-time half, :func:`bids2hub.segment.prepare.prepare_dwi`, lives apart so
  that an edit to it does not discard the cached plan (the plan's key hashes this file).

Real b-values are untidy (ARC, OpenNeuro ds004884): b0 is often written as 5,
the 1000 shell as 990-1005, some runs are b0-only reverse-phase acquisitions,
some have only a 2000 or 5000 shell. Hence shells are clusters, not exact
values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids2hub.config import schema_defaults
from bids2hub.errors import BidsError, ConfigError, NiftiError
from bids2hub.fsutil import write_if_changed
from bids2hub.index.bidsname import natural_key
from bids2hub.index.companions import find_companion
from bids2hub.index.manifest import FileRecord, Manifest
from bids2hub.layout import DERIVATIVE

#: b-values at or below this are b0 (ARC writes b0 as 5).
B0_MAX = 50.0
#: The shell DeepISLES was trained on.
TARGET_B = 1000.0
#: A shell whose nominal b is within this of TARGET_B counts as "b~1000".
TARGET_TOLERANCE = 100.0
#: Consecutive sorted b-values further apart than this start a new shell.
_SHELL_GAP = 100.0
FACTS_VERSION = 2
PLAN_VERSION = 3

#: The ``segment`` section's defaults (the schema's).
_SEGMENT = schema_defaults("segment")


# ----------------------------------------------------------------- b-values


@dataclass(frozen=True)
class Shell:
    """A cluster of b-values: its nominal b and the volumes in it."""

    b: float
    volumes: tuple[int, ...]
    mean_b: float


def parse_bvals(text: str, name: str) -> list[float]:
    """b-values of a ``.bval`` file (whitespace separated, one or more lines).

    Raises
    ------
    BidsError
        A value is not a finite non-negative number (names the file).
    """
    values = []
    for token in text.split():
        try:
            value = float(token)
        except ValueError:
            raise BidsError(f"{name}: '{token}' is not a b-value") from None
        if not math.isfinite(value) or value < 0:
            raise BidsError(f"{name}: invalid b-value {token}")
        values.append(value)
    return values


def bvec_count(text: str, name: str) -> int:
    """Number of gradient directions in a ``.bvec`` file (3 rows; N x 3 accepted).

    NaN entries (some converters write them for b0 rows) are allowed.

    Raises
    ------
    BidsError
        The file does not have 3 rows of equal length nor N rows of 3.
    """
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    for row in rows:
        for token in row:
            try:
                float(token)
            except ValueError:
                raise BidsError(f"{name}: '{token}' is not a number") from None
    lengths = {len(r) for r in rows}
    if len(rows) == 3 and len(lengths) == 1:
        return len(rows[0])
    if rows and lengths == {3}:
        return len(rows)
    raise BidsError(
        f"{name}: expected 3 rows of gradient directions, found {len(rows)} rows "
        f"of lengths {sorted(lengths)}"
    )


def find_shells(bvals: Sequence[float]) -> tuple[tuple[int, ...], list[Shell]]:
    """Split volumes into b0 (b <= 50) and shells of b > 50.

    Sorted b-values closer than 100 s/mm^2 to their neighbour form one shell
    (990, 995, 1000, 1005 -> the 1000 shell). A shell's nominal b is the median
    of its volumes' b-values rounded to a multiple of 50.

    Returns
    -------
    (b0 volume indices, shells sorted by b)
    """
    import numpy as np  # here: every job's parse imports this module (check_skull_strip)

    b0 = tuple(i for i, b in enumerate(bvals) if b <= B0_MAX)
    weighted = sorted((b, i) for i, b in enumerate(bvals) if b > B0_MAX)
    groups: list[list[tuple[float, int]]] = []
    for b, i in weighted:
        if groups and b - groups[-1][-1][0] <= _SHELL_GAP:
            groups[-1].append((b, i))
        else:
            groups.append([(b, i)])
    shells = []
    for group in groups:
        values = [b for b, _ in group]
        nominal = round(float(np.median(values)) / 50.0) * 50.0
        shells.append(Shell(nominal, tuple(sorted(i for _, i in group)), float(np.mean(values))))
    return b0, shells


def choose_shell(shells: Sequence[Shell]) -> Shell | None:
    """The shell nearest b=1000 (ties: more volumes, then lower b); None without shells."""
    if not shells:
        return None
    return min(shells, key=lambda s: (abs(s.b - TARGET_B), -len(s.volumes), s.b))


# --------------------------------------------------------------- file facts


def _file_key(rec: FileRecord) -> str:
    return f"{rec.path}\0{rec.size}\0{rec.mtime_ns}"


class FactCache:
    """Per-file facts (image volumes, b-values, direction count) keyed by (path, size, mtime).

    Stored as JSON in ``index/dwi_facts.json``; a warm parse reads that file
    only. Unreadable files are cached with their error message.
    """

    def __init__(self, manifest: Manifest, path: Path | None) -> None:
        self.manifest = manifest
        self.path = path
        self._old: dict[str, Any] = {}
        self._used: dict[str, Any] = {}
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") == FACTS_VERSION:
                    self._old = data.get("facts", {})
            except (OSError, ValueError):
                pass
        self.reads = 0

    def _get(self, rec: FileRecord, compute: Callable[[Path], Any]) -> Any:
        key = _file_key(rec)
        if key in self._used:
            return self._used[key]
        if key in self._old:
            value = self._old[key]
        else:
            self.reads += 1
            try:
                value = compute(self.manifest.absolute(rec))
            except (BidsError, OSError) as exc:
                value = {"error": str(exc).replace(str(self.manifest.root) + "/", "")}
        self._used[key] = value
        return value

    def volumes(self, rec: FileRecord) -> dict[str, Any]:
        """``{"shape": [...]}`` from the header only, or ``{"error": ...}``."""
        return self._get(rec, lambda p: {"shape": list(_header_shape(p, rec.path))})

    def bvals(self, rec: FileRecord) -> dict[str, Any]:
        """``{"bvals": [...]}`` or ``{"error": ...}``."""
        return self._get(
            rec, lambda p: {"bvals": parse_bvals(p.read_text(encoding="utf-8"), rec.path)}
        )

    def bvecs(self, rec: FileRecord) -> dict[str, Any]:
        """``{"n": directions}`` or ``{"error": ...}``."""
        return self._get(rec, lambda p: {"n": bvec_count(p.read_text(encoding="utf-8"), rec.path)})

    def sidecar(self, rec: FileRecord) -> dict[str, Any]:
        """``{"image_type": [...]}`` of an image's JSON sidecar (by BIDS inheritance),
        ``{"error": ...}`` when it is not valid JSON, ``{}`` without one."""
        sidecar = find_companion(self.manifest, rec, ".json")
        if sidecar is None:
            return {}
        return self._get(sidecar, lambda p: {"image_type": _read_image_type(p, sidecar.path)})

    def image_type(self, rec: FileRecord) -> tuple[str, ...]:
        """The DICOM ``ImageType`` of an image's JSON sidecar (by BIDS inheritance), upper case;
        empty without a sidecar, the key, or when the sidecar is not JSON."""
        return tuple(self.sidecar(rec).get("image_type") or ())

    def sidecar_error(self, rec: FileRecord) -> str | None:
        """Why the image's JSON sidecar is unusable (not valid JSON), or None."""
        return self.sidecar(rec).get("error")

    def save(self) -> bool:
        """Write the facts used by this parse (drops stale entries); True when rewritten."""
        if self.path is None:
            return False
        text = json.dumps(
            {"version": FACTS_VERSION, "facts": dict(sorted(self._used.items()))},
            sort_keys=True,
            separators=(",", ":"),
        )
        return write_if_changed(self.path, text + "\n")


def _read_image_type(path: Path, name: str) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BidsError(f"its sidecar {name} is not valid JSON ({exc})") from None
    value = data.get("ImageType") if isinstance(data, dict) else None
    if isinstance(value, str):
        value = value.split("\\")
    return [str(v).upper() for v in value] if isinstance(value, list) else []


def _header_shape(path: Path, name: str) -> tuple[int, ...]:
    from bids2hub.nifti import parse_header

    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    try:
        return parse_header(head, name).shape
    except NiftiError as exc:
        raise BidsError(str(exc)) from None


# ------------------------------------------------------------------ the plan


def _run_label(rec: FileRecord) -> str:
    """Short name of a run in reasons: the file name without sub/ses and extension."""
    stem = rec.name.removesuffix(rec.extension)
    return re.sub(r"^sub-[^_]+_(ses-[^_]+_)?", "", stem)


def is_adc_image(rec: FileRecord, image_type: Sequence[str] = ()) -> bool:
    """An ADC map provided by the dataset.

    By name (``rec-ADC`` as in SOOP, ``_adc``, ``_ADC``, ``desc-ADC``, ``acq-ADC``)
    or by the sidecar's DICOM ``ImageType`` (``ADC``; 36 of SOOP's rec-ADC
    sidecars do not say it, hence the name counts too).
    """
    return rec.is_image and (
        rec.suffix.lower() == "adc"
        or rec.entity("rec").lower() == "adc"
        or rec.entity("desc").lower() == "adc"
        or rec.entity("acq").lower() == "adc"
        or "ADC" in image_type
    )


def is_trace_name(rec: FileRecord, image_type: Sequence[str] = ()) -> bool:
    """A trace-weighted DWI: ``rec-TRACE`` (SOOP), ``_trace``, ``_TRACEW``, ``acq-trace``,
    ``desc-trace``, or a sidecar ``ImageType`` with ``TRACEW`` (Siemens)."""
    return rec.is_image and (
        rec.suffix.lower() in ("trace", "tracew")
        or "trace" in rec.entity("rec").lower()
        or "trace" in rec.entity("acq").lower()
        or "trace" in rec.entity("desc").lower()
        or "TRACEW" in image_type
    )


def find_precomputed(
    records: Sequence[FileRecord],
    volumes: Callable[[FileRecord], int | None],
    image_type: Callable[[FileRecord], Sequence[str]] = lambda rec: (),
    has_bval: Callable[[FileRecord], bool] | None = None,
) -> tuple[FileRecord, FileRecord, dict[str, str]] | None:
    """Trace and ADC images that a session already has, and how each was recognised, or None.

    The one place that knows how datasets name them. ADC: :func:`is_adc_image`.
    Trace: :func:`is_trace_name`, or a 3D ``_dwi`` image without a ``.bval``
    (acute-stroke datasets such as ISLES'22 ship the scanner's trace as
    ``_dwi`` next to an ``_adc``). Both must be in the same scope (raw or one
    derivatives pipeline); raw wins. ``image_type`` gives a record's sidecar
    ``ImageType``; ``has_bval`` whether a ``.bval`` applies to it (default:
    one beside it).
    """
    names = {r.path for r in records}
    if has_bval is None:

        def has_bval(rec: FileRecord) -> bool:
            return _companion(rec, ".bval") in names

    for scope in sorted({r.scope for r in records}, key=lambda s: (s != "raw", s)):
        inscope = [r for r in records if r.scope == scope and r.is_image]
        adcs = sorted(
            (r for r in inscope if is_adc_image(r, image_type(r))),
            key=lambda r: natural_key(r.name),
        )
        if not adcs:
            continue
        traces: list[tuple[FileRecord, str]] = []
        for r in inscope:
            if is_adc_image(r, image_type(r)):
                continue
            if is_trace_name(r, image_type(r)):
                traces.append((r, _recognised(r, image_type(r), "trace")))
            elif r.suffix == "dwi" and volumes(r) == 1 and not has_bval(r):
                traces.append((r, "a 3D _dwi image without .bval"))
        if traces:
            trace, why = sorted(traces, key=lambda t: natural_key(t[0].name))[0]
            adc = adcs[0]
            return trace, adc, {"dwi": why, "adc": _recognised(adc, image_type(adc), "adc")}
    return None


def _recognised(rec: FileRecord, image_type: Sequence[str], kind: str) -> str:
    """How :func:`is_adc_image` / :func:`is_trace_name` recognised ``rec`` (for the plan)."""
    for key in ("rec", "acq", "desc"):
        value = rec.entity(key)
        if value and kind in value.lower():
            return f"{key}-{value}"
    if rec.suffix.lower() in (("adc",) if kind == "adc" else ("trace", "tracew")):
        return f"suffix _{rec.suffix}"
    return f"sidecar ImageType {'/'.join(image_type)}"


def _companion(rec: FileRecord, ext: str) -> str:
    return rec.path[: -len(rec.extension)] + ext


@dataclass
class RunVerdict:
    """Whether a DWI run can be used, and how."""

    rec: FileRecord
    reason: str | None = None  # why not
    shell: Shell | None = None
    n_b0: int = 0
    n_volumes: int = 0
    bval: str | None = None
    bvec: str | None = None

    def rank(self) -> tuple[object, ...]:
        assert self.shell is not None
        near = abs(self.shell.b - TARGET_B) <= TARGET_TOLERANCE
        distance = abs(self.shell.b - TARGET_B)
        return (not near, distance, -len(self.shell.volumes), natural_key(self.rec.name))


def judge_run(rec: FileRecord, facts: FactCache) -> RunVerdict:
    """Check one multi-volume DWI run: image volumes, bval/bvec (by BIDS inheritance),
    b0 and shells."""
    label = _run_label(rec)
    bval = find_companion(facts.manifest, rec, ".bval")
    bvec = find_companion(facts.manifest, rec, ".bvec")
    if bval is None or bvec is None:
        missing = ".bval" if bval is None else ".bvec"
        return RunVerdict(rec, f"{label} has no {missing}")
    bad_sidecar = facts.sidecar_error(rec)
    if bad_sidecar:
        return RunVerdict(rec, f"{label}: {bad_sidecar}")
    head = facts.volumes(rec)
    if "error" in head:
        return RunVerdict(rec, head["error"])
    shape = head["shape"]
    n_vol = shape[3] if len(shape) > 3 else 1
    bv = facts.bvals(bval)
    if "error" in bv:
        return RunVerdict(rec, bv["error"])
    bvals = bv["bvals"]
    if len(bvals) != n_vol:
        return RunVerdict(
            rec, f"{label}: .bval has {len(bvals)} values but the image has {n_vol} volumes"
        )
    vec = facts.bvecs(bvec)
    if "error" in vec:
        return RunVerdict(rec, vec["error"])
    if vec["n"] != len(bvals):
        return RunVerdict(
            rec, f"{label}: .bvec has {vec['n']} directions but .bval has {len(bvals)} values"
        )
    b0, shells = find_shells(bvals)
    if not shells:
        return RunVerdict(rec, f"{label} is b0-only", n_b0=len(b0), n_volumes=n_vol)
    if not b0:
        return RunVerdict(rec, f"{label} has no b0 volume (b <= {B0_MAX:g})", n_volumes=n_vol)
    return RunVerdict(rec, None, choose_shell(shells), len(b0), n_vol, bval.path, bvec.path)


def _in_session(ses: str, reason: str) -> str:
    return f"ses-{ses}: {reason}" if ses else reason


def _judge_session(
    manifest: Manifest,
    sub: str,
    ses: str,
    facts: FactCache,
    allow_any_shell: bool = _SEGMENT["allow_any_shell"],
    expert_descs: Sequence[str] = ("lesion",),
) -> tuple[dict[str, Any] | None, str]:
    """Target of one session, or None and the reason."""
    records = manifest.files_for(sub, ses)
    raw_dwi = [
        r
        for r in records
        if r.scope == "raw" and r.datatype == "dwi" and r.is_image and r.suffix == "dwi"
    ]

    def n_volumes(rec: FileRecord) -> int | None:
        head = facts.volumes(rec)
        if "error" in head:
            return None
        shape = head["shape"]
        return shape[3] if len(shape) > 3 else 1

    target: dict[str, Any] | None = None
    pre = find_precomputed(
        [r for r in records if r.datatype == "dwi"],
        n_volumes,
        facts.image_type,
        lambda r: find_companion(manifest, r, ".bval") is not None,
    )
    if pre is not None:
        trace, adc, why = pre
        target = {
            "mode": "precomputed",
            "dwi": trace.path,
            "adc": adc.path,
            "bval": None,
            "bvec": None,
            "shell": None,
            "n_b0": None,
            "n_shell": None,
            "recognised": why,
            "skipped": {},
        }
    else:
        multi = [
            r
            for r in raw_dwi
            if not is_trace_name(r, facts.image_type(r))
            and not is_adc_image(r, facts.image_type(r))
        ]
        if not multi:
            return None, "no DWI run"
        verdicts = [judge_run(r, facts) for r in multi]
        usable = sorted((v for v in verdicts if v.reason is None), key=RunVerdict.rank)
        if not usable:
            return None, "; ".join(str(v.reason) for v in verdicts)
        best = usable[0]
        assert best.shell is not None
        if abs(best.shell.b - TARGET_B) > TARGET_TOLERANCE and not allow_any_shell:
            return None, (
                f"{_run_label(best.rec)}: nearest shell b={best.shell.b:g} is outside "
                f"{TARGET_B:g} +/- {TARGET_TOLERANCE:g} s/mm^2, the b-value DeepISLES was "
                "trained on (segment.allow_any_shell: true uses it)"
            )
        skipped = {v.rec.name: str(v.reason) for v in verdicts if v.reason is not None}
        for v in usable[1:]:  # usable, but ranked lower: say why it was not chosen
            assert v.shell is not None
            skipped[v.rec.name] = (
                f"{len(v.shell.volumes)} volumes at b={v.shell.b:g}, not preferred"
            )
        target = {
            "mode": "raw",
            "dwi": best.rec.path,
            "adc": None,
            "bval": best.bval,
            "bvec": best.bvec,
            "shell": best.shell.b,
            "n_b0": best.n_b0,
            "n_shell": len(best.shell.volumes),
            "skipped": dict(sorted(skipped.items(), key=lambda kv: natural_key(kv[0]))),
        }
    flairs = sorted(
        (
            r
            for r in records
            if r.scope == "raw" and r.datatype == "anat" and r.suffix == "FLAIR" and r.is_image
        ),
        key=lambda r: natural_key(r.name),
    )
    experts: dict[str, str] = {}
    for desc in expert_descs:
        found = sorted(
            (
                r
                for r in records
                if r.scope != "raw"
                and r.is_image
                and r.suffix == "mask"
                and r.entity("desc") == desc
                and r.scope != DERIVATIVE.as_posix()
            ),
            key=lambda r: (r.scope != "derivatives/lesion_masks", natural_key(r.path)),
        )
        if found:
            experts[desc] = found[0].path
    target["session"] = ses
    target["flair"] = flairs[0].path if flairs else None
    # The primary comparison: the first declared desc the session has.
    target["expert_mask"] = experts.get(expert_descs[0])
    target["expert_desc"] = expert_descs[0]
    target["expert_masks"] = experts
    return target, ""


def _strip(label: str, prefix: str) -> str:
    return label[len(prefix) :] if label.startswith(prefix) else label


def normalize_session_choice(
    choice: str | dict[str, str], sessions: dict[str, list[str]]
) -> str | dict[str, str]:
    """Check ``segment.session``: ``earliest``, ``latest`` or {subject: session}.

    Raises
    ------
    ConfigError
        A subject or session of the mapping is not in the dataset.
    """
    if isinstance(choice, str):
        return choice
    out = {}
    for key, value in choice.items():
        sub, ses = _strip(str(key), "sub-"), _strip(str(value), "ses-")
        if sub not in sessions:
            raise ConfigError(f"config key 'segment.session': sub-{sub} is not in the dataset")
        if ses not in sessions[sub]:
            known = ", ".join(f"ses-{s}" for s in sessions[sub]) or "none"
            raise ConfigError(
                f"config key 'segment.session': sub-{sub} has no session ses-{ses} "
                f"(sessions: {known})"
            )
        out[sub] = ses
    return out


def plan_segmentation(
    manifest: Manifest,
    subjects: Sequence[str],
    session_choice: str | dict[str, str] = _SEGMENT["session"],
    facts: FactCache | None = None,
    allow_any_shell: bool = _SEGMENT["allow_any_shell"],
    expert_descs: Sequence[str] = ("lesion",),
) -> dict[str, Any]:
    """Decide, per subject, what to segment (``index/segmentation.json``).

    Parameters
    ----------
    manifest
        The indexed dataset.
    subjects
        Subject labels of the run (the ``subjects`` filter applied).
    session_choice
        ``earliest`` (first session, natural order, with usable DWI),
        ``latest``, or a mapping subject -> session (other subjects: earliest).
    facts
        Cache of per-file facts (a fresh one reads every file it needs).
    allow_any_shell
        Segment from the shell nearest b=1000 even when it is outside 1000 +/- 100
        (otherwise such a subject is excluded, with the reason).
    expert_descs
        ``desc`` labels of the expert masks to compare with (the dataset map's
        ``expert_masks``); the first is the primary one (``expert_mask``), all
        found are listed in ``expert_masks``.

    Returns
    -------
    dict
        ``{"version", "targets": {sub: {...}}, "excluded": {sub: reason}}``,
        keys sorted.
    """
    facts = facts or FactCache(manifest, None)
    sessions: dict[str, list[str]] = {sub: [] for sub in subjects}
    for sub, ses in manifest.shard_keys():  # naturally sorted
        if sub in sessions:
            sessions[sub].append(ses)
    choice = normalize_session_choice(session_choice, sessions)
    targets: dict[str, Any] = {}
    excluded: dict[str, str] = {}
    for sub in subjects:
        order = sessions[sub]
        if isinstance(choice, dict) and sub in choice:
            candidates, forced = [choice[sub]], True
        else:
            candidates = list(reversed(order)) if choice == "latest" else order
            forced = False
        reasons: list[str] = []
        for ses in candidates:
            target, reason = _judge_session(
                manifest, sub, ses, facts, allow_any_shell, tuple(expert_descs)
            )
            if target is not None:
                if reasons:
                    target["notes"] = reasons
                targets[sub] = target
                break
            if reason != "no DWI run" or forced:
                reasons.append(_in_session(ses, reason))
        else:
            if forced:
                excluded[sub] = f"segment.session chose {reasons[0]}"
            elif not reasons:
                excluded[sub] = "no DWI run"
            else:
                excluded[sub] = "no usable DWI: " + "; ".join(reasons)
    return {
        "version": PLAN_VERSION,
        "targets": dict(sorted(targets.items(), key=lambda kv: natural_key(kv[0]))),
        "excluded": dict(sorted(excluded.items(), key=lambda kv: natural_key(kv[0]))),
    }


def check_skull_strip(config: dict[str, Any], plan: dict[str, Any]) -> None:
    """``segment.deepisles.skull_strip`` needs a FLAIR for every segmented subject.

    DeepISLES runs HD-BET on the FLAIR and crashes without one (a path treated as
    an image), so asking for it on a subject without a FLAIR is a config error,
    found at parse time rather than on a GPU node.

    Raises
    ------
    ConfigError
        One line naming the subjects without a FLAIR.
    """
    seg = config.get("segment") or {}
    if seg.get("backend") != "deepisles" or not (seg.get("deepisles") or {}).get("skull_strip"):
        return
    missing = [sub for sub, t in plan["targets"].items() if not t.get("flair")]
    if missing:
        shown = ", ".join(f"sub-{s}" for s in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ConfigError(
            f"config key 'segment.deepisles.skull_strip': DeepISLES' --skull_strip needs a "
            f"FLAIR, and {len(missing)} segmented subject(s) have none ({shown}); set it to "
            "false (segment.deepisles.brain_extract zeroes the background of the staged "
            "trace and ADC instead)"
        )


def plan_json(plan: dict[str, Any]) -> str:
    """Canonical text of a plan (sorted keys: same plan, same bytes)."""
    return json.dumps(plan, indent=1, sort_keys=True) + "\n"

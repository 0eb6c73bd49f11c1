"""Parse-time set-up used by the Snakefile: config, index, column map, targets.

Kept out of the Snakefile so that the rules stay thin and this logic has
unit tests. Everything here must be cheap when the index cache is warm:
every cluster job re-parses the Snakefile.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids2hub.config import validate_config
from bids2hub.errors import BidsError, ConfigError
from bids2hub.fsutil import write_if_changed
from bids2hub.index.bidsname import natural_key
from bids2hub.index.manifest import Manifest, load_index, shard_id
from bids2hub.index.phenotype import participants_fields, read_participants
from bids2hub.layout import DESCRIPTION, Layout
from bids2hub.locks import lock_out_dir
from bids2hub.shards.colmap import ColumnMap, generic_map, load_map, resolve_map_path


@dataclass
class WorkflowSetup:
    """Everything the rules need, derived once per parse."""

    config: dict[str, Any]
    out_dir: Path
    manifest: Manifest
    map_path: Path | None
    shards: dict[str, tuple[str, str]]  # shard id -> (sub, ses)
    index_rebuilt: bool
    cmap: ColumnMap
    participants: dict[str, dict[str, str]]
    segmentation: dict[str, Any]  # the plan: {"targets": {...}, "excluded": {...}}
    _paths: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def layout(self) -> Layout:
        """Every path of the run under out_dir."""
        return Layout.of(self.out_dir)

    @property
    def bids_dir(self) -> Path:
        """Resolved BIDS root."""
        return self.manifest.root

    @property
    def bids_description(self) -> Path:
        """The dataset's dataset_description.json."""
        return self.manifest.root / DESCRIPTION

    def subjects_arg(self) -> str:
        """``--subjects ...`` of the aggregate jobs when the run is limited to some subjects."""
        subjects = self.config["subjects"]
        return ("--subjects " + " ".join(subjects)) if subjects else ""

    @property
    def manifest_path(self) -> Path:
        """The cached index."""
        return Path(self.layout.manifest)

    def shard_path(self, shard: str) -> str:
        """Output path of one shard."""
        sub, _ses = self.shards[shard]
        return self.layout.shard(sub, shard)

    def shard_targets(self) -> list[str]:
        """Every shard of the run, in subject/session order."""
        return [self.shard_path(s) for s in self.shards]

    @property
    def columns_path(self) -> Path:
        """The resolved column map every shard job reads (rewritten only on change)."""
        return Path(self.layout.columns)

    def _session_records(self, shard: str) -> list:
        sub, ses = self.shards[shard]
        scopes = self.cmap.scopes() | {"raw"}
        return [r for r in self.manifest.files_for(sub, ses) if r.scope in scopes]

    def session_inputs(self, shard: str) -> list[str]:
        """Source files of one shard: its session's files in the scopes the map reads."""
        root = str(self.manifest.root)
        return [f"{root}/{r.path}" for r in self._session_records(shard)]

    def session_fingerprint(self, shard: str) -> str:
        """sha256 over (path, size, mtime) of the session's files.

        A rule parameter, so that Snakemake reruns the shard when a file is
        replaced by one with an *older* mtime (``cp -p``, ``rsync -a``), which
        the mtime comparison of inputs alone misses.
        """
        h = hashlib.sha256()
        for r in self._session_records(shard):
            h.update(f"{r.path}\0{r.size}\0{r.mtime_ns}\n".encode())
        return h.hexdigest()

    @functools.cached_property
    def _subject_shards(self) -> dict[str, list[str]]:
        by_subject: dict[str, list[str]] = {}
        for shard, (sub, _ses) in self.shards.items():
            by_subject.setdefault(sub, []).append(shard)
        return by_subject

    def subjects_in_run(self) -> list[str]:
        """The subjects with at least one shard, in shard order."""
        return list(self._subject_shards)

    def subject_shards(self, sub: str) -> list[str]:
        """The shards of one subject's sessions, in session order (empty: not in the run)."""
        return self._subject_shards.get(sub, [])

    def subject_inputs(self, sub: str) -> list[str]:
        """Source files of every session of one subject (the per-subject checks' inputs)."""
        return [f for shard in self.subject_shards(sub) for f in self.session_inputs(shard)]

    def subject_fingerprint(self, sub: str) -> str:
        """:meth:`session_fingerprint` of each of the subject's sessions, in one digest."""
        h = hashlib.sha256()
        for shard in self.subject_shards(sub):
            h.update(f"{shard}\0{self.session_fingerprint(shard)}\n".encode())
        return h.hexdigest()

    def participant_row(self, shard: str) -> str:
        """The subject's participants.tsv row as canonical JSON (a rule parameter).

        Editing one subject's phenotype reruns only that subject's shards.
        """
        sub, _ses = self.shards[shard]
        return json.dumps(self.participants.get(sub, {}), sort_keys=True)

    def participants_tsv(self) -> str | None:
        """participants.tsv when the dataset has one."""
        return self._top_level("participants.tsv")

    def _top_level(self, name: str) -> str | None:
        rec = self.manifest.top_level(name)
        return str(self.manifest.absolute(rec)) if rec else None

    def check_path(self, shard: str) -> str:
        """The validation stage's source check of one shard's session."""
        return self._validation_paths("session")[shard]

    def round_trip_path(self, shard: str) -> str:
        """The validation stage's read-back check of one shard."""
        return self._validation_paths("shard")[shard]

    def _validation_paths(self, kind: str) -> dict[str, str]:
        """Shard -> check path, built once per parse (the rules ask for every session)."""
        if kind not in self._paths:
            path = self.layout.session_check if kind == "session" else self.layout.shard_check
            self._paths[kind] = {shard: path(sub, shard) for shard, (sub, _) in self.shards.items()}
        return self._paths[kind]

    # ------------------------------------------------------------ segmentation

    @property
    def segmentation_path(self) -> Path:
        """The segmentation plan, rewritten only when it changes."""
        return Path(self.layout.segmentation)

    @functools.cached_property
    def derivatives_dir(self) -> Path:
        """The lesion-mask derivatives dataset."""
        return Path(self.layout.derivatives)

    def prepared_dir(self, sub: str) -> Path:
        """Where prepare_dwi writes a subject's trace, ADC and record."""
        return Path(self.layout.prepared_dir(sub))

    def prepared_info_path(self, sub: str) -> Path:
        """prepare_dwi's record of what it used (its last output)."""
        return Path(self.layout.prepared_info(sub))

    @property
    def qc_path(self) -> Path:
        """Per-subject segmentation QC table."""
        return Path(self.layout.qc_table)

    def segment_target(self, sub: str) -> dict[str, Any]:
        """The plan entry of a subject; WorkflowError-friendly KeyError message otherwise."""
        try:
            return self.segmentation["targets"][sub]
        except KeyError:
            reason = self.segmentation["excluded"].get(sub, "not a subject of this run")
            raise KeyError(f"sub-{sub} is not a segmentation target ({reason})") from None

    def mask_path(self, sub: str) -> str:
        """Derivative mask of a target subject."""
        return self.layout.mask(sub, self.segment_target(sub)["session"])

    def mask_targets(self) -> list[str]:
        """Every mask of the run (one per plan target)."""
        if "masks" not in self._paths:
            self._paths["masks"] = {
                sub: self.mask_path(sub) for sub in self.segmentation["targets"]
            }
        return list(self._paths["masks"].values())

    def segment_targets(self) -> list[str]:
        """Masks, their dataset_description.json and the QC table (nothing without targets)."""
        if not self.segmentation["targets"]:
            return []
        return [
            *self.mask_targets(),
            self.layout.masks_description,
            self.layout.qc_table,
        ]

    def dwi_inputs(self, sub: str) -> dict[str, str]:
        """Source files prepare_dwi reads for a subject (absolute paths)."""
        target = self.segment_target(sub)
        keys = ("dwi", "bval", "bvec") if target["mode"] == "raw" else ("dwi", "adc")
        return {k: str(self.bids_dir / target[k]) for k in keys}

    def dwi_input_mb(self, sub: str) -> float:
        """Size of :meth:`dwi_inputs` in MiB (as Snakemake's ``input.size_mb``), from the index.

        The index has every file's size: no stat per job while the DAG is built.
        """
        target = self.segment_target(sub)
        wanted = {target[k] for k in ("dwi", "bval", "bvec", "adc") if target.get(k)}
        size = sum(
            r.size for r in self.manifest.files_for(sub, target["session"]) if r.path in wanted
        )
        return size / 1024 / 1024

    def flair_input(self, sub: str) -> str | None:
        """The subject's FLAIR (absolute), or None."""
        flair = self.segment_target(sub).get("flair")
        return str(self.bids_dir / flair) if flair else None

    def expert_inputs(self) -> list[str]:
        """Expert masks the QC compares with (absolute paths)."""
        return [
            str(self.bids_dir / path)
            for t in self.segmentation["targets"].values()
            for path in sorted(set((t.get("expert_masks") or {}).values()))
        ]

    def label_pattern(self) -> str:
        """Wildcard constraint for subject labels: exactly the indexed ones."""
        subs = sorted({sub for sub, _ in self.shards.values()})
        return "|".join(re.escape(s) for s in subs) or "[a-zA-Z0-9]+"


def prepare(
    raw_config: dict[str, Any],
    *,
    config_dir: Path,
    refresh_index: bool = True,
    lock: bool = False,
) -> WorkflowSetup:
    """Validate the config, load (or refresh) the index and list the shards.

    Parameters
    ----------
    raw_config
        Snakemake's ``config`` dict.
    config_dir
        The repository's ``config/`` folder (dataset maps live there).
    refresh_index
        True in the main process; False in cluster jobs (reuse the cache).
    lock
        Hold ``{out_dir}/.lock`` until the process exits (the main Snakemake
        process, before it writes anything; never cluster jobs).

    Raises
    ------
    ConfigError, BidsError, LockBusy
        With one line saying what is wrong.
    """
    config = validate_config(raw_config)
    out_dir = Path(config["out_dir"]).resolve()
    layout = Layout.of(out_dir)
    try:
        Path(layout.index_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"out_dir '{out_dir}' cannot be created ({exc.strerror})") from None
    if lock:
        lock_out_dir(out_dir)
    bids_dir = Path(config["bids_dir"]).expanduser()
    map_path = resolve_map_path(config["dataset"], config_dir)
    manifest, rebuilt = load_index(
        bids_dir,
        Path(layout.manifest),
        refresh=refresh_index,
        exclude=[out_dir],
    )
    missing = manifest.missing_content()
    if missing:
        raise BidsError(
            f"{len(missing)} file(s) of {manifest.root} have no content (git-annex/datalad "
            f"symlinks not fetched), e.g. {', '.join(missing[:3])}: run 'datalad get' on them "
            "or limit the run with 'subjects'"
        )
    keys = manifest.shard_keys()
    wanted = config["subjects"]
    if wanted:
        known = {sub for sub, _ in keys}
        missing = [s for s in wanted if s not in known]
        if missing:
            raise ConfigError(
                f"config key 'subjects': {', '.join('sub-' + m for m in missing)} "
                f"not found in {manifest.root}"
            )
        keys = [k for k in keys if k[0] in set(wanted)]
    shards = {shard_id(sub, ses): (sub, ses) for sub, ses in keys}
    tsv_rec = manifest.top_level("participants.tsv")
    tsv = manifest.absolute(tsv_rec) if tsv_rec else None
    columns_path = Path(layout.columns)
    if refresh_index or not columns_path.is_file():
        cmap = (
            load_map(map_path)
            if map_path is not None
            else generic_map(manifest, participants_fields(tsv))
        )
        write_if_changed(columns_path, cmap.to_json())
    else:
        cmap = ColumnMap.from_json(columns_path.read_text(encoding="utf-8"))
    people = read_participants(tsv)
    subjects = sorted({sub for sub, _ in shards.values()}, key=natural_key)
    plan = _segmentation_plan(config, layout, manifest, subjects, refresh_index, cmap.expert_masks)
    from bids2hub.segment.plan import check_skull_strip

    check_skull_strip(config, plan)
    return WorkflowSetup(config, out_dir, manifest, map_path, shards, rebuilt, cmap, people, plan)


def _module_file(name: str) -> str:
    """The source file of a module of the package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:  # pragma: no cover - the package is installed
        raise ConfigError(f"module {name} not found")
    return spec.origin


def _segmentation_plan(
    config: dict[str, Any],
    layout: Layout,
    manifest: Manifest,
    subjects: list[str],
    refresh: bool,
    expert_descs: tuple[str, ...] = ("lesion",),
) -> dict[str, Any]:
    """Plan the segmentation (main process) or read the plan (cluster jobs).

    The main process reads per-file facts (b-values, header shapes) from
    the DWI facts file keyed by (path, size, mtime) and only opens files
    that changed; jobs read the segmentation plan and nothing else.
    """
    plan_path = Path(layout.segmentation)
    if not refresh and plan_path.is_file():
        return json.loads(plan_path.read_text(encoding="utf-8"))
    # The plan is a function of the indexed files, the subjects, the session choice
    # and the planning code: with all of them unchanged, the last plan is reused
    # (planning reads every DWI run's b-values: ~1 s at 902 sessions, ~10 s at 10k).
    key_path = Path(layout.segmentation_key)
    key = hashlib.sha256(
        json.dumps(
            [
                manifest.signature,
                subjects,
                config["segment"]["session"],
                config["segment"]["allow_any_shell"],
                list(expert_descs),
                *(
                    hashlib.sha256(Path(_module_file(code)).read_bytes()).hexdigest()
                    for code in ("bids2hub.segment.plan", "bids2hub.index.companions")
                ),
            ]
        ).encode()
    ).hexdigest()
    known = key_path.read_text(encoding="utf-8").strip() if key_path.is_file() else ""
    if known == key and plan_path.is_file():
        with contextlib.suppress(ValueError):
            return json.loads(plan_path.read_text(encoding="utf-8"))
    from bids2hub.segment import plan as dwi  # numpy, nibabel: only when planning

    facts = dwi.FactCache(manifest, Path(layout.dwi_facts))
    plan = dwi.plan_segmentation(
        manifest,
        subjects,
        config["segment"]["session"],
        facts,
        allow_any_shell=config["segment"]["allow_any_shell"],
        expert_descs=expert_descs,
    )
    facts.save()
    write_if_changed(plan_path, dwi.plan_json(plan))
    write_if_changed(key_path, key + "\n")
    return plan


@dataclass(frozen=True)
class Plans:
    """Every stage's parse-time plan, built in one place (the Snakefile's one ``try``).

    A stage reads another stage only through the plan objects it is given here,
    so no rule file depends on another's globals or on the order of the includes.
    """

    setup: WorkflowSetup  # index, shards and the segmentation plan
    validation: Any  # bids2hub.validate.plan.ValidationPlan
    hub: Any  # bids2hub.hub.publish.HubPlan (reads: validation)
    paper: Any  # bids2hub.paper.plan.PaperPlan (reads: hub, validation)
    viewer: Any  # bids2hub.paper.viewer.ViewerPlan
    deepisles_image: str  # where the segmentation rules find the DeepISLES image

    @property
    def layout(self) -> Layout:
        """Every path under out_dir."""
        return self.setup.layout

    def targets(self) -> list[str]:
        """The default target's files, but the per-session ones (input functions give them)."""
        return [
            *self.hub.targets(),
            *self.hub.dataset_file_targets(),
            *self.hub.preview_targets(),
            *self.validation.targets(),
            *self.paper.targets(),
            *self.viewer.targets(),
        ]


def plan_workflow(
    raw_config: dict[str, Any],
    *,
    config_dir: Path,
    refresh_index: bool = True,
    lock: bool = False,
) -> Plans:
    """Validate the config and plan every stage (see :func:`prepare` for the arguments).

    In the main process (``refresh_index``) it also writes the paper's provenance input
    record, the one parse-time output that is not an index file.

    Raises
    ------
    Bids2HubError
        With one line saying what is wrong, whichever stage found it.
    """
    from bids2hub.hub.publish import HubPlan
    from bids2hub.paper.plan import PaperPlan
    from bids2hub.paper.viewer import ViewerPlan
    from bids2hub.segment.deepisles import image_path
    from bids2hub.validate.plan import ValidationPlan

    setup = prepare(raw_config, config_dir=config_dir, refresh_index=refresh_index, lock=lock)
    validation = ValidationPlan.from_setup(setup)
    hub = HubPlan.from_setup(setup, validation=validation)
    paper = PaperPlan.from_setup(setup, hub=hub, validation=validation)
    viewer = ViewerPlan.from_setup(setup)
    plans = Plans(setup, validation, hub, paper, viewer, str(image_path(setup.config)))
    if paper.enabled and refresh_index:
        paper.write_provenance_inputs()
    return plans

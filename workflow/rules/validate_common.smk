# Helpers of the validation rules (validate.smk): input functions, O(1) per job
# except the report's, which runs in the main process only.
# The stage's paths and options: VALIDATION (bids2hub.validate.plan.ValidationPlan).
import json
import os
import shlex


def _subject_shards(sub):
    """The subject's shards, or a clear error for a subject the run does not have."""
    shards = SETUP.subject_shards(sub)
    if not shards:
        raise WorkflowError(f"sub-{sub} is not a subject of {SETUP.bids_dir}")
    return shards


def subject_sources(wildcards):
    """Every source file of the subject's sessions and the resolved column map."""
    _subject_shards(wildcards.sub)
    return {"sources": SETUP.subject_inputs(wildcards.sub), "columns": L.columns}


def subject_fingerprint(wildcards):
    """Paths, sizes and mtimes of the subject's files (catches older-mtime replacements)."""
    return SETUP.subject_fingerprint(wildcards.sub)


def source_check_args(wildcards):
    """``--session S --output FILE`` per session: each session's own result file."""
    sub = wildcards.sub
    return " ".join(
        f"--session={shlex.quote(SETUP.shards[s][1])} --output {shlex.quote(L.session_check(sub, s))}"
        for s in _subject_shards(sub)
    )


def all_session_checks(wildcards):
    """The source checks of every subject (an input function: see common.smk)."""
    return [L.session_checks_dir(sub) for sub in SETUP.subjects_in_run()]


def _intact_shards():
    """The shards whose sessions can be written (after the checkpoint), in run order.

    A session whose sources failed a blocking check has no shard; leaving its
    round-trip out keeps the report from waiting on it.
    """
    listing = checkpoints.list_intact_sessions.get().output[0]
    with open(listing, encoding="utf-8") as fh:
        intact = set(json.load(fh)["intact"])
    return [s for s in SETUP.shards if s in intact]


def _intact_of(sub):
    return [s for s in _intact_shards() if SETUP.shards[s][0] == sub]


def _intact_subjects():
    return list(dict.fromkeys(SETUP.shards[s][0] for s in _intact_shards()))


def read_back_outputs():
    """The round-trips' folder and, when the run has a preview, the preview rows' folder."""
    outputs = {"checks": directory(L.shard_checks_dir("{sub}"))}
    if HUB.preview:
        outputs["preview"] = directory(L.preview_dir("{sub}"))
    return outputs


def read_back_sources(wildcards):
    """The subject's intact shards, its source checks and the column map."""
    return {
        "shards": [L.shard(wildcards.sub, s) for s in _intact_of(wildcards.sub)],
        "sessions": L.session_checks_dir(wildcards.sub),
        "columns": L.columns,
    }


def read_back_args(wildcards):
    """Per intact shard: its session, shard, source check, result and preview row."""
    sub, q = wildcards.sub, shlex.quote
    args = []
    for s in _intact_of(sub):
        args.append(
            f"--session={q(SETUP.shards[s][1])} --shard {q(L.shard(sub, s))}"
            f" --session-check {q(L.session_check(sub, s))} --output {q(L.shard_check(sub, s))}"
        )
        if HUB.preview:
            args.append(f"--preview {q(L.preview_part(sub, s))}")
    return " ".join(args)


def round_trip_results(wildcards):
    """The round-trip folders of the subjects with at least one intact session."""
    return [L.shard_checks_dir(sub) for sub in _intact_subjects()]


def preview_parts(wildcards):
    """The preview rows' folders of the subjects with at least one intact session."""
    return [L.preview_dir(sub) for sub in _intact_subjects()]


def preview_part_args(wildcards):
    """Every intact session's preview row, in shard order (the table's row order)."""
    return [L.preview_part(SETUP.shards[s][0], s) for s in _intact_shards()]


def segmentation_qc(wildcards):
    """qc/segmentation.tsv when the run segments anyone: the report lists flagged masks."""
    return [str(SETUP.qc_path)] if SETUP.segmentation["targets"] else []


def segmentation_plan(wildcards):
    """The segmentation plan (written at parse time), for the excluded subjects."""
    return [L.segmentation]


def shard_check_mem_mb(wildcards, input, attempt):
    """Memory of a read-back job: one shard at a time and one column of it, plus a
    decoded cell and the preview's first volumes; more on each retry."""
    largest = max((os.path.getsize(f) for f in input.shards), default=0)
    return (largest // 2**20 + 500) * attempt

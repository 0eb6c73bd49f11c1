# Helpers of the validation rules (validate.smk): paths and input functions,
# O(1) per job except the report's, which runs in the main process only.
import json
import shlex
from pathlib import Path

VALIDATION = f"{OUT}/validation"


def session_check_path(shard):
    """The source check of one shard's session."""
    return str(SETUP.check_path(shard))


def shard_check_path(shard):
    """The round-trip check of one shard."""
    return str(SETUP.round_trip_path(shard))


def validation_targets():
    """Targets of the default target: the check that fails on hard failures."""
    return [f"{VALIDATION}/passed"]


def all_session_checks(wildcards):
    """The source check of every session (an input function: see common.smk)."""
    return [session_check_path(s) for s in SETUP.shards]


def round_trip_results(wildcards):
    """Round-trip checks of the shards whose sessions can be written (after the checkpoint).

    A session whose sources failed a blocking check has no shard; leaving its
    round-trip out keeps the report from waiting on it.
    """
    listing = checkpoints.list_intact_sessions.get().output[0]
    with open(listing, encoding="utf-8") as fh:
        intact = json.load(fh)["intact"]
    return [shard_check_path(s) for s in intact if s in SETUP.shards]


def segmentation_qc(wildcards):
    """qc/segmentation.tsv when the run segments anyone: the report lists flagged masks."""
    return [str(SETUP.qc_path)] if SETUP.segmentation["targets"] else []


def segmentation_plan(wildcards):
    """index/segmentation.json (written at parse time), for the excluded subjects."""
    return [str(SETUP.segmentation_path)]


def validation_subjects_arg():
    """`--subjects ...` when the run is limited to some subjects."""
    subjects = SETUP.config.get("subjects")
    return ("--subjects " + " ".join(subjects)) if subjects else ""


def shard_check_mem_mb(wildcards, input, attempt):
    """Memory of a round-trip job: one column of the shard at a time, plus a decoded
    cell; more on each retry."""
    return (int(input.size_mb) + 500) * attempt


def out_dir_of_output(wildcards, output):
    """out_dir, from an output under {out_dir}/validation/."""
    return str(Path(output[0]).parent.parent)

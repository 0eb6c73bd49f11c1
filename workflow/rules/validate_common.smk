# Helpers of the validation rules (validate.smk): input functions, O(1) per job
# except the report's, which runs in the main process only.
# The stage's paths and options: VALIDATION (bids2hub.validate.plan.ValidationPlan).
import json
import shlex


def all_session_checks(wildcards):
    """The source check of every session (an input function: see common.smk)."""
    return [SETUP.check_path(s) for s in SETUP.shards]


def round_trip_results(wildcards):
    """Round-trip checks of the shards whose sessions can be written (after the checkpoint).

    A session whose sources failed a blocking check has no shard; leaving its
    round-trip out keeps the report from waiting on it.
    """
    listing = checkpoints.list_intact_sessions.get().output[0]
    with open(listing, encoding="utf-8") as fh:
        intact = json.load(fh)["intact"]
    return [SETUP.round_trip_path(s) for s in intact if s in SETUP.shards]


def segmentation_qc(wildcards):
    """qc/segmentation.tsv when the run segments anyone: the report lists flagged masks."""
    return [str(SETUP.qc_path)] if SETUP.segmentation["targets"] else []


def segmentation_plan(wildcards):
    """The segmentation plan (written at parse time), for the excluded subjects."""
    return [L.segmentation]


def shard_check_mem_mb(wildcards, input, attempt):
    """Memory of a round-trip job: one column of the shard at a time, plus a decoded
    cell; more on each retry."""
    return (int(input.size_mb) + 500) * attempt

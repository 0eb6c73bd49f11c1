# Helpers shared by the rules: constraints and input functions (O(1) per job).
# Every stage file that uses them includes this file itself (a second include
# is skipped), so no stage depends on the order of the Snakefile's includes.


wildcard_constraints:
    sub=SETUP.label_pattern(),
    shard=r"sub-[a-zA-Z0-9]+(_ses-[a-zA-Z0-9]+)?",


# The aggregates' long input lists are input functions, not lists: Snakemake builds
# a rule's listed inputs when it parses the Snakefile, and every cluster job parses
# it (at 10k sessions, ~10k paths per list); a function runs only for a job in the DAG.
def all_shards(wildcards):
    """Every shard of the run."""
    return SETUP.shard_targets()


def all_segment_targets(wildcards):
    """The masks, their description and the QC table (nothing without targets)."""
    return SETUP.segment_targets()


def shard_sources(wildcards):
    """Every file of the shard's session and the resolved column map.

    participants.tsv is not an input: each shard depends on its subject's row
    only, through the `phenotype` parameter.
    """
    if SETUP.shards.get(wildcards.shard, ("",))[0] != wildcards.sub:
        raise WorkflowError(
            f"sub-{wildcards.sub}/{wildcards.shard} is not a session of {SETUP.bids_dir}"
        )
    return {
        "session": SETUP.session_inputs(wildcards.shard),
        "columns": L.columns,
    }


def shard_fingerprint(wildcards):
    """Paths, sizes and mtimes of the session's files (catches older-mtime replacements)."""
    return SETUP.session_fingerprint(wildcards.shard)


def shard_phenotype(wildcards):
    """The subject's participants.tsv row, canonical JSON."""
    return SETUP.participant_row(wildcards.shard)


def shard_session(wildcards):
    """Session label of a shard ('' without sessions)."""
    return SETUP.shards[wildcards.shard][1]


def shard_mem_mb(wildcards, input, attempt):
    """Memory of a shard job. The streaming writer copies files in 4 MiB chunks
    and needs a fixed amount; pyarrow's writer (content-defined chunking) holds
    the session plus two copies of its largest list column (~3.2x measured).
    Each retry asks for that much more (an out-of-memory kill is retried)."""
    if SETUP.config["shards"]["content_defined_chunking"]:
        return (int(3.3 * input.size_mb) + 500) * attempt
    return 1000 * attempt

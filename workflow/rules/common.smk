# Helpers shared by the rules: constraints and input functions (O(1) per job).


wildcard_constraints:
    sub=SETUP.label_pattern(),
    shard=r"sub-[a-zA-Z0-9]+(_ses-[a-zA-Z0-9]+)?",


def shard_sources(wildcards):
    """Every file of the shard's session, plus the phenotype table and dataset map."""
    if wildcards.shard not in SETUP.shards:
        raise WorkflowError(f"{wildcards.shard} is not a session of {SETUP.bids_dir}")
    files = {"session": SETUP.session_inputs(wildcards.shard)}
    for key, path in (
        ("participants", SETUP.participants_tsv()),
        ("participants_json", SETUP.participants_json()),
    ):
        if path:
            files[key] = path
    if SETUP.map_path:
        files["dataset_map"] = str(SETUP.map_path)
    return files


def shard_session(wildcards):
    """Session label of a shard ('' without sessions)."""
    return SETUP.shards[wildcards.shard][1]


def shard_mem_mb(wildcards, input):
    """Memory of a shard job: about twice the session's bytes plus the runtime."""
    return int(2 * input.size_mb) + 500

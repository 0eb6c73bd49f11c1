# Publishing: the masks table, the dataset card and the push to the Hub.
#
# Decided at parse time (bids2hub.hub.publish.HubPlan, built in the Snakefile):
# - masks: the segmentation plan lists the sessions that get a mask; without
#   one there is no masks table and no `masks` config in the card.
# - counts and gate: the validation stage's plan (VALIDATION) gives the report
#   the card reads its counts from, and the mark the push waits for.
import json


include: "common.smk"


rule build_masks_table:
    input:
        masks=lambda wildcards: list(HUB.masks),
        description=HUB.masks_description,
        plan=HUB.plan,
    output:
        table=HUB.masks_table,
    log:
        L.log("build_masks_table"),
    benchmark:
        L.benchmark("build_masks_table")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        # The derivative's root: where its dataset_description.json is.
        masks_dir=lambda wildcards, input: os.path.dirname(input.description),
    shell:
        "python -m bids2hub masks-table --masks-dir {params.masks_dir:q}"
        " --plan {input.plan:q} --description {input.description:q}"
        " --output {output.table:q} > {log:q} 2>&1"


rule dataset_card:
    input:
        **HUB.card_inputs(),
    output:
        card=HUB.card,
    log:
        L.log("dataset_card"),
    benchmark:
        L.benchmark("dataset_card")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        repo_id=HUB.repo_id,
        n_subjects=HUB.n_subjects,
        n_sessions=HUB.n_sessions,
        n_masks=len(HUB.masks),
        optional=HUB.card_args(),
        preview="--preview" if HUB.preview else "",
    shell:
        "python -m bids2hub dataset-card --bids-description {input.description:q}"
        " --columns {input.columns:q} --repo-id={params.repo_id:q}"
        " --n-subjects {params.n_subjects} --n-sessions {params.n_sessions}"
        " --n-masks {params.n_masks} {params.optional} {params.preview}"
        " --output {output.card:q}"
        " > {log:q} 2>&1"


# Login nodes have the network, compute nodes often not: run it where Snakemake runs.
# Its progress (bytes, files, ETA) goes to the console and to the log (tee; Snakemake's
# shell runs with pipefail, so a failed push still fails the rule).
# The receipt is written only after the remote was verified, so an incomplete
# push reruns; any changed file of hub/ reruns it too (and uploads only that).
rule push_to_hub:
    input:
        shards=all_shards,
        card=HUB.card,
        masks=lambda wildcards: list(HUB.masks),
        masks_extra=HUB.masks_extra(),
        dataset_files=HUB.dataset_file_targets(),
        preview=HUB.preview_targets(),
        # Nothing is published that failed a hard validation check.
        validated=HUB.validation_gate(),
    output:
        receipt=HUB.receipt,
    log:
        L.log("push_to_hub"),
    benchmark:
        L.benchmark("push_to_hub")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        # The pushed folder: the one the receipt is written in.
        hub=lambda wildcards, output: os.path.dirname(output.receipt),
        options=json.dumps(SETUP.config["hub"], sort_keys=True),
        hash_cache=L.push_hash_cache,
    shell:
        "python -m bids2hub push --hub-dir {params.hub:q} --options {params.options:q}"
        " --receipt {output.receipt:q} --hash-cache {params.hash_cache:q} 2>&1 | tee {log:q}"

# Publishing: the masks table, the dataset card and the push to the Hub.
#
# Hooks into the other stages, decided at parse time (bids2hub.hub.publish.HubPlan):
# - masks: the segmentation plan index/segmentation.json (written by SETUP when
#   the segmentation stage exists) lists the sessions that get a mask;
#   without it there is no masks table and no `masks` config in the card.
# - counts: when the rule `write_validation_report` is defined (include validate.smk
#   before this file), the card reads validation/report.json's counts. Asked of
#   `rules` (this workflow's own names, also when it is a module whose rules are
#   renamed by `use rule * from ... as prefix_*`), not of workflow.is_rule.
import json

from bids2hub.hub.publish import HubPlan

try:
    HUB = HubPlan.from_setup(
        SETUP, has_validation_report=rules.has("write_validation_report")
    )
except Bids2HubError as exc:
    sys.exit(f"bids2hub: error: {exc}")


rule build_masks_table:
    input:
        masks=hub_masks,
        description=HUB.masks_description,
        plan=str(HUB.plan),
    output:
        table=HUB.masks_table,
    log:
        f"{OUT}/logs/build_masks_table/build_masks_table.log",
    benchmark:
        f"{OUT}/benchmarks/build_masks_table/build_masks_table.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        hub=lambda wildcards, output: str(Path(output.table).parent.parent),
    shell:
        "python -m bids2hub masks-table --hub-dir {params.hub:q} --plan {input.plan:q}"
        " --description {input.description:q} --output {output.table:q} > {log:q} 2>&1"


rule dataset_card:
    input:
        **HUB.card_inputs(),
    output:
        card=HUB.card,
    log:
        f"{OUT}/logs/dataset_card/dataset_card.log",
    benchmark:
        f"{OUT}/benchmarks/dataset_card/dataset_card.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        repo_id=HUB.repo_id,
        n_subjects=HUB.n_subjects,
        n_sessions=HUB.n_sessions,
        n_masks=len(HUB.masks),
        optional=HUB.card_args(),
        preview="--preview" if PREVIEW_ENABLED else "",
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
        masks=hub_masks,
        masks_extra=HUB.masks_extra(),
        dataset_files=dataset_file_targets(),
        preview=preview_targets(),
        # Nothing is published that failed a hard validation check.
        validated=HUB.validation_gate(),
    output:
        receipt=HUB.receipt,
    log:
        f"{OUT}/logs/push_to_hub/push_to_hub.log",
    benchmark:
        f"{OUT}/benchmarks/push_to_hub/push_to_hub.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        hub=lambda wildcards, output: str(Path(output.receipt).parent),
        options=json.dumps(SETUP.config["hub"], sort_keys=True),
        hash_cache=f"{OUT}/work/hub/local-hashes.json",
    shell:
        "python -m bids2hub push --hub-dir {params.hub:q} --options {params.options:q}"
        " --receipt {output.receipt:q} --hash-cache {params.hash_cache:q} 2>&1 | tee {log:q}"

# Publishing: the masks table, the dataset card and the push to the Hub.
#
# Hooks into the other stages, decided at parse time:
# - masks: the segmentation plan index/segmentation.json (written by SETUP when
#   the segmentation stage exists) lists the sessions that get a mask;
#   without it there is no masks table and no `masks` config in the card.
# - counts: when a rule `validation_report` is defined (include validate.smk
#   before this file), the card reads validation/report.json's counts.
import json

from bids2hub.hub import check_push_config
from bids2hub.masks import mask_relpath, planned_masks

try:
    HUB_PUSH = check_push_config(SETUP.config["hub"])
except Bids2HubError as exc:
    sys.exit(f"bids2hub: error: {exc}")

HUB = f"{OUT}/hub"
HUB_PLAN = f"{OUT}/index/segmentation.json"
HUB_MASKS = [f"{HUB}/{mask_relpath(s, e)}" for s, e in planned_masks(Path(HUB_PLAN))]
HUB_MASKS_DESCRIPTION = f"{HUB}/derivatives/deepisles/dataset_description.json"
HUB_MASKS_TABLE = f"{HUB}/masks/masks.parquet"
HUB_REPORT = (
    f"{OUT}/validation/report.json" if workflow.is_rule("validation_report") else None
)
HUB_CARD = f"{HUB}/README.md"
HUB_RECEIPT = f"{HUB}/.push-receipt.json"


def card_inputs(wildcards):
    """The card's inputs: source description, column map, and the optional stages."""
    inputs = {
        "description": str(SETUP.bids_dir / "dataset_description.json"),
        "columns": str(SETUP.columns_path),
    }
    if HUB_REPORT:
        inputs["report"] = HUB_REPORT
    if HUB_MASKS:
        inputs["masks_description"] = HUB_MASKS_DESCRIPTION
        inputs["masks_table"] = HUB_MASKS_TABLE
    return inputs


def card_optional_args(wildcards, input):
    """CLI arguments for the optional card inputs."""
    args = []
    if "report" in input.keys():
        args.append(f"--report '{input.report}'")
    if "masks_description" in input.keys():
        args.append(f"--masks-description '{input.masks_description}'")
    return " ".join(args)


def hub_targets():
    """What `rule all` builds of this stage."""
    targets = [HUB_CARD]
    if HUB_MASKS:
        targets.append(HUB_MASKS_TABLE)
    if HUB_PUSH:
        targets.append(HUB_RECEIPT)
    return targets


rule build_masks_table:
    input:
        masks=HUB_MASKS,
        description=HUB_MASKS_DESCRIPTION,
        plan=HUB_PLAN,
    output:
        table=HUB_MASKS_TABLE,
    log:
        f"{OUT}/logs/build_masks_table/build_masks_table.log",
    benchmark:
        f"{OUT}/benchmarks/build_masks_table/build_masks_table.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    params:
        hub=HUB,
    shell:
        "python -m bids2hub masks-table --hub-dir {params.hub:q} --plan {input.plan:q}"
        " --description {input.description:q} --output {output.table:q} > {log:q} 2>&1"


rule dataset_card:
    input:
        unpack(card_inputs),
    output:
        card=HUB_CARD,
    log:
        f"{OUT}/logs/dataset_card/dataset_card.log",
    benchmark:
        f"{OUT}/benchmarks/dataset_card/dataset_card.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    params:
        repo_id=SETUP.config["hub"]["repo_id"] or "",
        n_subjects=len({sub for sub, _ in SETUP.shards.values()}),
        n_sessions=len(SETUP.shards),
        n_masks=len(HUB_MASKS),
        optional=card_optional_args,
    shell:
        "python -m bids2hub dataset-card --bids-description {input.description:q}"
        " --columns {input.columns:q} --repo-id={params.repo_id:q}"
        " --n-subjects {params.n_subjects} --n-sessions {params.n_sessions}"
        " --n-masks {params.n_masks} {params.optional} --output {output.card:q}"
        " > {log:q} 2>&1"


# Login nodes have the network, compute nodes often not: run it where Snakemake runs.
# The receipt is written only after the remote was verified, so an incomplete
# push reruns; any changed file of hub/ reruns it too (and uploads only that).
rule push_to_hub:
    input:
        shards=SETUP.shard_targets(),
        card=HUB_CARD,
        masks=HUB_MASKS,
        masks_extra=[HUB_MASKS_TABLE, HUB_MASKS_DESCRIPTION] if HUB_MASKS else [],
    output:
        receipt=HUB_RECEIPT,
    log:
        f"{OUT}/logs/push_to_hub/push_to_hub.log",
    benchmark:
        f"{OUT}/benchmarks/push_to_hub/push_to_hub.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        hub=HUB,
        options=json.dumps(SETUP.config["hub"], sort_keys=True),
        hash_cache=f"{OUT}/work/hub/local-hashes.json",
    shell:
        "python -m bids2hub push --hub-dir {params.hub:q} --options {params.options:q}"
        " --receipt {output.receipt:q} --hash-cache {params.hash_cache:q} > {log:q} 2>&1"

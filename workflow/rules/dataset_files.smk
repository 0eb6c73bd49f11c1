# The source dataset's dataset-level files (dataset_description.json, participants.tsv,
# README, inherited sidecars, each derivative's dataset_description.json), copied byte
# for byte under hub/bids/ and pushed with the shards: `bids2hub restore` needs them
# to write a valid BIDS dataset back (bids2hub.hub.restore). Which files: HUB
# (bids2hub.hub.publish.HubPlan, one listing of the source's root per parse).


rule copy_dataset_files:
    input:
        HUB.dataset_file_sources(),
    output:
        HUB.dataset_file_targets(),
    log:
        L.log("copy_dataset_files"),
    benchmark:
        L.benchmark("copy_dataset_files")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    shell:
        "python -m bids2hub dataset-files --inputs {input:q} --outputs {output:q} > {log:q} 2>&1"

# The source dataset's dataset-level files (dataset_description.json, participants.tsv,
# README, inherited sidecars, each derivative's dataset_description.json), copied byte
# for byte under hub/bids/ and pushed with the shards: `bids2hub restore` needs them
# to write a valid BIDS dataset back (bids2hub.hub.restore). Include before hub.smk.


include: "dataset_files_common.smk"


rule copy_dataset_files:
    input:
        [str(SETUP.bids_dir / name) for name in DATASET_FILES],
    output:
        dataset_file_targets(),
    log:
        f"{OUT}/logs/copy_dataset_files/copy_dataset_files.log",
    benchmark:
        f"{OUT}/benchmarks/copy_dataset_files/copy_dataset_files.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    shell:
        "python -m bids2hub dataset-files --inputs {input:q} --outputs {output:q} > {log:q} 2>&1"

# One parquet shard per session with the NIfTI bytes embedded.


rule write_shard:
    input:
        unpack(shard_sources),
    output:
        shard=f"{OUT}/hub/data/sub-{{sub}}/{{shard}}.parquet",
    log:
        f"{OUT}/logs/write_shard/sub-{{sub}}/{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/write_shard/sub-{{sub}}/{{shard}}.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=shard_mem_mb,
    params:
        manifest=str(SETUP.manifest_path),
        session=shard_session,
        fingerprint=shard_fingerprint,
        phenotype=shard_phenotype,
        cdc=(
            "--content-defined-chunking"
            if SETUP.config["shards"]["content_defined_chunking"]
            else ""
        ),
    shell:
        "python -m bids2hub write-shard --manifest {params.manifest:q}"
        " --columns {input.columns:q} --subject {wildcards.sub}"
        " --session={params.session:q} --output {output.shard:q} {params.cdc}"
        " > {log:q} 2>&1"

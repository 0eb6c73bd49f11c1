# One parquet shard per session with the NIfTI bytes embedded.


include: "common.smk"


rule write_shard:
    input:
        unpack(shard_sources),
    output:
        shard=L.shard("{sub}", "{shard}"),
    log:
        L.log("write_shard", "sub-{sub}/{shard}"),
    benchmark:
        L.benchmark("write_shard", "sub-{sub}/{shard}")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=shard_mem_mb,
    params:
        manifest=L.manifest,
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

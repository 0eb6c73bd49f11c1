# The `preview` configuration of the Hub dataset: per session a row of PNG thumbnails
# the dataset viewer can show (it cannot decode Nifti), read from the session's shard
# only, so only changed sessions are redone; then one table for the Hub
# (bids2hub.hub.preview). The card lists it and the push sends it: HUB.preview_targets().


include: "preview_common.smk"


rule preview_session:
    input:
        shard=L.shard("{sub}", "{shard}"),
        columns=L.columns,
    output:
        part=L.preview_part("{sub}", "{shard}"),
    log:
        L.log("preview_session", "sub-{sub}/{shard}"),
    benchmark:
        L.benchmark("preview_session", "sub-{sub}/{shard}")
    conda:
        "../../envs/bids2hub.yaml"
    params:
        height=SETUP.config["preview"]["height"],
    shell:
        "python -m bids2hub preview-session --shard {input.shard:q} --columns {input.columns:q}"
        " --height {params.height} --output {output.part:q} > {log:q} 2>&1"


rule build_preview_table:
    input:
        parts=preview_parts,
        columns=L.columns,
    output:
        table=L.preview_table,
        thumbnail=L.preview_thumbnail,
    log:
        L.log("build_preview_table"),
    benchmark:
        L.benchmark("build_preview_table")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    shell:
        "python -m bids2hub preview-table --columns {input.columns:q} --output {output.table:q}"
        " --thumbnail {output.thumbnail:q} {input.parts:q} > {log:q} 2>&1"

# The `preview` configuration of the Hub dataset: per session a row of PNG thumbnails
# the dataset viewer can show (it cannot decode Nifti), read from the session's shard
# only, so only changed sessions are redone; then one table for the Hub
# (bids2hub.hub.preview). Include before hub.smk (the card lists it, the push sends it).


include: "preview_common.smk"


rule preview_session:
    input:
        shard=f"{OUT}/hub/data/sub-{{sub}}/{{shard}}.parquet",
        columns=str(SETUP.columns_path),
    output:
        part=preview_part(OUT, "{sub}", "{shard}"),
    log:
        f"{OUT}/logs/preview_session/sub-{{sub}}/{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/preview_session/sub-{{sub}}/{{shard}}.tsv"
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
        columns=str(SETUP.columns_path),
    output:
        table=f"{OUT}/hub/{PREVIEW_TABLE}",
        thumbnail=f"{OUT}/hub/{PREVIEW_THUMBNAIL}",
    log:
        f"{OUT}/logs/build_preview_table/build_preview_table.log",
    benchmark:
        f"{OUT}/benchmarks/build_preview_table/build_preview_table.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    shell:
        "python -m bids2hub preview-table --columns {input.columns:q} --output {output.table:q}"
        " --thumbnail {output.thumbnail:q} {input.parts:q} > {log:q} 2>&1"

# The `preview` configuration of the Hub dataset: per session a row of PNG thumbnails
# the dataset viewer can show (it cannot decode Nifti). The rows are written by each
# subject's read-back job (check_shards, rules/validate.smk) from the columns it reads
# anyway; here they become one table for the Hub (bids2hub.hub.preview). The card lists
# it and the push sends it: HUB.preview_targets().


include: "preview_common.smk"


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
    params:
        parts=preview_part_args,
    shell:
        "python -m bids2hub preview-table --columns {input.columns:q} --output {output.table:q}"
        " --thumbnail {output.thumbnail:q} {params.parts:q} > {log:q} 2>&1"

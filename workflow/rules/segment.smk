# Lesion masks per subject: DWI preparation, segmentation (DeepISLES or the CPU
# threshold backend), the BIDS derivative dataset and the QC table.
# Which subjects, sessions and runs: SETUP.segmentation (index/segmentation.json).


include: "segment_common.smk"


rule prepare_dwi:
    input:
        unpack(dwi_sources),
    output:
        dwi=L.prepared_dwi("{sub}"),
        adc=L.prepared_adc("{sub}"),
        info=L.prepared_info("{sub}"),
    log:
        L.log("prepare_dwi", "sub-{sub}"),
    benchmark:
        L.benchmark("prepare_dwi", "sub-{sub}")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=dwi_mem_mb,
    params:
        bids=bids_root,
        target=dwi_target_json,
    shell:
        "python -m bids2hub segment prepare --bids-dir {params.bids:q}"
        " --target {params.target:q} --dwi {output.dwi:q} --adc {output.adc:q}"
        " --info {output.info:q} > {log:q} 2>&1"


rule segment_lesion:
    input:
        unpack(segment_sources),
    output:
        mask=L.mask_pattern(),
    log:
        L.log("segment_lesion", "sub-{sub}/{maskpath}"),
    benchmark:
        L.benchmark("segment_lesion", "sub-{sub}/{maskpath}")
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        **segment_resources(),
    params:
        backend=SEGMENT_BACKEND,
        options=segment_options,
        scratch=lambda wildcards: L.prepared_dir(wildcards.sub),
    shell:
        "python -m bids2hub segment run --backend {params.backend}"
        " --dwi {input.dwi:q} --adc {input.adc:q} {params.options}"
        " --scratch-dir {params.scratch:q} --output {output.mask:q} > {log:q} 2>&1"


rule write_deepisles_description:
    input:
        source=str(SETUP.bids_description),
    output:
        L.masks_description,
    log:
        L.log("write_deepisles_description"),
    benchmark:
        L.benchmark("write_deepisles_description")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        backend=SEGMENT_BACKEND,
        extra=description_params(),
    shell:
        "python -m bids2hub segment describe --backend {params.backend}"
        " --source-description {input.source:q} {params.extra}"
        " --output {output:q} > {log:q} 2>&1"


rule summarize_segmentation:
    input:
        plan=L.segmentation,
        masks=all_masks,
        experts=expert_masks,
        prepared=prepared_infos,
    output:
        L.qc_table,
    log:
        L.log("summarize_segmentation"),
    benchmark:
        L.benchmark("summarize_segmentation")
    conda:
        "../../envs/bids2hub.yaml"
    params:
        bids=bids_root,
        masks_dir=L.derivatives,
        backend=SEGMENT_BACKEND,
    shell:
        "python -m bids2hub segment qc --plan {input.plan:q} --bids-dir {params.bids:q}"
        " --masks-dir {params.masks_dir:q} --backend {params.backend}"
        " --prepared {input.prepared:q} --output {output:q} > {log:q} 2>&1"

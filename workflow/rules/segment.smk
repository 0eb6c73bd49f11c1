# Lesion masks per subject: DWI preparation, segmentation (DeepISLES or the CPU
# threshold backend), the BIDS derivative dataset and the QC table.
# Which subjects, sessions and runs: SETUP.segmentation (index/segmentation.json).


include: "segment_common.smk"


rule prepare_dwi:
    input:
        unpack(dwi_sources),
    output:
        dwi=str(SETUP.prepared_dir("{sub}") / "dwi.nii.gz"),
        adc=str(SETUP.prepared_dir("{sub}") / "adc.nii.gz"),
        info=str(SETUP.prepared_info_path("{sub}")),
    log:
        f"{OUT}/logs/prepare_dwi/sub-{{sub}}.log",
    benchmark:
        f"{OUT}/benchmarks/prepare_dwi/sub-{{sub}}.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=dwi_mem_mb,
    params:
        bids=bids_root,
        target=dwi_target_json,
        out_dir=subpath(output.dwi, parent=True),
    shell:
        "python -m bids2hub segment prepare --bids-dir {params.bids:q}"
        " --target {params.target:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule segment_lesion:
    input:
        unpack(segment_sources),
    output:
        mask=f"{SETUP.derivatives_dir}/sub-{{sub}}/{{maskpath}}_desc-lesion_mask.nii.gz",
    log:
        f"{OUT}/logs/segment_lesion/sub-{{sub}}/{{maskpath}}.log",
    benchmark:
        f"{OUT}/benchmarks/segment_lesion/sub-{{sub}}/{{maskpath}}.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        **segment_resources(),
    params:
        backend=SEGMENT_BACKEND,
        options=segment_options,
        scratch=lambda wildcards: SETUP.prepared_dir(wildcards.sub),
    shell:
        "python -m bids2hub segment run --backend {params.backend}"
        " --dwi {input.dwi:q} --adc {input.adc:q} {params.options}"
        " --scratch-dir {params.scratch:q} --output {output.mask:q} > {log:q} 2>&1"


rule write_deepisles_description:
    input:
        source=f"{SETUP.bids_dir}/dataset_description.json",
    output:
        f"{SETUP.derivatives_dir}/dataset_description.json",
    log:
        f"{OUT}/logs/write_deepisles_description/write_deepisles_description.log",
    benchmark:
        f"{OUT}/benchmarks/write_deepisles_description/write_deepisles_description.tsv"
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
        plan=str(SETUP.segmentation_path),
        masks=all_masks,
        experts=expert_masks,
        prepared=prepared_infos,
    output:
        str(SETUP.qc_path),
    log:
        f"{OUT}/logs/summarize_segmentation/summarize_segmentation.log",
    benchmark:
        f"{OUT}/benchmarks/summarize_segmentation/summarize_segmentation.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    params:
        bids=bids_root,
        masks_dir=derivatives_root,
        backend=SEGMENT_BACKEND,
    shell:
        "python -m bids2hub segment qc --plan {input.plan:q} --bids-dir {params.bids:q}"
        " --masks-dir {params.masks_dir:q} --backend {params.backend}"
        " --prepared {input.prepared:q} --output {output:q} > {log:q} 2>&1"

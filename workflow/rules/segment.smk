# Lesion masks per subject: DWI preparation, segmentation (DeepISLES or the CPU
# threshold backend), the BIDS derivative dataset and the QC table.
# Which subjects, sessions and runs: SETUP.segmentation (index/segmentation.json).
import json
import shlex


wildcard_constraints:
    maskpath=r"(ses-[a-zA-Z0-9]+/)?dwi/sub-[a-zA-Z0-9]+(_ses-[a-zA-Z0-9]+)?",


SEGMENT = SETUP.config["segment"]
SEGMENT_BACKEND = SEGMENT["backend"]


def _target(wildcards):
    try:
        return SETUP.segment_target(wildcards.sub)
    except KeyError as exc:
        raise WorkflowError(str(exc.args[0])) from None


def dwi_sources(wildcards):
    """The chosen DWI run with its .bval/.bvec, or the dataset's trace and ADC."""
    _target(wildcards)
    return SETUP.dwi_inputs(wildcards.sub)


def dwi_target_json(wildcards):
    """The subject's plan entry: a parameter, so a new choice reruns the subject."""
    return json.dumps(_target(wildcards), sort_keys=True)


def dwi_mem_mb(wildcards, input):
    """The DWI in memory (gzip ratio ~2-3 for int16 DWI) plus float32 work volumes."""
    return 500 + int(8 * input.size_mb)


def segment_sources(wildcards):
    """Prepared trace and ADC, the FLAIR when there is one, the image for deepisles."""
    _target(wildcards)
    if SETUP.mask_path(wildcards.sub) != _mask_output(wildcards):
        raise WorkflowError(
            f"{_mask_output(wildcards)} is not the mask the plan gives sub-{wildcards.sub}"
        )
    work = f"{OUT}/work/deepisles/sub-{wildcards.sub}"
    inputs = {"dwi": f"{work}/dwi.nii.gz", "adc": f"{work}/adc.nii.gz"}
    flair = SETUP.flair_input(wildcards.sub)
    if flair:
        inputs["flair"] = flair
    if SEGMENT_BACKEND == "deepisles":
        # LEAD: the container image, i.e. the output of the localrule
        # pull_deepisles_image (path from bids2hub.deepisles), goes here:
        # inputs["image"] = <pull_deepisles_image output>
        pass
    return inputs


def _mask_output(wildcards):
    return (
        f"{SETUP.derivatives_dir}/sub-{wildcards.sub}/"
        f"{wildcards.maskpath}_desc-lesion_mask.nii.gz"
    )


def segment_options(wildcards, input):
    """Backend-specific arguments of `bids2hub segment run`."""
    args = []
    if "flair" in input.keys():
        args.append(f"--flair {shlex.quote(input.flair)}")
    if SEGMENT_BACKEND == "deepisles":
        args.append(f"--image {shlex.quote(input.image)}")
        # LEAD: the `fast` key lives in the segment.deepisles subsection.
        if SEGMENT.get("deepisles", {}).get("fast", False):
            args.append("--fast")
    else:
        args.append(f"--adc-threshold {SEGMENT['adc_threshold']!r}")
        args.append(f"--min-lesion-ml {SEGMENT['min_lesion_ml']!r}")
    return " ".join(args)


def segment_resources():
    """GPU and partition for DeepISLES; nothing special for the CPU backend."""
    if SEGMENT_BACKEND != "deepisles":
        return {"mem_mb": 2000}
    res = {"gpu": 1, "mem_mb": 16000, "runtime": 60}
    if SEGMENT["partition"]:
        res["slurm_partition"] = SEGMENT["partition"]
    return res


def description_params():
    """`bids2hub segment describe` arguments (deterministic content)."""
    if SEGMENT_BACKEND != "deepisles":
        return ""
    # LEAD: the pinned reference (docker://...@sha256:...) from bids2hub.deepisles.
    return "--container-uri ''"


rule prepare_dwi:
    input:
        unpack(dwi_sources),
    output:
        dwi=f"{OUT}/work/deepisles/sub-{{sub}}/dwi.nii.gz",
        adc=f"{OUT}/work/deepisles/sub-{{sub}}/adc.nii.gz",
        info=f"{OUT}/work/deepisles/sub-{{sub}}/prepared.json",
    log:
        f"{OUT}/logs/prepare_dwi/sub-{{sub}}.log",
    benchmark:
        f"{OUT}/benchmarks/prepare_dwi/sub-{{sub}}.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    resources:
        mem_mb=dwi_mem_mb,
    params:
        bids=str(SETUP.bids_dir),
        target=dwi_target_json,
        out_dir=subpath(output.dwi, parent=True),
    shell:
        "python -m bids2hub segment prepare --bids-dir {params.bids:q}"
        " --target {params.target:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule segment_lesion:
    input:
        unpack(segment_sources),
    output:
        mask=f"{OUT}/hub/derivatives/deepisles/sub-{{sub}}/{{maskpath}}_desc-lesion_mask.nii.gz",
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
    shell:
        "python -m bids2hub segment run --backend {params.backend}"
        " --dwi {input.dwi:q} --adc {input.adc:q} {params.options}"
        " --output {output.mask:q} > {log:q} 2>&1"


rule write_deepisles_description:
    input:
        source=f"{SETUP.bids_dir}/dataset_description.json",
    output:
        f"{OUT}/hub/derivatives/deepisles/dataset_description.json",
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
        masks=SETUP.mask_targets(),
        experts=SETUP.expert_inputs(),
    output:
        f"{OUT}/qc/segmentation.tsv",
    log:
        f"{OUT}/logs/summarize_segmentation/summarize_segmentation.log",
    benchmark:
        f"{OUT}/benchmarks/summarize_segmentation/summarize_segmentation.tsv"
    conda:
        "../../envs/bids2hub.yaml"
    params:
        bids=str(SETUP.bids_dir),
        masks_dir=str(SETUP.derivatives_dir),
        backend=SEGMENT_BACKEND,
    shell:
        "python -m bids2hub segment qc --plan {input.plan:q} --bids-dir {params.bids:q}"
        " --masks-dir {params.masks_dir:q} --backend {params.backend}"
        " --output {output:q} > {log:q} 2>&1"

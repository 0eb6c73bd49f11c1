# Helpers of rules/segment.smk: constraints and input functions (O(1) per job).
import json
import shlex


wildcard_constraints:
    maskpath=r"(ses-[a-zA-Z0-9]+/)?dwi/sub-[a-zA-Z0-9]+(_ses-[a-zA-Z0-9]+)?",


SEGMENT = SETUP.config["segment"]
SEGMENT_BACKEND = SEGMENT["backend"]
DEEPISLES = SEGMENT["deepisles"]


def _target(wildcards):
    try:
        return SETUP.segment_target(wildcards.sub)
    except KeyError as exc:
        raise WorkflowError(str(exc.args[0])) from None


def all_masks(wildcards):
    """Every mask of the run (an input function: see common.smk)."""
    return SETUP.mask_targets()


def expert_masks(wildcards):
    """The dataset's expert masks the QC compares with."""
    return SETUP.expert_inputs()


def prepared_infos(wildcards):
    """Every subject's prepared.json (the ADC unit the QC table lists)."""
    return [str(SETUP.prepared_info_path(sub)) for sub in SETUP.segmentation["targets"]]


def dwi_sources(wildcards):
    """The chosen DWI run with its .bval/.bvec, or the dataset's trace and ADC."""
    _target(wildcards)
    return SETUP.dwi_inputs(wildcards.sub)


def dwi_target_json(wildcards):
    """The subject's plan entry: a parameter, so a new choice reruns the subject."""
    return json.dumps(_target(wildcards), sort_keys=True)


def dwi_mem_mb(wildcards, attempt):
    """The DWI in memory (gzip ratio ~2-3 for int16 DWI) plus float32 work volumes;
    doubled, tripled... on each retry (an out-of-memory kill is retried with more).
    The size comes from the index (no stat of the inputs per job)."""
    return (500 + int(8 * SETUP.dwi_input_mb(wildcards.sub))) * attempt


def segment_sources(wildcards):
    """Prepared trace and ADC, the FLAIR when there is one, the image for deepisles."""
    _target(wildcards)
    if SETUP.mask_path(wildcards.sub) != _mask_output(wildcards):
        raise WorkflowError(
            f"{_mask_output(wildcards)} is not the mask the plan gives sub-{wildcards.sub}"
        )
    sub = wildcards.sub
    inputs = {"dwi": L.prepared_dwi(sub), "adc": L.prepared_adc(sub)}
    flair = SETUP.flair_input(wildcards.sub)
    if flair:
        inputs["flair"] = flair
    if SEGMENT_BACKEND == "deepisles":
        # The verified image's receipt; ancient: a re-pull reruns no subject.
        inputs["image_receipt"] = ancient(L.image_receipt)
    return inputs


def _mask_output(wildcards):
    return L.mask_pattern().format(sub=wildcards.sub, maskpath=wildcards.maskpath)


def segment_options(wildcards, input):
    """Backend-specific arguments of `bids2hub segment run`."""
    args = []
    if "flair" in input.keys():
        args.append(f"--flair {shlex.quote(input.flair)}")
    if SEGMENT_BACKEND == "deepisles":
        args.append(f"--image {shlex.quote(PLANS.deepisles_image)}")
        if DEEPISLES["fast"]:
            args.append("--fast")
        # Never without a FLAIR (DeepISLES crashes; checked at parse time).
        if DEEPISLES["skull_strip"] and "flair" in input.keys():
            args.append("--skull-strip")
        if DEEPISLES["brain_extract"]:
            args.append("--brain-extract")
    else:
        args.append(threshold_args())
    return " ".join(args)


def threshold_args():
    """The threshold backend's parameters (segmentation and its provenance)."""
    return (
        f"--adc-threshold {SEGMENT['adc_threshold']!r}"
        f" --min-lesion-ml {SEGMENT['min_lesion_ml']!r}"
    )


def segment_resources():
    """One GPU for DeepISLES; nothing special for the CPU backend.

    The GPU partition (and a GPU-type constraint) is the cluster profile's
    business: profiles/slurm sets them for segment_lesion.
    """
    if SEGMENT_BACKEND != "deepisles":
        return {"mem_mb": lambda wildcards, attempt: 2000 * attempt}
    return {
        "gpu": 1,
        "mem_mb": lambda wildcards, attempt: 16000 * attempt,
        "runtime": lambda wildcards, attempt: 60 * attempt,
    }


def description_params():
    """`bids2hub segment describe` arguments (deterministic content)."""
    if SEGMENT_BACKEND != "deepisles":
        return threshold_args()
    extract = " --brain-extract" if DEEPISLES["brain_extract"] else ""
    return f"--container-uri {shlex.quote(DEEPISLES['uri'])}{extract}"


def bids_root(wildcards):
    """The BIDS dataset (the rules read files below it by relative plan paths)."""
    return str(SETUP.bids_dir)

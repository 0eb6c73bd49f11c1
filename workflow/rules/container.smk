# The DeepISLES image: pulled once into a shared cache (login node: network),
# verified, and recorded in a receipt that the segmentation jobs depend on.
#
# The receipt, not the image, is the rule's output: Snakemake deletes a job's
# outputs before rerunning it (-F, -R, a changed rule), which must never cost
# a multi-GB download. A rerun re-verifies the cached image and reuses it.

from bids2hub.segment import deepisles as _deepisles

DEEPISLES = SETUP.config["segment"]["deepisles"]
DEEPISLES_IMAGE = str(_deepisles.image_path(SETUP.config))
DEEPISLES_RECEIPT = f"{OUT}/containers/deepisles-image.json"


rule pull_deepisles_image:
    output:
        receipt=DEEPISLES_RECEIPT,
    log:
        f"{OUT}/logs/pull_deepisles_image/pull_deepisles_image.log",
    benchmark:
        f"{OUT}/benchmarks/pull_deepisles_image/pull_deepisles_image.tsv"
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        image=DEEPISLES_IMAGE,
        uri=DEEPISLES["uri"],
        min_bytes=DEEPISLES["min_image_bytes"],
        given="--given" if _deepisles.image_given(SETUP.config) else "",
    shell:
        "python -m bids2hub pull-image --image {params.image:q} --uri {params.uri:q}"
        " --min-bytes {params.min_bytes} {params.given} --receipt {output.receipt:q}"
        " > {log:q} 2>&1"

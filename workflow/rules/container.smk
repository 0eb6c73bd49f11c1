# The DeepISLES image: pulled once into a shared cache (login node: network),
# verified, and recorded in a receipt that the segmentation jobs depend on.
#
# The receipt, not the image, is the rule's output: Snakemake deletes a job's
# outputs before rerunning it (-F, -R, a changed rule), which must never cost
# a multi-GB download. A rerun re-verifies the cached image and reuses it.

from bids2hub.segment import deepisles as _deepisles


rule pull_deepisles_image:
    output:
        receipt=L.image_receipt,
    log:
        L.log("pull_deepisles_image"),
    benchmark:
        L.benchmark("pull_deepisles_image")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        image=PLANS.deepisles_image,
        uri=SETUP.config["segment"]["deepisles"]["uri"],
        min_bytes=SETUP.config["segment"]["deepisles"]["min_image_bytes"],
        given="--given" if _deepisles.image_given(SETUP.config) else "",
    shell:
        "python -m bids2hub pull-image --image {params.image:q} --uri {params.uri:q}"
        " --min-bytes {params.min_bytes} {params.given} --receipt {output.receipt:q}"
        " > {log:q} 2>&1"

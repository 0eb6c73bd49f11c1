# The NiiVue viewer page: one self-contained HTML file (paper/viewer.html) with a
# subject's b~1000 trace and its lesion mask; the NiiVue bundle ships with the package
# (data/vendor/, pinned in envs/niivue/), its sha256 recorded in data/niivue.json.
# Which subjects: VIEWER (bids2hub.paper.viewer.ViewerPlan, built in the Snakefile);
# the job shows the one with the largest predicted lesion.


include: "viewer_common.smk"


rule render_viewer:
    input:
        unpack(viewer_inputs),
        # A re-vendored NiiVue (new version or bytes) rebuilds the page.
        manifest=str(NIIVUE_MANIFEST),
    output:
        html=str(VIEWER.output),
    log:
        L.log("render_viewer"),
    benchmark:
        L.benchmark("render_viewer")
    localrule: True
    conda:
        "../../envs/bids2hub.yaml"
    params:
        # Every segmented subject (or paper.viewer.subject): the job shows the one
        # with the largest predicted lesion, known only once the masks exist.
        candidates=VIEWER.candidates_json(),
    shell:
        "python -m bids2hub viewer --candidates {params.candidates:q}"
        " --output {output.html:q} > {log:q} 2>&1"

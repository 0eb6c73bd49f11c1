# The NiiVue viewer page: one self-contained HTML file (paper/viewer.html) with a
# subject's b~1000 trace and its lesion mask; the NiiVue bundle ships with the package
# (data/vendor/, pinned in envs/niivue/), its sha256 recorded in data/niivue.json.
# Which subject: VIEWER (bids2hub.paper.viewer.ViewerPlan, built in the Snakefile).


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
        subject=VIEWER.subject or "",
        session=VIEWER.session,
    shell:
        "python -m bids2hub viewer --dwi {input.dwi:q} --mask {input.mask:q}"
        " --subject {params.subject:q} --session={params.session:q}"
        " --output {output.html:q} > {log:q} 2>&1"

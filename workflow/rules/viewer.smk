# The NiiVue viewer page: one self-contained HTML file (paper/viewer.html) with a
# subject's b~1000 trace and its lesion mask; the NiiVue bundle comes from
# `make viewer-assets` (pinned in envs/niivue/), recorded in data/niivue.json.
# Which subject: bids2hub.viewer.ViewerPlan (paper.viewer.*), decided at parse time.
from bids2hub.viewer import MANIFEST as NIIVUE_MANIFEST
from bids2hub.viewer import ViewerPlan

try:
    VIEWER = ViewerPlan.from_setup(SETUP)
except Bids2HubError as exc:
    sys.exit(f"bids2hub: error: {exc}")


def viewer_targets():
    """paper/viewer.html, or nothing when disabled or no subject is segmented."""
    return VIEWER.targets()


def viewer_inputs(wildcards):
    """The trace and the mask of the viewer's subject."""
    try:
        return VIEWER.inputs()
    except Bids2HubError as exc:
        raise WorkflowError(str(exc)) from None


rule render_viewer:
    input:
        unpack(viewer_inputs),
        # A re-vendored NiiVue (new version or bytes) rebuilds the page.
        manifest=str(NIIVUE_MANIFEST),
    output:
        html=str(VIEWER.output),
    log:
        f"{OUT}/logs/render_viewer/render_viewer.log",
    benchmark:
        f"{OUT}/benchmarks/render_viewer/render_viewer.tsv"
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

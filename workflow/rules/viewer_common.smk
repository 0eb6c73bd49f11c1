# Helpers of rules/viewer.smk: the input function of the viewer's plan
# (VIEWER: bids2hub.paper.viewer.ViewerPlan, from paper.viewer.* and the
# segmentation plan, built in the Snakefile).
from bids2hub.paper.viewer import MANIFEST as NIIVUE_MANIFEST


def viewer_inputs(wildcards):
    """The traces and the masks of the viewer's candidate subjects."""
    try:
        return VIEWER.inputs()
    except Bids2HubError as exc:
        raise WorkflowError(str(exc)) from None

# Helpers of rules/viewer.smk: the viewer's plan (bids2hub.paper.viewer.ViewerPlan, from
# paper.viewer.* and the segmentation plan, decided at parse time) and its input function.
from bids2hub.paper.viewer import MANIFEST as NIIVUE_MANIFEST
from bids2hub.paper.viewer import ViewerPlan

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

# Helpers of rules/paper.smk: the plan (bids2hub.paper.plan) and input functions.
from bids2hub.paper.plan import PaperPlan
from bids2hub.paper.provenance import git_commit

try:
    PAPER = PaperPlan.from_setup(SETUP)
except Bids2HubError as exc:
    sys.exit(f"bids2hub: error: {exc}")

PAPER_DIR = str(PAPER.root)
PAPER_SUBJECTS = validation_subjects_arg()
# Everything else the run builds: the runtimes wait for it (and read its benchmarks).
PAPER_UPSTREAM = [
    *SETUP.shard_targets(),
    *SETUP.segment_targets(),
    *HUB.targets(),
    *validation_targets(),
]
# Hashed into provenance.json; report.json embeds the BIDS path: its hash goes to `run`.
PAPER_HASHED = [
    *SETUP.shard_targets(),
    *SETUP.segment_targets(),
    HUB.card,
    *HUB.masks_extra(),
    *PAPER.artifacts(),
]
PAPER_LOCATED = [HUB.report] if HUB.report else []
# The code's commit (None outside a git checkout): a new commit rewrites provenance.json.
PAPER_GIT = git_commit(Path(workflow.basedir)) or ""
if PAPER.enabled and workflow.is_main_process:
    PAPER.write_provenance_inputs(SETUP.config, PAPER_HASHED, PAPER_LOCATED)


def paper_targets():
    """Default targets of this stage (none with paper.enabled false)."""
    return PAPER.targets()


def paper_out_dir(wildcards, output):
    """out_dir, from an output directly under {out_dir}/paper/."""
    return str(Path(output[0]).parent.parent)


def paper_qc_inputs(wildcards):
    """A segmented subject's b~1000 trace and predicted mask."""
    if wildcards.sub not in PAPER.predicted:
        raise WorkflowError(
            f"sub-{wildcards.sub} has no predicted mask (not segmented)"
        )
    return {
        "trace": str(SETUP.prepared_dir(wildcards.sub) / "dwi.nii.gz"),
        "mask": PAPER.predicted[wildcards.sub],
    }

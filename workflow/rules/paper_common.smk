# Helpers of rules/paper.smk: the plan (bids2hub.paper.plan) and input functions.
import functools

from bids2hub.paper.plan import PaperPlan
from bids2hub.paper.provenance import git_commit

try:
    PAPER = PaperPlan.from_setup(SETUP)
except Bids2HubError as exc:
    sys.exit(f"bids2hub: error: {exc}")

PAPER_DIR = str(PAPER.root)
PAPER_SUBJECTS = validation_subjects_arg()
PAPER_LOCATED = [HUB.report] if HUB.report else []


def paper_experts(wildcards):
    """The run's expert masks (an input function: a cluster job's parse skips the lookup)."""
    return list(PAPER.experts)


def paper_upstream(wildcards):
    """Everything else the run builds: the runtimes wait for it (and read its benchmarks).

    An input function, so that a cluster job's parse does not list every session."""
    return [
        *SETUP.shard_targets(),
        *SETUP.segment_targets(),
        *HUB.targets(),
        *validation_targets(),
    ]


def paper_hashed(wildcards):
    """Hashed into provenance.json (report.json embeds the BIDS path: its hash goes to `run`)."""
    return [
        *SETUP.shard_targets(),
        *SETUP.segment_targets(),
        HUB.card,
        *HUB.masks_extra(),
        *PAPER.artifacts(),
    ]


@functools.cache
def paper_git(wildcards=None):
    """The code's commit ('' outside a git checkout): a new commit rewrites provenance.json.

    Asked only when the provenance job is scheduled, not on every parse."""
    return (git_commit(Path(WORKFLOW_DIR)) if WORKFLOW_DIR else "") or ""


if PAPER.enabled and workflow.is_main_process:
    PAPER.write_provenance_inputs(SETUP.config, paper_hashed(None), PAPER_LOCATED)


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

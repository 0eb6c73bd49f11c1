# Helpers of rules/paper.smk: input functions of the paper's plan (PAPER:
# bids2hub.paper.plan.PaperPlan, built in the Snakefile; it reads the other
# stages through their plans, HUB and VALIDATION).
import functools
import json
import shlex

from bids2hub.paper.provenance import git_commit


def paper_experts(wildcards):
    """The run's expert masks (an input function: a cluster job's parse skips the lookup)."""
    return list(PAPER.experts)


def paper_upstream(wildcards):
    """Everything else the run builds: the runtimes wait for it (and read its benchmarks).

    An input function, so that a cluster job's parse does not list every session."""
    return PAPER.upstream()


def paper_hashed(wildcards):
    """Hashed into provenance.json (report.json embeds the BIDS path: its hash goes to `run`)."""
    return PAPER.hashed()


@functools.cache
def paper_git(wildcards=None):
    """The code's commit ('' outside a git checkout): a new commit rewrites provenance.json.

    Asked only when the provenance job is scheduled, not on every parse."""
    return (git_commit(Path(WORKFLOW_DIR)) if WORKFLOW_DIR else "") or ""


def paper_qc_inputs(wildcards):
    """A segmented subject's b~1000 trace and predicted mask."""
    if wildcards.sub not in PAPER.predicted:
        raise WorkflowError(
            f"sub-{wildcards.sub} has no predicted mask (not segmented)"
        )
    return {
        "trace": L.prepared_dwi(wildcards.sub),
        "mask": PAPER.predicted[wildcards.sub],
    }

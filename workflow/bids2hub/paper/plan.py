"""Parse-time plan of the paper stage: paths, targets and the provenance's input list.

Decided once per parse from :class:`bids2hub.plan.WorkflowSetup` (the expert
masks, one pass over the index, only when a rule asks for them), so the rules of ``paper.smk`` stay
thin and their input functions O(1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bids2hub.fsutil import write_if_changed
from bids2hub.layout import FIGURES, Layout
from bids2hub.paper.cohort import expert_masks
from bids2hub.paper.provenance import scrub

#: Figures of the deterministic artifacts (the runtimes' figure is measured).
_ARTIFACT_FIGURES = tuple(f for f in FIGURES if f != "runtimes")


@dataclass(frozen=True)
class PaperPlan:
    """Where the paper artifacts go and what they read.

    The other stages are read through their plans only: ``hub`` (the card, the masks
    table, the push) and ``validation`` (the report, which embeds the run's paths).
    """

    layout: Layout
    enabled: bool
    qc_overlays: bool
    phenotype: dict[str, str]
    predicted: dict[str, str]  # subject -> predicted mask (absolute)
    image_receipt: str | None  # the DeepISLES image's record (backend deepisles)
    setup: Any = field(default=None, repr=False, compare=False)
    hub: Any = field(default=None, repr=False, compare=False)
    validation: Any = field(default=None, repr=False, compare=False)

    @cached_property
    def experts(self) -> tuple[str, ...]:
        """Absolute paths of the run's expert masks.

        Looked up only when a rule asks (through an input function): it reads every
        session's index records, which a cluster job's parse must not pay.
        """
        manifest = self.setup.manifest
        keys = list(self.setup.shards.values())
        return tuple(str(manifest.absolute(r)) for r in expert_masks(manifest, keys))

    @classmethod
    def from_setup(cls, setup: Any, *, hub: Any, validation: Any | None) -> PaperPlan:
        """The plan of a run.

        Parameters
        ----------
        setup
            The :class:`bids2hub.plan.WorkflowSetup` (config, index, segmentation plan).
        hub
            The publishing stage's :class:`bids2hub.hub.publish.HubPlan`.
        validation
            The validation stage's plan, or None without that stage.
        """
        cfg = setup.config["paper"]
        layout = setup.layout
        predicted = {sub: setup.mask_path(sub) for sub in setup.segmentation["targets"]}
        deepisles = setup.config["segment"]["backend"] == "deepisles"
        return cls(
            layout=layout,
            enabled=bool(cfg["enabled"]),
            qc_overlays=bool(cfg["qc_overlays"]),
            phenotype=dict(cfg["phenotype"]),
            predicted=predicted,
            image_receipt=layout.image_receipt if deepisles else None,
            setup=setup,
            hub=hub,
            validation=validation,
        )

    # ------------------------------------------------------------- paths

    @property
    def root(self) -> str:
        """The paper folder."""
        return self.layout.paper_dir

    def figure(self, stem: str, ext: str) -> str:
        """A figure (``ext``: png or svg)."""
        return self.layout.figure(stem, ext)

    def figures(self, *stems: str) -> list[str]:
        """PNG and SVG of each stem."""
        return [self.figure(s, e) for s in stems for e in ("png", "svg")]

    def qc_overlay(self, sub: str) -> str:
        """A segmented subject's QC figure."""
        return self.layout.qc_overlay(sub)

    def qc_targets(self) -> list[str]:
        """One overlay per segmented subject (when enabled)."""
        return [self.qc_overlay(s) for s in self.predicted] if self.qc_overlays else []

    @property
    def provenance_inputs(self) -> str:
        """Parse-time record of the resolved config and the outputs to hash."""
        return self.layout.provenance_inputs

    @property
    def hash_cache(self) -> str:
        """Hashes of the outputs by (size, mtime, inode), between runs."""
        return self.layout.paper_hash_cache

    def artifacts(self) -> list[str]:
        """The deterministic paper artifacts (everything but runtimes and provenance)."""
        L = self.layout
        return [
            L.cohort_tsv,
            L.cohort_md,
            L.lesion_volumes,
            L.overlap_nifti,
            *self.figures(*_ARTIFACT_FIGURES),
            *self.qc_targets(),
        ]

    def runtimes(self) -> list[str]:
        """runtimes.tsv and its figure."""
        return [self.layout.runtimes, *self.figures("runtimes")]

    def targets(self) -> list[str]:
        """What ``rule all`` builds of this stage (nothing when disabled)."""
        if not self.enabled:
            return []
        return [*self.artifacts(), *self.runtimes(), self.layout.provenance]

    # ------------------------------------------------- the other stages

    def upstream(self) -> list[str]:
        """Everything else the run builds: the runtimes wait for it (and read its benchmarks)."""
        return [
            *self.setup.shard_targets(),
            *self.setup.segment_targets(),
            *self.hub.targets(),
            *(self.validation.targets() if self.validation is not None else []),
        ]

    def hashed(self) -> list[str]:
        """Hashed into provenance.json: outputs whose bytes depend only on the inputs."""
        return [
            *self.setup.shard_targets(),
            *self.setup.segment_targets(),
            self.hub.card,
            *self.hub.masks_extra(),
            *self.artifacts(),
        ]

    def located(self) -> list[str]:
        """Outputs that embed the run's absolute paths (the report: its hash goes to ``run``)."""
        return [self.validation.report] if self.validation is not None else []

    # -------------------------------------------------------- provenance

    def write_provenance_inputs(self) -> None:
        """Write the provenance rule's input record (only when it changes).

        ``outputs``: :meth:`hashed`; ``located``: :meth:`located` (their hashes go to ``run``).
        """
        record = {
            "config": scrub(self.setup.config),
            "outputs": sorted(self.hashed()),
            "located": sorted(self.located()),
        }
        text = json.dumps(
            record,
            indent=1,
            sort_keys=True,
            default=str,
        )
        write_if_changed(Path(self.provenance_inputs), text + "\n")

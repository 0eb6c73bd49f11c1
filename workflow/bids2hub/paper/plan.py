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
from bids2hub.paper import PAPER
from bids2hub.paper.cohort import expert_masks
from bids2hub.paper.provenance import scrub


@dataclass(frozen=True)
class PaperPlan:
    """Where the paper artifacts go and what they read."""

    out_dir: Path
    enabled: bool
    qc_overlays: bool
    phenotype: dict[str, str]
    predicted: dict[str, str]  # subject -> predicted mask (absolute)
    setup: Any = field(default=None, repr=False, compare=False)

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
    def from_setup(cls, setup: Any) -> PaperPlan:
        """The plan of a run (``setup`` is the Snakefile's SETUP)."""
        cfg = setup.config["paper"]
        predicted = {sub: setup.mask_path(sub) for sub in setup.segmentation["targets"]}
        return cls(
            out_dir=Path(setup.out_dir),
            enabled=bool(cfg["enabled"]),
            qc_overlays=bool(cfg["qc_overlays"]),
            phenotype=dict(cfg["phenotype"]),
            predicted=predicted,
            setup=setup,
        )

    # ------------------------------------------------------------- paths

    @property
    def root(self) -> Path:
        """``{out_dir}/paper``."""
        return self.out_dir / PAPER

    def path(self, name: str) -> str:
        """A file under paper/."""
        return str(self.root / name)

    def figure(self, stem: str, ext: str) -> str:
        """``paper/figures/<stem>.<ext>``."""
        return str(self.root / "figures" / f"{stem}.{ext}")

    def figures(self, *stems: str) -> list[str]:
        """PNG and SVG of each stem."""
        return [self.figure(s, e) for s in stems for e in ("png", "svg")]

    def qc_overlay(self, sub: str) -> str:
        """``paper/qc/sub-<label>.png``."""
        return str(self.root / "qc" / f"sub-{sub}.png")

    def qc_targets(self) -> list[str]:
        """One overlay per segmented subject (when enabled)."""
        return [self.qc_overlay(s) for s in self.predicted] if self.qc_overlays else []

    @property
    def provenance_inputs(self) -> str:
        """Parse-time record of the resolved config and the outputs to hash."""
        return str(self.out_dir / "work" / PAPER / "provenance-inputs.json")

    @property
    def hash_cache(self) -> str:
        """Hashes of the outputs by (size, mtime, inode), between runs."""
        return str(self.out_dir / "work" / PAPER / "output-hashes.json")

    def artifacts(self) -> list[str]:
        """The deterministic paper artifacts (everything but runtimes and provenance)."""
        return [
            self.path("cohort.tsv"),
            self.path("cohort.md"),
            self.path("lesion_volumes.tsv"),
            self.path("lesion_overlap.nii.gz"),
            *self.figures("sessions", "lesion_volumes", "volume_agreement", "lesion_overlap"),
            *self.qc_targets(),
        ]

    def runtimes(self) -> list[str]:
        """runtimes.tsv and its figure."""
        return [self.path("runtimes.tsv"), *self.figures("runtimes")]

    def targets(self) -> list[str]:
        """What ``rule all`` builds of this stage (nothing when disabled)."""
        if not self.enabled:
            return []
        return [*self.artifacts(), *self.runtimes(), self.path("provenance.json")]

    # -------------------------------------------------------- provenance

    def write_provenance_inputs(
        self, config: dict[str, Any], hashed: list[str], located: list[str]
    ) -> None:
        """Write the provenance rule's input record (only when it changes).

        ``hashed``: outputs whose bytes depend only on the inputs; ``located``:
        outputs that embed the run's absolute paths (their hashes go to ``run``).
        """
        text = json.dumps(
            {"config": scrub(config), "outputs": sorted(hashed), "located": sorted(located)},
            indent=1,
            sort_keys=True,
            default=str,
        )
        write_if_changed(Path(self.provenance_inputs), text + "\n")

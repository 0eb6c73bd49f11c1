"""Parse-time plan of the publishing stage (rules/hub.smk): paths, optional inputs, targets.

Kept out of the Snakefile so that the rules stay thin. Everything here is
decided once per parse from files that exist at parse time (the segmentation
plan) and from the validation stage's plan object, so it is O(1) per job.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids2hub.hub.push import check_push_config
from bids2hub.hub.restore import dataset_level_files
from bids2hub.layout import Layout


@dataclass(frozen=True)
class HubPlan:
    """What the publishing rules read and write."""

    layout: Layout
    plan: str
    masks: tuple[str, ...]
    report: str | None
    qc: str | None
    passed: str | None
    push: bool
    bids_dir: Path
    bids_description: str
    columns: str
    dataset_files: tuple[str, ...]  # the source's dataset-level files, copied under hub/
    preview: bool  # the card lists the preview configuration, the push sends it
    repo_id: str
    n_subjects: int
    n_sessions: int

    @classmethod
    def from_setup(cls, setup: Any, *, validation: Any | None) -> HubPlan:
        """The plan for a :class:`bids2hub.plan.WorkflowSetup`.

        Parameters
        ----------
        setup
            The parse-time set-up (config, shards, paths).
        validation
            The validation stage's plan (:class:`bids2hub.validate.plan.ValidationPlan`),
            or None without that stage: the card then has no counts, the push no gate.

        Raises
        ------
        ConfigError
            ``hub.push`` is true without ``hub.repo_id``.
        """
        hub_cfg = setup.config["hub"]
        push = check_push_config(hub_cfg)
        layout = setup.layout
        return cls(
            layout=layout,
            plan=layout.segmentation,
            masks=tuple(setup.mask_targets()),
            report=validation.report if validation is not None else None,
            passed=validation.passed if validation is not None else None,
            qc=layout.qc_table if setup.segmentation["targets"] else None,
            push=push,
            bids_dir=Path(setup.bids_dir),
            bids_description=str(setup.bids_description),
            columns=layout.columns,
            dataset_files=tuple(dataset_level_files(setup.bids_dir)),
            preview=bool(setup.config["preview"]["enabled"]) and bool(setup.shards),
            repo_id=hub_cfg["repo_id"] or "",
            n_subjects=len({sub for sub, _ in setup.shards.values()}),
            n_sessions=len(setup.shards),
        )

    @property
    def hub_dir(self) -> str:
        """The folder that is pushed."""
        return self.layout.hub_dir

    @property
    def masks_description(self) -> str:
        """The masks' derivative dataset_description.json."""
        return self.layout.masks_description

    @property
    def masks_table(self) -> str:
        """The masks as one parquet table."""
        return self.layout.masks_table

    @property
    def card(self) -> str:
        """The dataset card."""
        return self.layout.card

    @property
    def receipt(self) -> str:
        """The push's receipt."""
        return self.layout.receipt

    def dataset_file_sources(self) -> list[str]:
        """The source dataset's dataset-level files."""
        return [str(self.bids_dir / name) for name in self.dataset_files]

    def dataset_file_targets(self) -> list[str]:
        """Their copies under hub/, pushed with the shards (``bids2hub restore`` reads them)."""
        return [self.layout.dataset_file(name) for name in self.dataset_files]

    def preview_targets(self) -> list[str]:
        """The preview table and its thumbnail (nothing when disabled)."""
        return [self.layout.preview_table, self.layout.preview_thumbnail] if self.preview else []

    def card_inputs(self) -> dict[str, str]:
        """Inputs of the card: source description, column map and the optional stages."""
        inputs = {"description": self.bids_description, "columns": self.columns}
        if self.report:
            inputs["report"] = self.report
        if self.masks:
            inputs["masks_description"] = self.masks_description
            inputs["masks_table"] = self.masks_table
        if self.qc:
            inputs["qc"] = self.qc
        return inputs

    def card_args(self) -> str:
        """Command-line arguments of ``bids2hub dataset-card`` for the optional inputs."""
        args = []
        if self.report:
            args += ["--report", self.report]
        if self.masks:
            args += ["--masks-description", self.masks_description]
        if self.qc:
            args += ["--qc", self.qc]
        return shlex.join(args)

    def validation_gate(self) -> list[str]:
        """The validation's pass mark when that stage exists (the push waits for it)."""
        return [self.passed] if self.passed else []

    def masks_extra(self) -> list[str]:
        """The masks table and description (push inputs) when there are masks."""
        return [self.masks_table, self.masks_description] if self.masks else []

    def targets(self) -> list[str]:
        """What ``rule all`` builds of this stage."""
        targets = [self.card]
        if self.masks:
            targets.append(self.masks_table)
        if self.push:
            targets.append(self.receipt)
        return targets

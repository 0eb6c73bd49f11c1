"""Parse-time plan of the publishing stage (rules/hub.smk): paths, optional inputs, targets.

Kept out of the Snakefile so that the rules stay thin. Everything here is
decided once per parse from files that exist at parse time (the segmentation
plan) and from which rules the workflow defines, so it is O(1) per job.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids2hub.hub.push import RECEIPT_NAME, check_push_config
from bids2hub.layout import DERIVATIVE, TABLE


@dataclass(frozen=True)
class HubPlan:
    """What the publishing rules read and write."""

    hub_dir: Path
    plan: Path
    masks: tuple[str, ...]
    report: str | None
    qc: str | None
    push: bool
    bids_description: str
    columns: str
    repo_id: str
    n_subjects: int
    n_sessions: int

    @classmethod
    def from_setup(cls, setup: Any, *, has_validation_report: bool) -> HubPlan:
        """The plan for a :class:`bids2hub.plan.WorkflowSetup`.

        Parameters
        ----------
        setup
            The parse-time set-up (config, shards, paths).
        has_validation_report
            Whether a rule writes ``validation/report.json`` (the card then reads its counts).

        Raises
        ------
        ConfigError
            ``hub.push`` is true without ``hub.repo_id``.
        """
        hub_cfg = setup.config["hub"]
        push = check_push_config(hub_cfg)
        out = Path(setup.out_dir)
        hub = out / "hub"
        plan = out / "index" / "segmentation.json"
        masks = tuple(setup.mask_targets())
        return cls(
            hub_dir=hub,
            plan=plan,
            masks=masks,
            report=str(out / "validation" / "report.json") if has_validation_report else None,
            qc=str(setup.qc_path) if masks else None,
            push=push,
            bids_description=str(Path(setup.bids_dir) / "dataset_description.json"),
            columns=str(setup.columns_path),
            repo_id=hub_cfg.get("repo_id") or "",
            n_subjects=len({sub for sub, _ in setup.shards.values()}),
            n_sessions=len(setup.shards),
        )

    @property
    def masks_description(self) -> str:
        """The masks' derivative dataset_description.json (interface 2)."""
        return str(self.hub_dir / DERIVATIVE / "dataset_description.json")

    @property
    def masks_table(self) -> str:
        """``hub/masks/masks.parquet``."""
        return str(self.hub_dir / TABLE)

    @property
    def card(self) -> str:
        """``hub/README.md``."""
        return str(self.hub_dir / "README.md")

    @property
    def receipt(self) -> str:
        """``hub/.push-receipt.json``."""
        return str(self.hub_dir / RECEIPT_NAME)

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
        """``validation/passed`` when the validation stage exists (the push waits for it)."""
        return [str(Path(self.report).with_name("passed"))] if self.report else []

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

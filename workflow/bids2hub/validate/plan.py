"""Parse-time plan of the validation stage (rules/validate.smk): its paths and options.

Other stages read the validation stage through this object only: the card reads the
report's counts, the push waits for :attr:`ValidationPlan.passed`, the paper records
the report's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bids2hub.layout import CheckFiles, Layout


@dataclass(frozen=True)
class ValidationPlan:
    """Where the validation stage writes and how it judges."""

    layout: Layout
    subjects: tuple[str, ...]  # empty: every subject of the dataset
    count_tolerance: int
    tolerate_validator_errors: bool

    @classmethod
    def from_setup(cls, setup: Any) -> ValidationPlan:
        """The plan for a :class:`bids2hub.plan.WorkflowSetup`."""
        cfg = setup.config["validation"]
        return cls(
            layout=setup.layout,
            subjects=tuple(setup.config["subjects"] or ()),
            count_tolerance=cfg["count_tolerance"],
            tolerate_validator_errors=cfg["tolerate_validator_errors"],
        )

    @property
    def report(self) -> str:
        """The machine-readable report (its counts go into the dataset card)."""
        return self.layout.report_json

    @property
    def passed(self) -> str:
        """Written only when no hard check failed (the push waits for it)."""
        return self.layout.validation_passed

    @property
    def checks(self) -> CheckFiles:
        """The per-session results and the validator's result the aggregates read."""
        return self.layout.checks()

    def targets(self) -> list[str]:
        """What ``rule all`` builds of this stage: the check that fails on hard failures."""
        return [self.passed]

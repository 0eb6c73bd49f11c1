"""Paper artifacts: the cohort table, lesion volumes, figures, runtimes and provenance.

Everything is written under ``{out_dir}/paper/`` by the rules of
``workflow/rules/paper.smk``. Apart from the runtimes (measured) and the ``run``
field of ``provenance.json`` (when and where), the same inputs give the same bytes.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``PHENOTYPE_DEFAULTS``: Table 1 phenotype roles -> participants.tsv columns, the
    schema's defaults of ``paper.phenotype`` (ARC's names), read when first asked."""
    if name == "PHENOTYPE_DEFAULTS":
        from bids2hub.config import schema_defaults

        return schema_defaults("paper", "phenotype")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

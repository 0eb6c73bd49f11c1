"""Paper artifacts: the cohort table, lesion volumes, figures, runtimes and provenance.

Everything is written under ``{out_dir}/paper/`` by the rules of
``workflow/rules/paper.smk``. Apart from the runtimes (measured) and the ``run``
field of ``provenance.json`` (when and where), the same inputs give the same bytes.
"""

from __future__ import annotations

#: Sub-folder of out_dir holding the artifacts.
PAPER = "paper"
#: Figures written as PNG and SVG (stem names under paper/figures/).
FIGURES = ("sessions", "lesion_volumes", "volume_agreement", "lesion_overlap", "runtimes")
#: Table 1 phenotype roles and the participants.tsv columns they default to (ARC's names).
PHENOTYPE_DEFAULTS = {
    "age": "age_at_stroke",
    "sex": "sex",
    "race": "race",
    "wab_aq": "wab_aq",
    "days": "wab_days",
}

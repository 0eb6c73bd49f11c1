"""The dataset card: front matter the Hub and datasets read, text, determinism."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import datasets
import pytest
import yaml
from bids2hub import __version__
from bids2hub.hub.card import hub_license, load_card_inputs, render_card
from bids2hub.segment.masks import read_generator
from bids2hub.shards.colmap import load_map

from tests.conftest import REPO as CHECKOUT

DIGEST = "sha256:" + "52f7ec71c60d50b94710f04b5e4558966060a68068fed463f665880664a783a8"


def _inputs(tmp_path: Path, *, report: bool, masks: bool):
    desc = tmp_path / "dataset_description.json"
    desc.write_text(
        json.dumps(
            {
                "Name": "Aphasia Recovery Cohort (ARC)",
                "License": "CC0",
                "Authors": ["Gibson M", "Newman-Norlund R"],
                "DatasetDOI": "doi:10.18112/openneuro.ds004884.v1.0.1",
                "HowToAcknowledge": "Please cite Gibson et al. (2024), Scientific Data.",
                "ReferencesAndLinks": ["https://doi.org/10.1038/s41597-024-03819-7"],
            }
        )
    )
    columns = tmp_path / "columns.json"
    columns.write_text(load_map(CHECKOUT / "config/datasets/ds004884.yaml").to_json())
    rep = tmp_path / "report.json"
    rep.write_text(
        json.dumps(
            {
                "version": 1,
                "status": "pass",
                "validator": {"version": "2.0.0"},
                "counts": [
                    {"name": "n_subjects", "expected": 230, "found": 230, "status": "ok"},
                    {"name": "n_sessions", "expected": 902, "found": 902, "status": "ok"},
                ],
            }
        )
    )
    mdesc = tmp_path / "masks_description.json"
    mdesc.write_text(
        json.dumps(
            {
                "Name": "DeepISLES masks",
                "GeneratedBy": [
                    {
                        "Name": "DeepISLES",
                        "Version": "1.1",
                        "Container": {
                            "Type": "apptainer",
                            "URI": f"docker://isleschallenge/deepisles@{DIGEST}",
                        },
                    }
                ],
            }
        )
    )
    return load_card_inputs(
        bids_description=desc,
        columns=columns,
        repo_id="org/arc",
        n_subjects=230,
        n_sessions=902,
        report=rep if report else None,
        masks_description=mdesc if masks else None,
        n_masks=3 if masks else 0,
    )


def _front(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_card_front_matter_text_and_citations(tmp_path: Path) -> None:
    card = render_card(_inputs(tmp_path, report=True, masks=True))
    meta = _front(card)
    assert meta["license"] == "cc0-1.0"
    assert meta["pretty_name"] == "Aphasia Recovery Cohort (ARC)"
    assert [c["config_name"] for c in meta["configs"]] == ["default", "masks"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/**/*.parquet"}]
    assert meta["configs"][1]["data_files"] == [{"split": "train", "path": "masks/masks.parquet"}]
    infos = {i["config_name"]: i["features"] for i in meta["dataset_info"]}
    feats = datasets.Features._from_yaml_list(infos["default"])
    assert list(feats)[:4] == ["subject_id", "session_id", "t1w", "t2w"]
    assert isinstance(feats["lesion"], datasets.Nifti)
    assert isinstance(
        datasets.Features._from_yaml_list(infos["masks"])["lesion_mask"], datasets.Nifti
    )
    assert "stroke" in meta["tags"] and "nifti" in meta["tags"]
    # text: counts from the report, columns, loading, citations, provenance
    assert "| n_sessions | 902 | 902 | ok |" in card and "**pass**" in card
    assert "| `t1w` | list<Nifti> |" in card and "| `wab_aq` | float32 |" in card
    assert 'load_dataset("org/arc", split="train", streaming=True)' in card
    assert 'load_dataset("org/arc", "masks", split="train")' in card
    assert "https://doi.org/10.18112/openneuro.ds004884.v1.0.1" in card
    assert "Gibson et al. (2024)" in card and "DeepISLES: a clinically validated" in card
    assert "Nature Communications (2025)" in card
    assert f"bids2hub {__version__}" in card and DIGEST in card


def test_card_without_report_or_masks(tmp_path: Path) -> None:
    card = render_card(_inputs(tmp_path, report=False, masks=False))
    meta = _front(card)
    assert [c["config_name"] for c in meta["configs"]] == ["default"]
    assert "| n_subjects | 230 |" in card and "| n_sessions | 902 |" in card
    assert "masks" not in card.split("## Loading")[1].split("## Citation")[0]
    assert "DeepISLES" not in card


def test_card_says_which_masks_exist_how_many_are_empty_and_how_well_they_agree(
    tmp_path: Path,
) -> None:
    """SOOP: acute and combined expert masks, one flagged empty DeepISLES mask."""
    from bids2hub.segment.qc import QcRow, qc_table

    base = _inputs(tmp_path, report=True, masks=True)
    columns = tmp_path / "soop.json"
    columns.write_text(load_map(CHECKOUT / "config/datasets/ds004889.yaml").to_json())
    qc = tmp_path / "segmentation.tsv"
    qc.write_text(
        qc_table(
            [
                QcRow("1", "", "deepisles", 10.0, 12.0, 0.8, "lesionAcute", (("lesion", 0.7),)),
                QcRow("2", "", "deepisles", 8.0, 8.0, 0.9, "lesionAcute", (("lesion", 0.9),)),
                QcRow("1002", "", "deepisles", 0.0),
            ]
        )
    )
    inputs = load_card_inputs(
        bids_description=tmp_path / "dataset_description.json",
        columns=columns,
        repo_id="org/soop",
        n_subjects=3,
        n_sessions=3,
        masks_description=tmp_path / "masks_description.json",
        n_masks=3,
        qc=qc,
    )
    card = render_card(inputs)
    section = card.split("## Lesion masks and their agreement")[1].split("## Columns")[0]
    assert "Stroke Outcome Optimization Project (SOOP): 3 predicted mask(s)" in section
    assert "1 empty, 1 flagged for review" in section
    assert "(primary first): `desc-lesionAcute`, `desc-lesion`." in section
    assert "| desc-lesionAcute | 2 | 0.850 | 0.825-0.875 |" in section
    assert "| desc-lesion | 2 | 0.800 | 0.750-0.850 |" in section
    assert "## Lesion masks and their agreement" not in render_card(base)  # no QC table given


def test_card_is_deterministic(tmp_path: Path) -> None:
    a = render_card(_inputs(tmp_path, report=True, masks=True))
    b = render_card(_inputs(tmp_path, report=True, masks=True))
    assert a == b
    assert "2025-" not in a.replace("(2025)", "")  # no dates beyond the citation year


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("CC0", ("cc0-1.0", None)),
        ("CC BY 4.0", ("cc-by-4.0", None)),
        ("PDDL", ("pddl", None)),
        ("Custom data use agreement", ("other", "Custom data use agreement")),
        (None, ("unknown", None)),
    ],
)
def test_hub_license(value: str | None, expected: tuple[str, str | None]) -> None:
    assert hub_license(value) == expected


def test_card_refuses_a_report_of_another_shape(tmp_path: Path) -> None:
    from bids2hub.errors import ValidationError

    _inputs(tmp_path, report=True, masks=False)  # writes the files
    rep = tmp_path / "report.json"
    data = json.loads(rep.read_text())
    data["counts"][0].pop("found")
    rep.write_text(json.dumps(data))
    with pytest.raises(ValidationError) as err:
        load_card_inputs(
            bids_description=tmp_path / "dataset_description.json",
            columns=tmp_path / "columns.json",
            repo_id="org/arc",
            n_subjects=230,
            n_sessions=902,
            report=rep,
        )
    assert str(err.value) == (
        f"{rep}: not a validation report of this layout (counts[0].found is missing)"
    )


def test_threshold_masks_are_described_with_the_parameters_they_were_made_with(
    tmp_path: Path,
) -> None:
    """The card quotes the masks' own GeneratedBy description, not a fixed threshold."""
    from bids2hub.segment.run import description_json

    inputs = _inputs(tmp_path, report=True, masks=True)
    desc = tmp_path / "masks_description.json"
    desc.write_text(
        description_json("threshold", {"Name": "ARC"}, adc_threshold=550e-6, min_lesion_ml=0.5)
    )
    inputs = dataclasses.replace(inputs, masks=read_generator(desc))
    card = render_card(inputs)
    assert "CPU threshold segmenter of bids2hub (ADC below 550e-6 mm^2/s" in card
    assert "smaller than 0.5 mL removed)" in card and "620e-6" not in card

"""The dataset card, ``{out_dir}/hub/README.md``: YAML front matter and a text for people.

The front matter carries the license (from the source dataset's
``dataset_description.json``), the ``configs`` (``default``: the shards
``data/**/*.parquet``; ``masks``: ``masks/masks.parquet`` when masks exist),
the features of each config (the same ``datasets`` features the parquet
files carry) and tags. The text says what the data is, lists the columns
with their types and meaning, gives the counts of the validation report,
shows how to load it and cites the source dataset and DeepISLES. The card
is deterministic: no dates, everything sorted, so an unchanged dataset gives
byte-identical bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bids2hub import __version__
from bids2hub.errors import BidsError
from bids2hub.hub.preview import preview_config, preview_features, preview_section
from bids2hub.layout import DERIVATIVE, RELATIVE, SHARDS, SHARDS_GLOB
from bids2hub.layout import TABLE as MASK_TABLE
from bids2hub.segment.masks import DESCRIPTIONS as MASK_DESCRIPTIONS
from bids2hub.segment.masks import FEATURES as MASK_FEATURES
from bids2hub.segment.masks import Generator, read_generator
from bids2hub.shards.colmap import Column, ColumnMap, sidecar_name
from bids2hub.shards.writer import shard_schema
from bids2hub.validate.model import CountLine, ReportStatus, load_report

DEEPISLES_CITATION = (
    "de la Rosa E, Reyes M, Liew S-L, et al. DeepISLES: a clinically validated ischemic "
    "stroke segmentation model from the ISLES'22 challenge. Nature Communications (2025)."
)
DEEPISLES_URL = "https://github.com/ezequieldlrosa/DeepIsles"
# BIDS `License` values -> Hub license identifiers.
_LICENSES = {
    "cc0": "cc0-1.0",
    "cc0-1.0": "cc0-1.0",
    "pd": "cc0-1.0",
    "pddl": "pddl",
    "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "odc-by": "odc-by",
    "odbl": "odbl",
    "apache-2.0": "apache-2.0",
    "mit": "mit",
}


@dataclass(frozen=True)
class CardInputs:
    """Everything the card is made from."""

    description: dict[str, Any]  # source dataset_description.json
    cmap: ColumnMap
    repo_id: str | None
    n_subjects: int
    n_sessions: int
    counts: list[CountLine] | None = None  # validation report `counts`
    report_status: ReportStatus | None = None
    masks: Generator | None = None  # None: no masks table
    n_masks: int = 0
    preview: bool = False  # the preview configuration (hub/preview/) is published
    qc: dict[str, Any] | None = None  # bids2hub.segment.qc.summarize_qc of qc/segmentation.tsv


def hub_license(value: str | None) -> tuple[str, str | None]:
    """The Hub ``license`` id for a BIDS ``License`` value, and the original when it is 'other'."""
    key = re.sub(r"[\s_]+", "-", (value or "").strip().lower())
    if key in _LICENSES:
        return _LICENSES[key], None
    return ("other", value.strip()) if value and value.strip() else ("unknown", None)


def _size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < bound:
            return label
    return "100K<n<1M"


def _yaml_features(features: dict[str, Any]) -> list[dict[str, Any]]:
    import datasets

    return datasets.Features.from_dict(features)._to_yaml_list()


def _type_name(feature: dict[str, Any]) -> str:
    if feature.get("_type") == "List":
        return f"list<{_type_name(feature['feature'])}>"
    if feature.get("_type") == "Nifti":
        return "Nifti"
    return str(feature.get("dtype", feature.get("_type", "?")))


def _select_text(col: Column) -> str:
    sel = dict(col.select)
    scope = sel.pop("scope", "raw")
    parts = [f"{k}-{v}" for k, v in sorted(sel.items()) if k not in ("datatype", "suffix")]
    what = "/".join(x for x in (sel.get("datatype"), sel.get("suffix")) if x) or "image"
    where = "" if scope == "raw" else f" from `{scope}`"
    ents = f" ({', '.join(parts)})" if parts else ""
    return f"`{what}`{ents}{where}"


def column_meaning(col: Column) -> str:
    """One line saying what a shard column holds."""
    if col.description:
        return col.description
    if col.kind == "subject":
        return "subject label, `sub-<label>`"
    if col.kind == "session":
        return "session label, `ses-<label>` (null for datasets without sessions)"
    if col.kind == "images":
        return f"every {_select_text(col)} run of the session, in scan order (`.nii.gz` bytes)"
    if col.kind == "image":
        return f"the session's {_select_text(col)} image, or null (`.nii.gz` bytes)"
    if col.kind == "companion":
        return f"text of the `{col.extension}` file of each `{col.of}` run, aligned with it"
    if col.kind == "entity":
        return f"`{col.entity}` entity of the first `{col.of}` run"
    if col.kind == "phenotype":
        return f"`{col.source}` from participants.tsv"
    return col.kind


def _front_matter(inp: CardInputs, features: dict[str, Any]) -> dict[str, Any]:
    license_id, license_name = hub_license(inp.description.get("License"))
    tags = ["bids", "mri", "neuroimaging", "nifti", "medical"]
    if inp.masks is not None:
        tags += ["lesion-segmentation", "stroke"]
    configs: list[dict[str, Any]] = [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": SHARDS_GLOB}],
            "default": True,
        }
    ]
    infos: list[dict[str, Any]] = [{"config_name": "default", "features": _yaml_features(features)}]
    if inp.masks is not None:
        configs.append(
            {
                "config_name": "masks",
                "data_files": [{"split": "train", "path": MASK_TABLE.as_posix()}],
            }
        )
        infos.append({"config_name": "masks", "features": _yaml_features(MASK_FEATURES)})
    if inp.preview:
        configs.append(preview_config())
        infos.append(
            {"config_name": "preview", "features": _yaml_features(preview_features(inp.cmap))}
        )
    meta: dict[str, Any] = {"license": license_id}
    if license_name:
        meta["license_name"] = license_name
    meta.update(
        {
            "pretty_name": inp.cmap.pretty_name or inp.description.get("Name") or inp.cmap.name,
            "tags": sorted(tags),
            "size_categories": [_size_category(inp.n_sessions)],
            "configs": configs,
            "dataset_info": infos,
        }
    )
    return meta


def _counts_section(inp: CardInputs) -> list[str]:
    lines = ["## Counts", ""]
    if inp.counts:
        status = f" (overall status: **{inp.report_status}**)" if inp.report_status else ""
        lines += [
            f"From the validation report `{RELATIVE.report_json}`{status}; "
            "`expected` comes from the dataset configuration.",
            "",
            "| count | expected | found | status |",
            "|---|---|---|---|",
        ]
        for c in inp.counts:
            exp = "" if c["expected"] is None else c["expected"]
            lines.append(f"| {c['name']} | {exp} | {c['found']} | {c['status']} |")
    else:
        lines += [
            "| count | found |",
            "|---|---|",
            f"| n_subjects | {inp.n_subjects} |",
            f"| n_sessions | {inp.n_sessions} |",
        ]
    if inp.masks is not None:
        if not inp.counts:
            lines.append(f"| n_segmented_sessions | {inp.n_masks} |")
        else:
            lines += ["", f"Sessions with a computed lesion mask: {inp.n_masks}."]
    return [*lines, ""]


def _masks_section(inp: CardInputs) -> list[str]:
    """Which expert masks exist, how many predicted masks are empty, how well they agree."""
    if inp.qc is None or inp.masks is None:
        return []
    q = inp.qc
    cohort = inp.cmap.pretty_name or inp.cmap.name
    descs = ", ".join(f"`desc-{d}`" for d in inp.cmap.expert_masks)
    lines = [
        "## Lesion masks and their agreement",
        "",
        f"{cohort}: {q['n']} predicted mask(s) ({inp.masks.backend} backend), "
        f"{q['empty']} empty, {q['flagged']} flagged for review (`{RELATIVE.qc_table}`, "
        "column `flag`). Empty is a status, not always an error: an acute subject may have "
        "no visible lesion; an empty DeepISLES mask is flagged because DeepISLES also "
        "writes one, and exits 0, when its SEALS model fails.",
        "",
        f"Expert masks compared (primary first): {descs}.",
        "",
    ]
    if q["agreement"]:
        lines += ["| expert mask | compared | Dice median | Dice IQR |", "|---|---|---|---|"]
        for desc, a in sorted(q["agreement"].items()):
            lines.append(
                f"| desc-{desc} | {a['n']} | {a['median']:.3f} | {a['q1']:.3f}-{a['q3']:.3f} |"
            )
    else:
        lines.append("No segmented session has an expert mask to compare with.")
    return [*lines, ""]


def _citation_section(inp: CardInputs) -> list[str]:
    d = inp.description
    lines = ["## Citation", ""]
    name = d.get("Name") or inp.cmap.name
    lines.append(f"**Source dataset**: {name}.")
    if d.get("Authors"):
        lines.append(f"Authors: {', '.join(str(a) for a in d['Authors'])}.")
    if d.get("DatasetDOI"):
        doi = str(d["DatasetDOI"])
        link = doi if doi.startswith("http") else f"https://doi.org/{doi.removeprefix('doi:')}"
        lines.append(f"DOI: {link}")
    if d.get("HowToAcknowledge"):
        lines += ["", f"How to acknowledge: {d['HowToAcknowledge']}"]
    refs = d.get("ReferencesAndLinks") or []
    if refs:
        lines += ["", "References and links:", ""] + [f"- {r}" for r in refs]
    if inp.masks is not None:
        lines += ["", f"**Lesion masks** ({inp.masks.backend} backend):", ""]
        if inp.masks.backend == "deepisles":
            lines.append(f"- {DEEPISLES_CITATION} {DEEPISLES_URL}")
        else:
            how = f" ({inp.masks.description})" if inp.masks.description else ""
            lines.append(
                f"- computed by the CPU threshold segmenter of bids2hub{how}; a stand-in for "
                f"DeepISLES on machines without a GPU. DeepISLES: {DEEPISLES_CITATION}"
            )
    return [*lines, ""]


def _load_section(inp: CardInputs, features: dict[str, Any]) -> list[str]:
    repo = inp.repo_id or "<owner>/<name>"
    image_col = next((c for c in inp.cmap.image_columns()), None)
    lines = [
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo}", split="train")          # one row per session',
        f'stream = load_dataset("{repo}", split="train", streaming=True)  # no full download',
        "row = next(iter(stream))",
    ]
    if image_col is not None:
        cell = (
            f'row["{image_col.name}"][0]'
            if image_col.kind == "images"
            else f'row["{image_col.name}"]'
        )
        lines += [
            f"img = {cell}              # a nibabel Nifti1Image (Nifti feature)",
            "img.shape, img.affine, img.get_fdata().mean()",
        ]
    if inp.masks is not None:
        lines += [
            "",
            f'masks = load_dataset("{repo}", "masks", split="train")',
            'masks[0]["lesion_mask"].get_fdata().sum(), masks[0]["volume_ml"]',
        ]
    lines += [
        "```",
        "",
        "To keep the raw bytes instead of decoded images, cast with "
        "`ds.cast_column(name, Nifti(decode=False))` (`from datasets import Nifti`): each cell is "
        "then `{'bytes': <the .nii.gz file>, 'path': <its file name>}`, byte-identical to the "
        "source file (its sha256 is in the shard's `bids2hub` parquet metadata).",
        "",
    ]
    return lines


def render_card(inp: CardInputs) -> str:
    """The card's text (YAML front matter + Markdown), deterministic."""
    _schema, features = shard_schema(inp.cmap)
    meta = _front_matter(inp, features)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100)
    title = meta["pretty_name"]
    d = inp.description
    out = [
        "---",
        front.rstrip("\n"),
        "---",
        "",
        f"# {title}",
        "",
        f"The BIDS dataset *{d.get('Name') or inp.cmap.name}* as Hugging Face parquet: "
        f"**one row per session** (one parquet shard per session under `{SHARDS}/`), every NIfTI "
        "image embedded as the bytes of its `.nii.gz` file, decoded by `datasets` as a "
        "`Nifti` (a nibabel image). JSON sidecars, `.bval`/`.bvec` gradients and the "
        "participants' phenotype travel in the same row.",
        "",
    ]
    if inp.masks is not None:
        out += [
            f"Lesion masks computed per session are in the `masks` configuration "
            f"(`{MASK_TABLE.as_posix()}`) and as a BIDS derivative dataset under "
            f"`{DERIVATIVE.as_posix()}/`.",
            "",
        ]
    if inp.preview:
        out += preview_section(inp.repo_id, inp.cmap)
    out += _counts_section(inp)
    out += _masks_section(inp)
    out += ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    by_name = {c.name: c for c in inp.cmap.columns}
    sidecars = {sidecar_name(c): c for c in inp.cmap.image_columns()}
    for name, feat in features.items():
        if name in by_name:
            meaning = column_meaning(by_name[name])
        elif sidecars[name].kind == "images":
            meaning = f"JSON sidecar of each `{sidecars[name].name}` image, verbatim"
        else:
            meaning = f"JSON sidecar of the `{sidecars[name].name}` image, verbatim (or null)"
        out.append(f"| `{name}` | {_type_name(feat)} | {meaning} |")
    out.append("")
    if inp.masks is not None:
        out += [
            "### `masks` configuration",
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        out += [
            f"| `{n}` | {_type_name(f)} | {MASK_DESCRIPTIONS[n]} |"
            for n, f in MASK_FEATURES.items()
        ]
        out.append("")
    out += _load_section(inp, features)
    out += _citation_section(inp)
    out += ["## Provenance", "", f"- Pipeline: bids2hub {__version__} (neuroimaging-go-brrrr)"]
    if inp.masks is not None:
        version = f" {inp.masks.version}" if inp.masks.version else ""
        out.append(f"- Lesion masks: {inp.masks.name}{version} ({inp.masks.backend} backend)")
        if inp.masks.container_uri:
            out.append(f"- Container image: `{inp.masks.container_uri}`")
        if inp.masks.image_digest:
            out.append(f"- Container digest: `{inp.masks.image_digest}`")
    out += [
        "- Each shard's parquet key-value metadata `bids2hub` lists its source files with "
        "their sizes and sha256, and the package versions that wrote it.",
        "",
    ]
    return "\n".join(out)


def load_card_inputs(
    *,
    bids_description: Path,
    columns: Path,
    repo_id: str | None,
    n_subjects: int,
    n_sessions: int,
    report: Path | None = None,
    masks_description: Path | None = None,
    n_masks: int = 0,
    preview: bool = False,
    qc: Path | None = None,
) -> CardInputs:
    """Read the card's inputs from their files (see :class:`CardInputs`).

    Raises
    ------
    BidsError
        ``bids_description`` cannot be read.
    ValidationError
        ``report`` is not a validation report of this version, or its ``status`` or
        ``counts`` do not have the report's shape (one line naming it).
    """
    try:
        description = json.loads(Path(bids_description).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BidsError(f"{bids_description}: cannot read ({exc})") from None
    cmap = ColumnMap.from_json(Path(columns).read_text(encoding="utf-8"))
    counts = status = None
    if report is not None:
        rep = load_report(Path(report), sections=("status", "counts"))
        counts, status = rep["counts"], rep["status"]
    masks = read_generator(masks_description) if masks_description is not None else None
    summary = None
    if qc is not None:
        from bids2hub.paper.cohort import read_tsv
        from bids2hub.segment.qc import summarize_qc

        summary = summarize_qc(read_tsv(Path(qc)))
    return CardInputs(
        description,
        cmap,
        repo_id,
        n_subjects,
        n_sessions,
        counts,
        status,
        masks,
        n_masks,
        preview,
        summary,
    )

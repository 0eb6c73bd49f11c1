"""Every path under out_dir, in one place (no numpy, no pyarrow: every parse imports it).

The rules get their output patterns from a :class:`Layout` (``L.shard("{sub}", "{shard}")``),
the parse-time plans their targets, the jobs their exact paths from the rules' arguments,
and ``bids2hub status`` what to look at. Each folder and file name of the layout is
spelled here only (``tests/unit/test_layout.py`` checks that no other module or rule
file spells one), so two of them cannot drift apart.

Paths are built by string formatting, not pathlib: some are asked once per session at
every parse (10k sessions, every cluster job).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------- names (spelled once)

INDEX = "index"
HUB = "hub"
VALIDATION = "validation"
WORK = "work"
QC = "qc"
CONTAINERS = "containers"
PAPER = "paper"
LOGS = "logs"
BENCHMARKS = "benchmarks"

#: Inside ``hub/``, i.e. the paths of the published Hub repository.
SHARDS = "data"
#: The shards as the card's ``default`` configuration names them.
SHARDS_GLOB = f"{SHARDS}/**/*.parquet"
#: The masks table, relative to the published ``hub/`` folder.
TABLE = Path("masks") / "masks.parquet"
#: The masks' BIDS derivatives dataset, relative to the published ``hub/`` folder.
DERIVATIVE = Path("derivatives") / "deepisles"
#: The source dataset's dataset-level files (dataset_description.json, participants.tsv,
#: README, ...), relative to the published ``hub/`` folder: what ``bids2hub restore`` needs
#: besides the shards.
BIDS_FILES = Path("bids")
#: The ``preview`` configuration's table and the card's thumbnail, relative to ``hub/``.
PREVIEW_TABLE = Path("preview") / "preview.parquet"
PREVIEW_THUMBNAIL = Path("preview") / "thumbnail.png"
#: The dataset card.
CARD_NAME = "README.md"
#: The push's receipt (written after the remote was verified) and its partial record.
RECEIPT_NAME = ".push-receipt.json"
PARTIAL_NAME = ".push-receipt.partial.json"
#: A BIDS dataset's description (the masks' derivative has one).
DESCRIPTION = "dataset_description.json"

#: The prepared DWI of a subject (work/deepisles/sub-X/), as DeepISLES reads them.
PREPARED_DWI = "dwi.nii.gz"
PREPARED_ADC = "adc.nii.gz"

#: Figures of the paper stage, each written as PNG and SVG under paper/figures/.
FIGURES = ("sessions", "lesion_volumes", "volume_agreement", "lesion_overlap", "runtimes")


#: The BIDS suffix and extension of a lesion mask.
MASK_SUFFIX = "_desc-lesion_mask.nii.gz"


def mask_relpath(sub: str, ses: str) -> str:
    """Path of a subject's mask inside the derivatives dataset (no ses- without sessions)."""
    if ses:
        return f"sub-{sub}/ses-{ses}/dwi/sub-{sub}_ses-{ses}{MASK_SUFFIX}"
    return f"sub-{sub}/dwi/sub-{sub}{MASK_SUFFIX}"


def hub_mask_relpath(sub: str, ses: str) -> str:
    """Path of a subject's mask inside the published ``hub/`` folder (the Hub repository)."""
    return f"{DERIVATIVE.as_posix()}/{mask_relpath(sub, ses)}"


def out_mask_relpath(sub: str, ses: str) -> str:
    """Path of a subject's mask relative to out_dir."""
    return f"{HUB}/{hub_mask_relpath(sub, ses)}"


def shard_relpath(sub: str, shard: str) -> str:
    """Path of a shard inside ``hub/`` (``data/sub-X/<shard>.parquet``)."""
    return f"{SHARDS}/sub-{sub}/{shard}.parquet"


@dataclass(frozen=True)
class CheckFiles:
    """What an aggregate of the validation stage reads: per-session results and the validator.

    ``sessions`` and ``shards`` are the rules' output patterns (``{sub}``, ``{shard}``),
    so a job is given exactly the files its rule's DAG declared.
    """

    sessions: str
    shards: str = ""
    validator: str = ""

    def session(self, sub: str, shard: str) -> Path:
        """The source check of a session."""
        return Path(self.sessions.format(sub=sub, shard=shard))

    def shard(self, sub: str, shard: str) -> Path:
        """The round-trip check of a shard."""
        return Path(self.shards.format(sub=sub, shard=shard))


@dataclass(frozen=True)
class Layout:
    """The paths of one run under ``out`` (absolute or as given; methods return str).

    Methods that take labels also take wildcard patterns (``"{sub}"``) for the rules.
    With ``out`` empty (:data:`RELATIVE`) the paths are relative to out_dir.
    """

    out: str

    @classmethod
    def of(cls, out_dir: str | Path) -> Layout:
        """The layout of ``out_dir`` (as given: resolve it first for absolute paths)."""
        return cls(str(out_dir))

    @property
    def _root(self) -> str:
        return f"{self.out}/" if self.out else ""

    def _at(self, *parts: str) -> str:
        return self._root + "/".join(parts)

    # ----------------------------------------------------------------- index

    @property
    def index_dir(self) -> str:
        """``index/``: the cached manifest and the parse-time plans."""
        return self._at(INDEX)

    @property
    def manifest(self) -> str:
        """The cached index of the BIDS tree."""
        return self._at(INDEX, "manifest.parquet")

    @property
    def columns(self) -> str:
        """The resolved column map every shard job reads."""
        return self._at(INDEX, "columns.json")

    @property
    def segmentation(self) -> str:
        """The segmentation plan (targets and exclusions)."""
        return self._at(INDEX, "segmentation.json")

    @property
    def segmentation_key(self) -> str:
        """The key of the inputs the segmentation plan was made from."""
        return self._at(INDEX, "segmentation.key")

    @property
    def dwi_facts(self) -> str:
        """Per-file DWI facts (b-values, shapes) of the planning, by (path, size, mtime)."""
        return self._at(INDEX, "dwi_facts.json")

    # ------------------------------------------------------------------- hub

    @property
    def hub_dir(self) -> str:
        """``hub/``: what is pushed to the Hub."""
        return self._at(HUB)

    def shard(self, sub: str, shard: str) -> str:
        """One session's parquet shard."""
        return f"{self._root}{HUB}/{shard_relpath(sub, shard)}"

    @property
    def derivatives(self) -> str:
        """The lesion masks' BIDS derivatives dataset."""
        return self._at(HUB, DERIVATIVE.as_posix())

    def mask(self, sub: str, ses: str) -> str:
        """A subject's lesion mask."""
        return f"{self.derivatives}/{mask_relpath(sub, ses)}"

    def mask_pattern(self) -> str:
        """The masks' output pattern (wildcards ``sub`` and ``maskpath``)."""
        return f"{self.derivatives}/sub-{{sub}}/{{maskpath}}{MASK_SUFFIX}"

    @property
    def masks_description(self) -> str:
        """The derivative's dataset_description.json."""
        return f"{self.derivatives}/{DESCRIPTION}"

    def dataset_file(self, name: str) -> str:
        """A copy of one of the source dataset's dataset-level files."""
        return f"{self._root}{HUB}/{BIDS_FILES.as_posix()}/{name}"

    @property
    def masks_table(self) -> str:
        """The masks as one parquet table."""
        return self._at(HUB, TABLE.as_posix())

    @property
    def preview_table(self) -> str:
        """The ``preview`` configuration's table."""
        return self._at(HUB, PREVIEW_TABLE.as_posix())

    @property
    def preview_thumbnail(self) -> str:
        """The thumbnail the card shows."""
        return self._at(HUB, PREVIEW_THUMBNAIL.as_posix())

    def preview_dir(self, sub: str) -> str:
        """One subject's preview rows (written by its read-back job)."""
        return f"{self._root}{WORK}/{PREVIEW_TABLE.parent.as_posix()}/sub-{sub}"

    def preview_part(self, sub: str, shard: str) -> str:
        """One session's preview row (the preview table's part)."""
        return f"{self.preview_dir(sub)}/{shard}.parquet"

    @property
    def card(self) -> str:
        """The dataset card."""
        return self._at(HUB, CARD_NAME)

    @property
    def receipt(self) -> str:
        """The push's receipt."""
        return self._at(HUB, RECEIPT_NAME)

    # ------------------------------------------------------------ validation

    @property
    def validation_dir(self) -> str:
        """``validation/``."""
        return self._at(VALIDATION)

    def session_checks_dir(self, sub: str) -> str:
        """One subject's source checks (one job per subject writes the folder)."""
        return f"{self._root}{VALIDATION}/sessions/sub-{sub}"

    def session_check(self, sub: str, shard: str) -> str:
        """The source check of one session."""
        return f"{self.session_checks_dir(sub)}/{shard}.json"

    def shard_checks_dir(self, sub: str) -> str:
        """One subject's read-back checks (one job per subject writes the folder)."""
        return f"{self._root}{VALIDATION}/shards/sub-{sub}"

    def shard_check(self, sub: str, shard: str) -> str:
        """The read-back check of one shard."""
        return f"{self.shard_checks_dir(sub)}/{shard}.json"

    @property
    def bids_validator(self) -> str:
        """The official BIDS validator's result."""
        return self._at(VALIDATION, "bids-validator.json")

    @property
    def intact_sessions(self) -> str:
        """Which sessions' shards can be read back."""
        return self._at(VALIDATION, "intact-sessions.json")

    @property
    def report_json(self) -> str:
        """The machine-readable validation report."""
        return self._at(VALIDATION, "report.json")

    @property
    def report_html(self) -> str:
        """The validation report for a person."""
        return self._at(VALIDATION, "report.html")

    @property
    def validation_passed(self) -> str:
        """Written only when no hard check failed."""
        return self._at(VALIDATION, "passed")

    def checks(self) -> CheckFiles:
        """The files the validation aggregates read."""
        return CheckFiles(
            self.session_check("{sub}", "{shard}"),
            self.shard_check("{sub}", "{shard}"),
            self.bids_validator,
        )

    # ----------------------------------------------------------- work, qc

    def prepared_dir(self, sub: str) -> str:
        """Where prepare_dwi writes a subject's trace, ADC and record (segment's scratch)."""
        return f"{self._root}{WORK}/deepisles/sub-{sub}"

    def prepared_dwi(self, sub: str) -> str:
        """The subject's b~1000 trace."""
        return f"{self.prepared_dir(sub)}/{PREPARED_DWI}"

    def prepared_adc(self, sub: str) -> str:
        """The subject's ADC in mm^2/s."""
        return f"{self.prepared_dir(sub)}/{PREPARED_ADC}"

    def prepared_info(self, sub: str) -> str:
        """prepare_dwi's record of what it used (its last output)."""
        return f"{self.prepared_dir(sub)}/prepared.json"

    @property
    def push_hash_cache(self) -> str:
        """Local sha256 of hub/ files between pushes."""
        return self._at(WORK, HUB, "local-hashes.json")

    @property
    def qc_table(self) -> str:
        """Per-subject segmentation QC table."""
        return self._at(QC, "segmentation.tsv")

    @property
    def image_receipt(self) -> str:
        """The verified DeepISLES image's record."""
        return self._at(CONTAINERS, "deepisles-image.json")

    # ----------------------------------------------------------------- paper

    @property
    def paper_dir(self) -> str:
        """``paper/``."""
        return self._at(PAPER)

    def paper(self, name: str) -> str:
        """A file directly under paper/."""
        return self._at(PAPER, name)

    @property
    def lesion_volumes(self) -> str:
        """Expert and predicted lesion volumes."""
        return self.paper("lesion_volumes.tsv")

    @property
    def cohort_tsv(self) -> str:
        """Table 1, long format."""
        return self.paper("cohort.tsv")

    @property
    def cohort_md(self) -> str:
        """Table 1 as Markdown."""
        return self.paper("cohort.md")

    @property
    def overlap_nifti(self) -> str:
        """Frequency map of the predicted masks."""
        return self.paper("lesion_overlap.nii.gz")

    @property
    def runtimes(self) -> str:
        """Runtimes per rule."""
        return self.paper("runtimes.tsv")

    @property
    def provenance(self) -> str:
        """What produced the outputs, from what, and their hashes."""
        return self.paper("provenance.json")

    @property
    def viewer(self) -> str:
        """The self-contained NiiVue page."""
        return self.paper("viewer.html")

    def figure(self, stem: str, ext: str) -> str:
        """``paper/figures/<stem>.<ext>`` (stems: :data:`FIGURES`)."""
        if stem not in FIGURES:
            raise ValueError(f"unknown figure '{stem}' (known: {', '.join(FIGURES)})")
        return self._at(PAPER, "figures", f"{stem}.{ext}")

    def qc_overlay(self, sub: str) -> str:
        """A segmented subject's QC figure."""
        return f"{self._root}{PAPER}/{QC}/sub-{sub}.png"

    @property
    def provenance_inputs(self) -> str:
        """Parse-time record of the resolved config and the outputs to hash."""
        return self._at(WORK, PAPER, "provenance-inputs.json")

    @property
    def paper_hash_cache(self) -> str:
        """Hashes of the outputs by (size, mtime, inode), between runs."""
        return self._at(WORK, PAPER, "output-hashes.json")

    # ------------------------------------------------------ logs, benchmarks

    def log(self, rule: str, name: str | None = None) -> str:
        """A job's log: ``logs/<rule>/<name>.log`` (name: the rule's, for one-job rules)."""
        return f"{self._root}{LOGS}/{rule}/{name or rule}.log"

    @property
    def benchmarks_dir(self) -> str:
        """``benchmarks/``: one folder per rule."""
        return self._at(BENCHMARKS)

    def benchmark(self, rule: str, name: str | None = None) -> str:
        """A job's benchmark: ``benchmarks/<rule>/<name>.tsv``."""
        return f"{self.benchmarks_dir}/{rule}/{name or rule}.tsv"


#: The layout's paths relative to out_dir (for texts that name a file of the run).
RELATIVE = Layout("")

"""One layout: every out_dir path comes from bids2hub.layout, and each of its names is spelled once.

The scan reads every module of the package and every rule file as Python tokens: a
folder or file name of the layout in a path (a string with a ``/`` that has it as a
component, a string joined with ``/`` or given to ``Path``), or a file name of the
layout anywhere in a string, outside ``layout.py``, is a second spelling that could
drift from the first. Docstrings, comments and ``help=`` texts are documentation.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest
from bids2hub import layout as layout_module
from bids2hub.layout import FIGURES, CheckFiles, Layout

from tests.conftest import REPO

WORKFLOW = REPO / "workflow"
LAYOUT_PY = Path(layout_module.__file__)
#: BIDS vocabulary: also the names of the input dataset's files and folders, which the
#: index and the demo generator spell for bids_dir, not for out_dir.
BIDS_NAMES = frozenset({"derivatives", "dwi", "dataset_description.json"})
#: Names of the layout that another tree has too: (file, name) -> which tree.
OTHER_TREES = {
    ("workflow/bids2hub/segment/deepisles.py", "containers"): "the user's image cache",
    ("workflow/bids2hub/paper/viewer.py", "data"): "the package's data folder",
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{2,}$")


def _literal_parts(token: str) -> list[str]:
    """The literal text of a string token (an f-string's text between its fields)."""
    node = ast.parse(token.strip(), mode="eval").body
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    return [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []


def layout_names() -> set[str]:
    """Every folder and file name spelled in layout.py (not wildcards, extensions, entities)."""
    names: set[str] = set()
    for tok in _string_tokens(LAYOUT_PY.read_text(encoding="utf-8")):
        for part in _literal_parts(tok.string):
            for comp in part.split("/"):
                if (
                    _NAME.match(comp)
                    and not comp.endswith("-")
                    and not comp.startswith("_")
                    and not re.fullmatch(r"\.[a-z]+", comp)
                    and not comp.isdigit()
                ):
                    names.add(comp)
    return names - BIDS_NAMES


def _string_tokens(text: str) -> list[tokenize.TokenInfo]:
    """String tokens that are code: not docstrings, comments or ``help=`` texts."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type not in (tokenize.COMMENT, tokenize.NL)
    ]
    out = []
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.STRING:
            continue
        prev = tokens[i - 1] if i else None
        statement = prev is None or prev.type in (
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
        )
        if statement and tok.string.lstrip("rbuf").startswith(('"""', "'''")):
            continue  # a docstring
        if i >= 2 and tokens[i - 1].string == "=" and tokens[i - 2].string == "help":
            continue
        out.append(tok)
    return out


def spellings(text: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every spelling of a layout name in a path in ``text``."""
    found = []
    files = {n for n in names if "." in n}
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    code = {t.start for t in _string_tokens(text)}
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.STRING or tok.start not in code:
            continue
        line = tok.line
        fstring = "f" in tok.string.split('"')[0].split("'")[0].lower()
        for part in _literal_parts(tok.string):
            for name in files:
                if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)", part):
                    found.append((tok.start[0], name))
            # An absolute path or a URI is not under out_dir (e.g. /app/data in the image).
            absolute = (part.startswith("/") and not fstring) or "://" in part
            if "/" in part and not absolute:
                found += [(tok.start[0], c) for c in part.split("/") if c in names]
            elif part in names and "__file__" not in line:  # package data, not out_dir
                before = tokens[i - 1].string if i else ""
                after = tokens[i + 1].string if i + 1 < len(tokens) else ""
                call = tokens[i - 2].string if i >= 2 else ""
                if "/" in (before, after) or (before == "(" and call in ("Path", "joinpath")):
                    found.append((tok.start[0], part))
    return sorted(set(found))


def sources() -> list[Path]:
    """Every module of the package and every rule file, but layout.py."""
    files = [*WORKFLOW.rglob("*.py"), *WORKFLOW.rglob("*.smk"), WORKFLOW / "Snakefile"]
    return sorted(p for p in files if p != LAYOUT_PY and "vendor" not in p.parts)


def test_the_layout_names_its_folders_and_files() -> None:
    names = layout_names()
    expected = {"index", "hub", "validation", "sessions", "shards", "work", "deepisles"}
    expected |= {"paper", "logs", "benchmarks", "data", "masks.parquet", ".push-receipt.json"}
    expected |= {"segmentation.json", "segmentation.key", "columns.json", "dwi_facts.json"}
    assert expected <= names


def test_each_layout_name_is_spelled_once() -> None:
    names = layout_names()
    where = {
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in sources()
        for line, name in spellings(path.read_text(encoding="utf-8"), names)
        if (str(path.relative_to(REPO)), name) not in OTHER_TREES
    }
    assert not where, "out_dir names spelled outside bids2hub/layout.py:\n" + "\n".join(
        sorted(where)
    )


def test_no_template_spells_a_file_of_the_layout() -> None:
    files = {n for n in layout_names() if "." in n}
    found = []
    for path in sorted(WORKFLOW.rglob("*.j2")):
        text = re.sub(r"\{#.*?#\}", "", path.read_text(encoding="utf-8"), flags=re.S)
        for name in files:
            if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)", text):
                found.append(f"{path.relative_to(REPO)}: {name}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        'p = f"{OUT}/hub/data/sub-{{sub}}/{{shard}}.parquet"\n',
        'p = out_dir / "index" / "x"\n',
        'p = Path("validation")\n',
        'p = str(Path(x) / "report.json")\n',
        'rule a:\n    output:\n        f"{OUT}/logs/a/a.log",\n',
        'x = "python -m bids2hub push --receipt hub/.push-receipt.json"\n',
        'x = f"{root}/validation"\n',
    ],
)
def test_the_scan_finds_a_second_spelling(code: str) -> None:
    assert spellings(code, layout_names())


@pytest.mark.parametrize(
    "code",
    [
        'def f():\n    """Reads index/segmentation.json."""\n',
        '# hub/data/\nx = config["hub"]["push"]\n',
        'p.add_argument("--plan", help="index/segmentation.json")\n',
        'MANIFEST = Path(__file__).parent / "data" / "niivue.json"\n',
        'x = root / "derivatives" / "lesion_masks"\n',
        'MOUNT = "/app/data"\n',
        'URI = "docker://isleschallenge/deepisles@sha256:0"\n',
    ],
)
def test_the_scan_leaves_documentation_and_other_trees_alone(code: str) -> None:
    assert not spellings(code, layout_names())


def test_paths_of_a_run() -> None:
    L = Layout.of("/o")
    assert L.shard("M1", "sub-M1_ses-2") == "/o/hub/data/sub-M1/sub-M1_ses-2.parquet"
    assert L.shard("{sub}", "{shard}") == "/o/hub/data/sub-{sub}/{shard}.parquet"
    assert L.mask("M1", "2") == (
        "/o/hub/derivatives/deepisles/sub-M1/ses-2/dwi/sub-M1_ses-2_desc-lesion_mask.nii.gz"
    )
    assert L.mask_pattern().format(sub="M1", maskpath="ses-2/dwi/sub-M1_ses-2") == L.mask("M1", "2")
    assert (
        L.session_check("M1", "sub-M1_ses-2") == "/o/validation/sessions/sub-M1/sub-M1_ses-2.json"
    )
    assert L.log("write_shard", "sub-{sub}/{shard}") == "/o/logs/write_shard/sub-{sub}/{shard}.log"
    assert L.benchmark("dataset_card") == "/o/benchmarks/dataset_card/dataset_card.tsv"
    assert L.receipt == "/o/hub/.push-receipt.json" and L.card == "/o/hub/README.md"
    assert L.figure(FIGURES[0], "png") == "/o/paper/figures/sessions.png"
    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        L.figure("nope", "png")
    checks = L.checks()
    assert checks == CheckFiles(
        L.session_check("{sub}", "{shard}"), L.shard_check("{sub}", "{shard}"), L.bids_validator
    )
    assert str(checks.shard("M1", "sub-M1")) == "/o/validation/shards/sub-M1/sub-M1.json"


# What the Snakefile and the rules import at parse time, which every cluster job repeats
# (bids2hub.segment.plan: check_skull_strip runs in every parse; paper.viewer: its MANIFEST).
PARSE_TIME_MODULES = [
    "bids2hub.layout",
    "bids2hub.plan",
    "bids2hub.preflight",
    "bids2hub.segment.plan",
    "bids2hub.segment.deepisles",
    "bids2hub.paper.viewer",
    "bids2hub.paper.provenance",
]


@pytest.mark.parametrize("module", PARSE_TIME_MODULES)
def test_parse_time_modules_import_no_numpy_or_pyarrow(module: str) -> None:
    import subprocess
    import sys

    code = (
        f"import sys; import {module}; "
        "print(sorted(m for m in ('numpy', 'pyarrow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(WORKFLOW)},
    )
    assert out.stdout.strip() == "[]"

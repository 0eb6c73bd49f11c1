"""One list of dependencies: pyproject.toml's, with the rules' conda environment generated
from it; every third-party import of the package is in both, each with a lower bound."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from bids2hub.condaenv import (
    ENV_FILE,
    PYPROJECT,
    DependencyError,
    Project,
    env_packages,
    main,
    normalise,
    render_env,
)

from tests.conftest import REPO

PACKAGE = REPO / "workflow" / "bids2hub"
#: Executables the package runs, by the distribution that ships them (no import names them).
COMMANDS = {"bids-validator-deno"}


def _python_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a Python file (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


_SMK_IMPORT = re.compile(r"^\s*(?:from\s+([A-Za-z_]\w*)|import\s+([A-Za-z_]\w*))", re.M)


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n != "bids2hub"}


def _distributions(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Distribution (normalised) -> the files importing it, from the installed metadata."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for module, files in modules.items():
        dists = owners.get(module)
        assert dists, f"{module} (imported by {sorted(files)[0]}) is not installed at all"
        for dist in dists:
            found.setdefault(normalise(dist), set()).update(files)
    return found


def _package_imports() -> dict[str, set[str]]:
    modules: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _third_party(_python_imports(path)):
            modules.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return modules


def test_every_import_of_the_package_is_a_dependency_and_in_the_environment() -> None:
    project = Project.read()
    declared = {normalise(d.name) for d in project.dependencies}
    in_env = env_packages(ENV_FILE.read_text(encoding="utf-8"))
    imports = _distributions(_package_imports())
    assert {"pyarrow", "nibabel", "datasets", "huggingface-hub", "spython"} <= set(imports)
    missing_project = {d: sorted(f) for d, f in imports.items() if d not in declared}
    assert not missing_project, f"imported but not in pyproject.toml: {missing_project}"
    missing_env = {d: sorted(f) for d, f in imports.items() if project.env_name(d) not in in_env}
    assert not missing_env, f"imported but not in {ENV_FILE.name}: {missing_env}"
    for command in COMMANDS:
        assert command in declared and project.env_name(command) in in_env, command


def test_snakefile_imports_are_dependencies() -> None:
    """The main process (Snakefile, rules) imports only stdlib, bids2hub and Snakemake."""
    declared = {normalise(d.name) for d in Project.read().dependencies}
    sources = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    modules: dict[str, set[str]] = {}
    for path in sources:
        for match in _SMK_IMPORT.finditer(path.read_text(encoding="utf-8")):
            for name in _third_party({match.group(1) or match.group(2)}):
                modules.setdefault(name, set()).add(path.name)
    assert "snakemake" in modules  # the scan sees the Snakefile's imports
    missing = {d: sorted(f) for d, f in _distributions(modules).items() if d not in declared}
    assert not missing, f"imported by the workflow but not in pyproject.toml: {missing}"


def test_environment_file_is_generated_from_pyproject() -> None:
    assert ENV_FILE.read_text(encoding="utf-8") == render_env(Project.read()), (
        f"{ENV_FILE.name} is out of date: run `make conda-env`"
    )
    assert main(["--check"]) == 0


def test_every_dependency_has_a_lower_bound() -> None:
    project = Project.read()
    assert project.python.startswith(">=")
    for dep in project.dependencies:
        assert ">=" in dep.spec, dep
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    for name, deps in extras.items():
        for text in deps:
            if not text.startswith("neuroimaging-go-brrrr["):  # the package's own extras
                assert ">=" in text, (name, text)
    text = ENV_FILE.read_text(encoding="utf-8")
    entries = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    pinned = [e for e in entries if e not in ("conda-forge", "nodefaults", "pip:")]
    assert pinned and all(">=" in e for e in pinned), pinned


def test_runner_only_packages_stay_out_of_the_job_environment() -> None:
    in_env = env_packages(ENV_FILE.read_text(encoding="utf-8"))
    assert "snakemake" not in in_env and "snakemake-executor-plugin-slurm" not in in_env
    assert in_env["matplotlib-base"] == "conda" and "matplotlib" not in in_env
    assert in_env["bids-validator-deno"] == "pip"


def _pyproject(tmp_path: Path, deps: list[str], conda: str = "") -> Path:
    path = tmp_path / "pyproject.toml"
    listed = ", ".join(f'"{d}"' for d in deps)
    path.write_text(
        f'[project]\nname = "x"\nrequires-python = ">=3.11"\ndependencies = [{listed}]\n'
        f"[tool.bids2hub.conda]\n{conda}\n"
    )
    return path


def test_generated_file_follows_the_rules(tmp_path: Path) -> None:
    path = _pyproject(
        tmp_path,
        ["snakemake>=9", "PyYAML>=6.0", "matplotlib>=3.8", "foo-bar>=1.2,<2"],
        'rename = { matplotlib = "matplotlib-base" }\npip = ["foo_bar"]\nrunner = ["snakemake"]',
    )
    text = render_env(Project.read(path))
    body = text.split("dependencies:\n", 1)[1]
    assert body == (
        "  - python >=3.11\n  - pyyaml >=6.0\n  - matplotlib-base >=3.8\n"
        "  - pip >=23.0\n  - pip:\n      - foo-bar>=1.2,<2\n"
    )
    assert env_packages(text) == {
        "python": "conda", "pyyaml": "conda", "matplotlib-base": "conda", "pip": "conda",
        "foo-bar": "pip",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("deps", "conda", "message"),
    [
        (["numpy"], "", r"dependency 'numpy' has no lower bound"),
        (["numpy<3"], "", r"dependency 'numpy<3' has no lower bound"),
        (["numpy>=1; python_version<'3.12'"], "", r"is not 'name>=version'"),
        (["numpy>=1"], 'pip = ["scipy"]', r"pip names scipy, not in \[project\]\.dependencies"),
    ],
)
def test_bad_pyproject_is_one_line_naming_the_file(
    tmp_path: Path, deps: list[str], conda: str, message: str
) -> None:
    path = _pyproject(tmp_path, deps, conda)
    with pytest.raises(DependencyError, match=message) as info:
        Project.read(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_check_fails_on_a_stale_file_and_writing_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "env.yaml"
    out.write_text(ENV_FILE.read_text(encoding="utf-8").replace("numpy >=1.26", "numpy"))
    assert main(["--pyproject", str(PYPROJECT), "--output", str(out), "--check"]) == 1
    assert "run `make conda-env`" in capsys.readouterr().err
    assert main(["--pyproject", str(PYPROJECT), "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == ENV_FILE.read_text(encoding="utf-8")
    assert main(["--pyproject", str(PYPROJECT), "--output", str(out), "--check"]) == 0

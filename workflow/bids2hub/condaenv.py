"""The rules' conda environment (``envs/bids2hub.yaml``), generated from ``pyproject.toml``.

``[project].dependencies`` is the one list of what the package needs. The environment
file that ``--software-deployment-method conda`` builds for every rule is derived from it
with the rules in ``[tool.bids2hub.conda]``:

``rename``
    PyPI name -> conda-forge name where they differ (``matplotlib`` -> ``matplotlib-base``).
``pip``
    Installed with pip inside the environment: not on conda-forge, or not at the pinned
    versions there.
``runner``
    Not needed inside a job's environment (Snakemake and its executor plugins run the jobs).

Every dependency keeps its lower bound (``>=``); one without is an error. Run
``python -m bids2hub.condaenv`` (``make conda-env``) after editing the dependencies, or
``python -m bids2hub.condaenv --check`` to fail when the file is out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids2hub.errors import Bids2HubError
from bids2hub.fsutil import write_if_changed

#: The repository root of a checkout (pyproject.toml, envs/).
REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
ENV_FILE = REPO / "envs" / "bids2hub.yaml"
#: The lower bound of the ``pip`` that installs the ``pip:`` section.
PIP_LOWER_BOUND = "23.0"

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")
_HEADER = """\
# GENERATED from pyproject.toml ([project].dependencies, [tool.bids2hub.conda]) by
# `make conda-env`; do not edit by hand (a test fails when the two disagree).
# Runtime of the bids2hub rules for `--software-deployment-method conda`; the bids2hub
# package itself is put on PYTHONPATH by the Snakefile.
"""


class DependencyError(Bids2HubError):
    """pyproject.toml's dependencies cannot be turned into the environment file."""


def normalise(name: str) -> str:
    """A distribution name compared the PEP 503 way (``PyYAML`` is ``pyyaml``, ``a_b`` ``a-b``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One dependency: its name as written and its version specifier (``>=x.y``...)."""

    name: str
    spec: str

    @classmethod
    def parse(cls, text: str, source: Path) -> Requirement:
        """Parse ``name[extras]>=x`` (no environment markers, a lower bound required)."""
        match = _REQUIREMENT.match(text)
        if not match or ";" in text or "@" in text:
            raise DependencyError(f"{source}: dependency {text!r} is not 'name>=version'")
        name, spec = match.group(1), match.group(2).replace(" ", "")
        if not any(part.startswith(">=") for part in spec.split(",")):
            raise DependencyError(f"{source}: dependency {text!r} has no lower bound (>=)")
        return cls(name, spec)


@dataclass(frozen=True)
class CondaRules:
    """``[tool.bids2hub.conda]``: how PyPI dependencies become the environment's entries."""

    rename: dict[str, str] = field(default_factory=dict)
    pip: frozenset[str] = frozenset()
    runner: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Project:
    """What pyproject.toml says: Python's lower bound, the dependencies and the conda rules."""

    python: str
    dependencies: tuple[Requirement, ...]
    rules: CondaRules

    @classmethod
    def read(cls, path: Path = PYPROJECT) -> Project:
        """Read ``path``.

        Raises
        ------
        DependencyError
            The file is unreadable, a dependency has no lower bound, or a conda rule names
            a package that is not a dependency.
        """
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            project = data["project"]
            python = str(project["requires-python"]).replace(" ", "")
            raw = project["dependencies"]
        except (OSError, ValueError, KeyError) as exc:
            raise DependencyError(f"{path}: not a readable pyproject.toml ({exc})") from None
        if not python.startswith(">="):
            raise DependencyError(f"{path}: requires-python {python!r} has no lower bound")
        deps = tuple(Requirement.parse(str(text), Path(path)) for text in raw)
        table: dict[str, Any] = data.get("tool", {}).get("bids2hub", {}).get("conda", {})
        rules = CondaRules(
            rename={normalise(k): str(v) for k, v in table.get("rename", {}).items()},
            pip=frozenset(normalise(n) for n in table.get("pip", [])),
            runner=frozenset(normalise(n) for n in table.get("runner", [])),
        )
        known = {normalise(d.name) for d in deps}
        for key in ("rename", "pip", "runner"):
            stray = sorted(set(getattr(rules, key)) - known)
            if stray:
                raise DependencyError(
                    f"{path}: [tool.bids2hub.conda] {key} names {', '.join(stray)}, "
                    "not in [project].dependencies"
                )
        return cls(python, deps, rules)

    def env_name(self, name: str) -> str:
        """The (normalised) name under which distribution ``name`` is in the environment file."""
        key = normalise(name)
        return key if key in self.rules.pip else normalise(self.rules.rename.get(key, key))

    def job_dependencies(self) -> list[Requirement]:
        """The dependencies a job's environment holds (all but the runner's)."""
        return [d for d in self.dependencies if normalise(d.name) not in self.rules.runner]


def render_env(project: Project) -> str:
    """The text of ``envs/bids2hub.yaml`` (the same project gives the same bytes)."""
    conda = [f"python {project.python}"]
    pip: list[str] = []
    for dep in project.job_dependencies():
        key = normalise(dep.name)
        if key in project.rules.pip:
            pip.append(f"{dep.name}{dep.spec}")
        else:
            conda.append(f"{project.rules.rename.get(key, dep.name.lower())} {dep.spec}")
    lines = [_HEADER.rstrip("\n"), "channels:", "  - conda-forge", "  - nodefaults"]
    lines.append("dependencies:")
    lines += [f"  - {entry}" for entry in conda]
    if pip:
        lines += [f"  - pip >={PIP_LOWER_BOUND}", "  - pip:"]
        lines += [f"      - {entry}" for entry in pip]
    return "\n".join(lines) + "\n"


def env_packages(text: str) -> dict[str, str]:
    """Package name -> 'conda' or 'pip' for every entry of an environment file's text."""
    import yaml

    data = yaml.safe_load(text) or {}
    found: dict[str, str] = {}
    for entry in data.get("dependencies", []):
        items, where = (
            (entry.get("pip", []), "pip") if isinstance(entry, dict) else ([entry], "conda")
        )
        for item in items:
            match = _REQUIREMENT.match(str(item))
            if match:
                found[normalise(match.group(1))] = where
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the environment file; 1 when it is out of date."""
    parser = argparse.ArgumentParser(
        prog="python -m bids2hub.condaenv", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    parser.add_argument("--output", type=Path, default=ENV_FILE)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    try:
        text = render_env(Project.read(args.pyproject))
    except Bids2HubError as exc:
        print(f"bids2hub: error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        try:
            current: str | None = args.output.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            print(
                f"bids2hub: error: {args.output} is not what {args.pyproject.name} gives; "
                "run `make conda-env`",
                file=sys.stderr,
            )
            return 1
        return 0
    if write_if_changed(args.output, text):
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

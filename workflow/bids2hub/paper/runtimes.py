"""Runtimes per rule, aggregated from Snakemake's ``benchmark:`` files.

Each job writes ``{out_dir}/benchmarks/<rule>/...tsv`` (columns ``s``, ``h:m:s``,
``max_rss``, ... ``cpu_time``; one line per repeat). The rule is the first
folder below ``benchmarks/``. Measured values: these outputs differ between runs.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bids2hub.errors import BidsError
from bids2hub.index.bidsname import natural_key
from bids2hub.paper.cohort import write_tsv

COLUMNS = ("rule", "jobs", "total_s", "median_s", "max_s", "max_rss_mb", "cpu_s")


@dataclass(frozen=True)
class RuleRuntime:
    """Aggregated runtimes of the jobs of one rule."""

    rule: str
    jobs: int
    total_s: float
    median_s: float
    max_s: float
    max_rss_mb: float | None
    cpu_s: float | None

    def cells(self) -> list[str]:
        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        return [
            self.rule, str(self.jobs), f(self.total_s), f(self.median_s), f(self.max_s),
            f(self.max_rss_mb), f(self.cpu_s),
        ]  # fmt: skip


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "NA", "-") else None
    except ValueError:
        return None


def collect(bench_dir: Path) -> list[RuleRuntime]:
    """Aggregate every benchmark file below ``bench_dir`` per rule (first line of each file)."""
    per_rule: dict[str, list[dict[str, str]]] = {}
    for path in sorted(Path(bench_dir).rglob("*.tsv")):
        rel = path.relative_to(bench_dir)
        if len(rel.parts) < 2:
            continue
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                lines = list(csv.DictReader(fh, delimiter="\t"))
        except (OSError, csv.Error) as exc:
            raise BidsError(f"{path}: unreadable benchmark file ({exc})") from None
        if lines and _number(lines[0].get("s")) is not None:
            per_rule.setdefault(rel.parts[0], []).append(lines[0])
    out = []
    for rule in sorted(per_rule, key=natural_key):
        lines = per_rule[rule]
        secs = [float(line["s"]) for line in lines]
        rss = [v for v in (_number(line.get("max_rss")) for line in lines) if v is not None]
        cpu = [v for v in (_number(line.get("cpu_time")) for line in lines) if v is not None]
        out.append(
            RuleRuntime(
                rule,
                len(lines),
                sum(secs),
                statistics.median(secs),
                max(secs),
                max(rss) if rss else None,
                sum(cpu) if cpu else None,
            )
        )
    return out


def write_runtimes(rows: Sequence[RuleRuntime], dest: Path) -> None:
    """runtimes.tsv."""
    write_tsv(dest, COLUMNS, (r.cells() for r in rows))


def plot_runtimes(rows: Sequence[RuleRuntime], stem: Path) -> list[Path]:
    """Total wall time per rule (bars, jobs in the labels)."""
    import numpy as np

    from bids2hub.paper.figures import _empty, _plt, save_figure

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * max(len(rows), 3) + 1.2), layout="constrained")
    if not rows:
        _empty(ax, "no benchmark files")
    else:
        y = np.arange(len(rows))
        ax.barh(y, [r.total_s for r in rows], color="#4c72b0")
        ax.set_yticks(y, [f"{r.rule} ({r.jobs})" for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("total wall time (s), jobs in brackets")
    ax.set_title("runtime per rule (benchmark files)")
    return save_figure(fig, stem)
